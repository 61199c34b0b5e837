/* Effective rank on the CPU: each head's attention matrix in double, its
 * singular values by LAPACK's divide-and-conquer SVD (dgesdd, values only),
 * heads spread over the worker pool with one slice of scratch per worker. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "rank.h"

typedef struct {
    int n, workers;
    lapack_int lwork;
    size_t slice; /* scratch bytes per worker */
} cpu_rank_ctx;

/* LAPACK's workspace for an n × n dgesdd without vectors; the query touches
 * no matrix. */
static lapack_int svd_lwork(int n)
{
    double q = 0;
    lapack_int iw = 0;
    if (LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'N', n, n, NULL, n, NULL, NULL, 1, NULL, 1, &q, -1,
                            &iw) != 0)
        return 0;
    return (lapack_int)q;
}

static size_t slice_bytes(int n, lapack_int lwork)
{
    const size_t nn = (size_t)n * n;
    /* A (double), its fp32 scores, σ, the LAPACK work and iwork. */
    size_t b = nn * sizeof(double) + (nn * sizeof(float) + 7) / 8 * 8 + (size_t)n * sizeof(double) +
               (size_t)lwork * sizeof(double) + 8 * (size_t)n * sizeof(lapack_int);
    return (b + 63) / 64 * 64;
}

/* As many slices as the target will have threads (its rule: the cores, or
 * RANKKV_THREADS), at most one per head; the plan is made before the pool
 * starts. */
static int workers_for(const rk_config *cfg)
{
    long t = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("RANKKV_THREADS");
    if (env && atoi(env) > 0)
        t = atoi(env);
    t = t < 1 ? 1 : t;
    return t < cfg->n_heads ? (int)t : cfg->n_heads;
}

static size_t cpu_rank_scratch_bytes(const rk_config *cfg, int n)
{
    return (size_t)workers_for(cfg) * slice_bytes(n, svd_lwork(n));
}

static rk_status cpu_rank_init(void *target_ctx, const rk_config *cfg, int n, void **rank_ctx)
{
    cpu_rank_ctx *r = calloc(1, sizeof *r);
    if (!r)
        return rk_fail(RK_ENOMEM, "out of host memory for rank measurement");
    r->n = n;
    r->workers = workers_for(cfg);
    r->lwork = svd_lwork(n);
    r->slice = slice_bytes(n, r->lwork);
    if (r->lwork <= 0) {
        free(r);
        return rk_fail(RK_EINVAL, "LAPACK refused the workspace query for a %d x %d SVD", n, n);
    }
    *rank_ctx = r;
    return RK_OK;
}

static void cpu_rank_shutdown(void *rank_ctx) { free(rank_ctx); }

typedef struct {
    const cpu_rank_ctx *r;
    double *ranks;
    const float *q, *k;
    int n, q_stride, k_cap, head_dim, heads, failed;
    char *scratch;
} rank_job;

/* Workers [lo, hi), worker w taking heads w, w + workers, ..., each in its
 * own slice of scratch: scores as the forward pass computes them (fp32
 * GEMM), softmax and the matrix in double, then the SVD. */
static void rank_part(void *arg, int lo, int hi)
{
    rank_job *j = arg;
    const int n = j->n, hd = j->head_dim, W = j->r->workers;
    const size_t nn = (size_t)n * n;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int w = lo; w < hi; w++) {
        char *s = j->scratch + (size_t)w * j->r->slice;
        double *a = (double *)s;
        float *scores = (float *)(s + nn * sizeof(double));
        double *sigma = (double *)(s + nn * sizeof(double) + (nn * sizeof(float) + 7) / 8 * 8);
        double *work = sigma + n;
        lapack_int *iwork = (lapack_int *)(work + j->r->lwork);
        for (int h = w; h < j->heads; h += W) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hd, scale,
                        j->q + (size_t)h * j->q_stride * hd, hd,
                        j->k + (size_t)h * j->k_cap * hd, hd, 0.0f, scores, n);
            /* Row i of A (row-major) is column i of the column-major matrix
             * LAPACK sees: Aᵀ, whose singular values are A's. */
            for (int i = 0; i < n; i++) {
                const float *row = scores + (size_t)i * n;
                double *out = a + (size_t)i * n;
                double mx = row[0], sum = 0;
                for (int c = 1; c <= i; c++)
                    mx = row[c] > mx ? row[c] : mx;
                for (int c = 0; c <= i; c++)
                    sum += out[c] = exp((double)row[c] - mx);
                for (int c = 0; c <= i; c++)
                    out[c] /= sum;
                memset(out + i + 1, 0, (size_t)(n - 1 - i) * sizeof(double));
            }
            if (LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'N', n, n, a, n, sigma, NULL, 1, NULL, 1,
                                    work, j->r->lwork, iwork) != 0) {
                j->failed = h + 1;
                continue;
            }
            j->ranks[h] = rk_erank_from_singular(sigma, n);
        }
    }
}

static rk_status cpu_attention_erank(void *rank_ctx, void *target_ctx, double *ranks,
                                     const void *q, const void *k, int n, int q_stride, int k_cap,
                                     int heads, int head_dim, void *scratch, size_t scratch_bytes)
{
    const cpu_rank_ctx *r = rank_ctx;
    if (n < 1 || n > r->n || scratch_bytes < (size_t)r->workers * r->slice)
        return rk_fail(RK_ELIMIT, "rank of a %d x %d attention matrix; measurement was planned "
                                  "for up to %d",
                       n, n, r->n);
    rank_job j = {r, ranks, q, k, n, q_stride, k_cap, head_dim, heads, 0, scratch};
    pool_run(rank_part, &j, r->workers, 1);
    if (j.failed)
        return rk_fail(RK_EINVAL, "LAPACK's SVD did not converge for head %d", j.failed - 1);
    return RK_OK;
}

static const rk_rank_ops cpu_rank_ops = {
    .name = "cpu",
    .scratch_bytes = cpu_rank_scratch_bytes,
    .init = cpu_rank_init,
    .shutdown = cpu_rank_shutdown,
    .attention_erank = cpu_attention_erank,
};

const rk_rank_ops *rk_cpu_rank_ops(void) { return &cpu_rank_ops; }
