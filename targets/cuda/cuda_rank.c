/* Effective rank on CUDA: each head's attention matrix A in double
 * (kernels/erank.cu), its Gram matrix A·Aᵀ by cuBLAS (dsyrk), whose
 * eigenvalues (cuSOLVER dsyevd, no vectors) are A's squared singular
 * values. One head at a time in a slice of the arena; the handles are made
 * at start-up. */
#include <cublas_v2.h>
#include <cusolverDn.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_target.h"
#include "erank.h"
#include "rank.h"

#define ALIGN(x) (((x) + 255) / 256 * 256)

typedef struct {
    cusolverDnHandle_t solver;
    cublasHandle_t blas;
    int n, lwork;
    double *lambda; /* host copy of the eigenvalues */
} cuda_rank_ctx;

/* Workspace of an n × n dsyevd without vectors, asked of a handle. */
static rk_status solver_lwork(cusolverDnHandle_t h, int n, int *lwork)
{
    if (cusolverDnDsyevd_bufferSize(h, CUSOLVER_EIG_MODE_NOVECTOR, CUBLAS_FILL_MODE_LOWER, n,
                                    NULL, n, NULL, lwork) != CUSOLVER_STATUS_SUCCESS)
        return rk_fail(RK_EDEVICE, "cusolverDnDsyevd_bufferSize failed for n = %d", n);
    return RK_OK;
}

/* A, G, the eigenvalues, the solver's info and its workspace. */
static size_t layout(int n, int lwork, size_t *g, size_t *w, size_t *info, size_t *work)
{
    const size_t nn = (size_t)n * n * sizeof(double);
    *g = ALIGN(nn);
    *w = *g + ALIGN(nn);
    *info = *w + ALIGN((size_t)n * sizeof(double));
    *work = *info + 256;
    return *work + ALIGN((size_t)lwork * sizeof(double));
}

/* Called while the plan is made, before the target starts: a handle of its
 * own answers the workspace query. */
static size_t cuda_rank_scratch_bytes(const rk_config *cfg, int n)
{
    cusolverDnHandle_t h;
    int lwork = 0;
    if (cusolverDnCreate(&h) != CUSOLVER_STATUS_SUCCESS)
        return 0;
    rk_status st = solver_lwork(h, n, &lwork);
    cusolverDnDestroy(h);
    if (st != RK_OK)
        return 0;
    size_t g, w, info, work;
    return layout(n, lwork, &g, &w, &info, &work);
}

static rk_status cuda_rank_init(void *target_ctx, const rk_config *cfg, int n, void **rank_ctx)
{
    cuda_rank_ctx *r = calloc(1, sizeof *r);
    if (!r)
        return rk_fail(RK_ENOMEM, "out of host memory for rank measurement");
    r->n = n;
    r->lambda = malloc((size_t)n * sizeof(double));
    cudaStream_t s = rk_cuda_stream(target_ctx);
    rk_status st = RK_OK;
    if (!r->lambda)
        st = rk_fail(RK_ENOMEM, "out of host memory for rank measurement");
    else if (cusolverDnCreate(&r->solver) != CUSOLVER_STATUS_SUCCESS ||
             cusolverDnSetStream(r->solver, s) != CUSOLVER_STATUS_SUCCESS)
        st = rk_fail(RK_EDEVICE, "cannot create a cuSOLVER handle");
    else if (cublasCreate(&r->blas) != CUBLAS_STATUS_SUCCESS ||
             cublasSetStream(r->blas, s) != CUBLAS_STATUS_SUCCESS)
        st = rk_fail(RK_EDEVICE, "cannot create a cuBLAS handle");
    else
        st = solver_lwork(r->solver, n, &r->lwork);
    if (st != RK_OK) {
        if (r->solver)
            cusolverDnDestroy(r->solver);
        if (r->blas)
            cublasDestroy(r->blas);
        free(r->lambda);
        free(r);
        return st;
    }
    *rank_ctx = r;
    return RK_OK;
}

static void cuda_rank_shutdown(void *rank_ctx)
{
    cuda_rank_ctx *r = rank_ctx;
    cusolverDnDestroy(r->solver);
    cublasDestroy(r->blas);
    free(r->lambda);
    free(r);
}

static rk_status cuda_attention_erank(void *rank_ctx, void *target_ctx, double *ranks,
                                      const void *q, const void *k, int n, int q_stride,
                                      int k_cap, int heads, int head_dim, void *scratch,
                                      size_t scratch_bytes)
{
    cuda_rank_ctx *r = rank_ctx;
    cudaStream_t s = rk_cuda_stream(target_ctx);
    size_t g_off, w_off, info_off, work_off;
    const size_t need = layout(n, r->lwork, &g_off, &w_off, &info_off, &work_off);
    if (n < 1 || n > r->n || head_dim > 256 || need > scratch_bytes)
        return rk_fail(RK_ELIMIT,
                       "rank of a %d x %d attention matrix (head_dim %d): measurement was "
                       "planned for up to %d and head_dim <= 256",
                       n, n, head_dim, r->n);
    char *base = scratch;
    double *a = (double *)base, *g = (double *)(base + g_off), *w = (double *)(base + w_off);
    int *info = (int *)(base + info_off);
    double *work = (double *)(base + work_off);
    const double one = 1.0, zero = 0.0;
    for (int h = 0; h < heads; h++) {
        const char *qh = (const char *)q + (size_t)h * q_stride * head_dim * 2;
        const char *kh = (const char *)k + (size_t)h * k_cap * head_dim * 2;
        rk_k_attention_matrix(s, a, qh, kh, n, head_dim);
        /* The row-major A is the column-major Aᵀ; Aᵀ·A has A·Aᵀ's eigenvalues. */
        if (cublasDsyrk(r->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, n, &one, a, n, &zero, g,
                        n) != CUBLAS_STATUS_SUCCESS)
            return rk_fail(RK_EDEVICE, "cublasDsyrk failed (head %d, n %d)", h, n);
        if (cusolverDnDsyevd(r->solver, CUSOLVER_EIG_MODE_NOVECTOR, CUBLAS_FILL_MODE_LOWER, n, g,
                             n, w, work, r->lwork, info) != CUSOLVER_STATUS_SUCCESS)
            return rk_fail(RK_EDEVICE, "cusolverDnDsyevd failed (head %d, n %d)", h, n);
        int host_info = 0;
        cudaError_t e = cudaMemcpyAsync(r->lambda, w, (size_t)n * sizeof(double),
                                        cudaMemcpyDeviceToHost, s);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(&host_info, info, sizeof(int), cudaMemcpyDeviceToHost, s);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(s);
        if (e != cudaSuccess)
            return rk_fail(RK_EDEVICE, "CUDA error measuring ranks: %s", cudaGetErrorString(e));
        if (host_info != 0)
            return rk_fail(RK_EDEVICE, "cusolverDnDsyevd did not converge (head %d, info %d)", h,
                           host_info);
        ranks[h] = rk_erank_from_gram_eigen(r->lambda, n);
    }
    return RK_OK;
}

static const rk_rank_ops cuda_rank_ops = {
    .name = "cuda",
    .scratch_bytes = cuda_rank_scratch_bytes,
    .init = cuda_rank_init,
    .shutdown = cuda_rank_shutdown,
    .attention_erank = cuda_attention_erank,
};

const rk_rank_ops *rk_cuda_rank_ops(void) { return &cuda_rank_ops; }
