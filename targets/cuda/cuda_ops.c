/* The CUDA target: fp16 weights and activations with fp32 accumulation,
 * GEMMs through cuBLASLt, the rest in kernels/. All device memory is the
 * weights block and the arena that core plans; the target's own needs (GEMM
 * workspace, attention partials) are a region of that arena. */
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "cuda_target.h"
#include "elementwise.h"
#include "gemv.h"
#include "kv_compress.h"
#include "kv_kivi.h"
#include "kv_smart.h"
#include "targets.h"

/* cuBLASLt on Hopper wants a 32 MiB workspace for its best kernels. The
 * branch stream's products have none (cuda_prepare). */
#define GEMM_WORKSPACE ((size_t)32 << 20)
/* One row is a matrix-vector product (kernels/gemv.cu). More rows run as
 * GEMMs at a few row counts (buckets) whose algorithms are chosen at
 * start-up: 2, 4, .. 64, then multiples of 64 up to the prefill chunk. A
 * call with n rows runs the plan of the smallest bucket >= n over rows that
 * the arena has anyway (activations are sized for the chunk); the extra rows'
 * results are never read. The last layer's products past its attention run
 * on the logits' rows only, from a row offset where a bucket could pass the
 * chunk's end, so a call of exactly the logits' rows has a plan of its own. */
#define GEMM_ROW_STEP 64
#define GEMM_CACHE 1024
/* Up to this many queries attention runs as split-context decode. */
#define DECODE_MAX_QUERIES 16
/* The scratch's region for the zero row index (one int, kept 256-byte
 * aligned for the top-k region after it). */
#define ZERO_ROW_BYTES 256
/* Host copies go through page-locked memory of this size (host_stage). */
#define HOST_STAGE_BYTES ((size_t)1 << 20)
#define HOST_STAGE_OUTS 64

/* A product as a plan is chosen for: y[n, m] = x[n, k] · W[m, k]ᵀ, the
 * output's type, a bias, and the most workspace its algorithm may use. */
typedef struct {
    int m, n, k, f32out, bias;
    size_t workspace;
} gemm_shape;

typedef struct {
    gemm_shape shape;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

/* A copy out waiting in the stage for the next sync to hand it over. */
typedef struct {
    void *dst;
    size_t at, bytes;
} staged_out;

/* A copy between pageable host memory and the device is synchronous: out,
 * the call returns only once the stream has run up to it, so a decode
 * step's two results (top-k ids and values) cost two round trips to the
 * host before the next step can be queued. Through page-locked memory
 * both are queued behind the step and the one sync waits for them all.
 * BASE is allocated at start-up; what is staged since the last sync lies
 * at [0, USED), and a copy that does not fit goes direct. */
typedef struct {
    unsigned char *base;
    size_t used;
    staged_out outs[HOST_STAGE_OUTS];
    int n_outs;
} host_stage;

/* A stream beside the main one: FORK and JOIN order it against the main
 * stream; PENDING: it has work the main stream has not waited for. */
typedef struct {
    cudaStream_t stream;
    cudaEvent_t fork, join;
    int pending;
} forked_stream;

typedef struct {
    cudaStream_t stream;
    /* Row selection, gathers, evictions and a decode step's attention
     * mass run here, beside the products after them (core/ops.h). READS:
     * what some of its pending work reads which the main stream will
     * overwrite (side_reads). */
    forked_stream side;
    unsigned reads;
    /* A prompt's first MLP product and its GELU run here, beside QKV, the
     * attention and the output projection, which do not read them: the
     * attention and the small kernels leave SMs idle that its blocks can
     * take. At the lowest priority, so that it takes only what the main
     * and side streams leave idle and does not delay them. Forked in
     * linear_pair, joined before the product that reads its output
     * (linear_sum) and before anything the host or a graph waits on. */
    forked_stream branch;
    host_stage stage;
    /* The cache (its K) whose scores the last attention left, or NULL. */
    const void *scores_of;
    cublasLtHandle_t lt;
    void *workspace;
    void *attn_scratch;
    void *top_k_scratch; /* zeroed with the arena */
    /* A row index 0 in device memory, for a stage's rows (never written:
     * zeroed with the arena). */
    const int *zero_row;
    gemm_plan gemms[GEMM_CACHE];
    int n_gemms;
    int chunk, logits_rows; /* row capacity of the activations and the logits */
    cudaGraph_t graph[RK_RECORDED_SLOTS];
    cudaGraphExec_t exec[RK_RECORDED_SLOTS];
    rk_status error; /* the first failure of an op that cannot return one */
    char error_msg[256];
} cuda_ctx;

static rk_status cuda_check(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return RK_OK;
    return rk_fail(RK_EDEVICE, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}

/* Ops return void so the forward pass stays readable; a failure inside one
 * is kept and reported by the next sync. */
static void remember(cuda_ctx *c, rk_status st)
{
    if (st != RK_OK && c->error == RK_OK) {
        c->error = st;
        snprintf(c->error_msg, sizeof c->error_msg, "%s", rk_last_error());
    }
}

static rk_status cuda_supports(const rk_config *cfg, rk_kv_format f)
{
    if (!rk_attention_supports(cfg->head_dim, 16))
        return rk_fail(RK_ECONFIG,
                       "the CUDA attention kernels take an even head_dim up to 256; this model "
                       "has %d (use --target cpu)",
                       cfg->head_dim);
#define RK_NAME(D) " " #D
    if (!rk_attention_supports(cfg->head_dim, rk_kv_format_bits(f)))
        return rk_fail(RK_ECONFIG,
                       "a %s KV cache on the CUDA target needs a head_dim the kernels are built "
                       "for:" RK_ATTENTION_HEAD_DIMS(RK_NAME) "; this model has %d (use an fp16 "
                       "cache or --target cpu)",
                       rk_kv_format_name(f), cfg->head_dim);
#undef RK_NAME
    if (!rk_k_supports_dim(cfg->hidden) || cfg->ffn % 8 != 0)
        return rk_fail(RK_ECONFIG,
                       "the CUDA kernels need a hidden size that is a multiple of 8 up to 8192 "
                       "and an intermediate size that is a multiple of 8 (this model: %d, %d; "
                       "use --target cpu)",
                       cfg->hidden, cfg->ffn);
    const int inputs = cfg->hidden + (cfg->ffn > cfg->hidden ? cfg->ffn : cfg->hidden);
    const int room = rk_k_gemv_max_inputs();
    if (inputs > room)
        return rk_fail(RK_ECONFIG,
                       "a decode step's product takes %d inputs (hidden %d + intermediate %d); "
                       "this device's shared memory holds %d (use --target cpu)",
                       inputs, cfg->hidden, cfg->ffn, room);
    return RK_OK;
}

static rk_status cuda_init(void **ctx)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return rk_fail(RK_EDEVICE, "no CUDA device is available (%s); use --target cpu",
                       e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return rk_fail(RK_ENOMEM, "out of host memory for the CUDA target");
    rk_status st = cuda_check(cudaSetDevice(0), "cudaSetDevice");
    int least = 0, greatest = 0;
    if (st == RK_OK)
        st = cuda_check(cudaDeviceGetStreamPriorityRange(&least, &greatest),
                        "cudaDeviceGetStreamPriorityRange");
    cudaStream_t *const streams[] = {&c->stream, &c->side.stream, &c->branch.stream};
    const int priority[] = {greatest, greatest, least};
    cudaEvent_t *const events[] = {&c->side.fork, &c->side.join, &c->branch.fork,
                                   &c->branch.join};
    for (int i = 0; i < 3 && st == RK_OK; i++)
        st = cuda_check(
            cudaStreamCreateWithPriority(streams[i], cudaStreamNonBlocking, priority[i]),
            "cudaStreamCreate");
    for (int i = 0; i < 4 && st == RK_OK; i++)
        st = cuda_check(cudaEventCreateWithFlags(events[i], cudaEventDisableTiming),
                        "cudaEventCreate");
    if (st == RK_OK && cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS)
        st = rk_fail(RK_EDEVICE, "cublasLtCreate failed");
    if (st == RK_OK)
        st = cuda_check(cudaMallocHost((void **)&c->stage.base, HOST_STAGE_BYTES),
                        "cudaMallocHost (the host copies' stage)");
    if (st != RK_OK) {
        free(c);
        return st;
    }
    *ctx = c;
    return RK_OK;
}

cudaStream_t rk_cuda_stream(void *ctx) { return ((cuda_ctx *)ctx)->stream; }

static void cuda_shutdown(void *ctx)
{
    cuda_ctx *c = ctx;
    for (int i = 0; i < c->n_gemms; i++) {
        cublasLtMatmulDescDestroy(c->gemms[i].desc);
        cublasLtMatrixLayoutDestroy(c->gemms[i].a);
        cublasLtMatrixLayoutDestroy(c->gemms[i].b);
        cublasLtMatrixLayoutDestroy(c->gemms[i].c);
    }
    for (int i = 0; i < RK_RECORDED_SLOTS; i++) {
        if (c->exec[i])
            cudaGraphExecDestroy(c->exec[i]);
        if (c->graph[i])
            cudaGraphDestroy(c->graph[i]);
    }
    cublasLtDestroy(c->lt);
    cudaFreeHost(c->stage.base);
    cudaEventDestroy(c->side.fork);
    cudaEventDestroy(c->side.join);
    cudaEventDestroy(c->branch.fork);
    cudaEventDestroy(c->branch.join);
    cudaStreamDestroy(c->branch.stream);
    cudaStreamDestroy(c->side.stream);
    cudaStreamDestroy(c->stream);
    free(c);
}

static void cuda_device_name(void *ctx, char *buf, size_t len)
{
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess)
        snprintf(buf, len, "%s", p.name);
    else
        snprintf(buf, len, "cuda");
}

static rk_status cuda_alloc(void *ctx, size_t bytes, void **base)
{
    rk_status st = cuda_check(cudaMalloc(base, bytes ? bytes : 256), "cudaMalloc");
    if (st != RK_OK)
        return rk_fail(RK_ENOMEM, "cannot allocate %zu bytes of device memory: %s", bytes,
                       rk_last_error());
    return cuda_check(cudaMemset(*base, 0, bytes), "cudaMemset");
}

static void cuda_release(void *ctx, void *base) { cudaFree(base); }

/* The attention scratch of a decode call of N queries over rows of CAP:
 * its partials, then what it leaves for the attention_mass of the same
 * queries, their softmax statistics and, over a cache that keeps scores,
 * their scores. The next attention overwrites them all. */
static size_t decode_partials_bytes(int n, int heads, int head_dim, int cap)
{
    return (rk_attention_decode_scratch_bytes(n, heads, head_dim, cap) + 255) / 256 * 256;
}

static size_t decode_stats_bytes(int n, int heads)
{
    return ((size_t)heads * n * 2 * sizeof(float) + 255) / 256 * 256;
}

static size_t decode_scratch_bytes(int n, int heads, int head_dim, int cap)
{
    return decode_partials_bytes(n, heads, head_dim, cap) + decode_stats_bytes(n, heads) +
           (size_t)heads * n * cap * sizeof(float);
}

static float *decode_stats(cuda_ctx *c, const rk_kv_layer *cache, int n)
{
    return (float *)((char *)c->attn_scratch +
                     decode_partials_bytes(n, cache->heads, cache->head_dim, cache->cap));
}

static float *decode_scores(cuda_ctx *c, const rk_kv_layer *cache, int n)
{
    return (float *)((char *)decode_stats(c, cache, n) + decode_stats_bytes(n, cache->heads));
}

static size_t cuda_scratch_bytes(const rk_config *cfg, int chunk, int cap)
{
    int q = chunk < DECODE_MAX_QUERIES ? chunk : DECODE_MAX_QUERIES;
    size_t attn = decode_scratch_bytes(q, cfg->n_heads, cfg->head_dim, cap);
    return GEMM_WORKSPACE + attn + ZERO_ROW_BYTES + rk_k_top_k_scratch_bytes();
}

static void cuda_bind_scratch(void *ctx, void *scratch, size_t bytes)
{
    cuda_ctx *c = ctx;
    c->workspace = scratch;
    c->attn_scratch = (char *)scratch + GEMM_WORKSPACE;
    c->top_k_scratch = (char *)scratch + bytes - rk_k_top_k_scratch_bytes();
    c->zero_row = (const int *)((char *)c->top_k_scratch - ZERO_ROW_BYTES);
}

static rk_status cuda_upload(void *ctx, void *dst, const void *src, rk_dtype dt, size_t count)
{
    if (dt == RK_F16)
        return cuda_check(cudaMemcpy(dst, src, count * 2, cudaMemcpyHostToDevice), "upload");
    if (dt != RK_F32 && dt != RK_BF16)
        return rk_fail(RK_EDTYPE, "cannot convert dtype %s to F16", rk_dtype_name(dt));
    /* Loading is start-up: a host staging buffer for the conversion is fine. */
    uint16_t *tmp = malloc(count * 2 + 2);
    if (!tmp)
        return rk_fail(RK_ENOMEM, "out of host memory converting a tensor to F16");
    const unsigned char *s = src;
    for (size_t i = 0; i < count; i++) {
        float f;
        if (dt == RK_F32) {
            memcpy(&f, s + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            f = rk_bf16_to_f32(h);
        }
        tmp[i] = rk_f32_to_f16(f);
    }
    rk_status st = cuda_check(cudaMemcpy(dst, tmp, count * 2, cudaMemcpyHostToDevice), "upload");
    free(tmp);
    return st;
}

/* What side-stream work reads that the main stream overwrites later: the
 * prompt's rows and mass (the next layer's rotary and attention), and what
 * a decode attention left for the mass (the next attention). */
enum side_reads { SIDE_PROMPT = 1, SIDE_LEFTOVERS = 2 };

/* F waits for what the main stream has issued. */
static void fork_to(cuda_ctx *c, forked_stream *f)
{
    remember(c, cuda_check(cudaEventRecord(f->fork, c->stream), "cudaEventRecord"));
    remember(c, cuda_check(cudaStreamWaitEvent(f->stream, f->fork, 0), "cudaStreamWaitEvent"));
    f->pending = 1;
}

/* The main stream waits for F. */
static void join_from(cuda_ctx *c, forked_stream *f)
{
    if (!f->pending)
        return;
    remember(c, cuda_check(cudaEventRecord(f->join, f->stream), "cudaEventRecord"));
    remember(c, cuda_check(cudaStreamWaitEvent(c->stream, f->join, 0), "cudaStreamWaitEvent"));
    f->pending = 0;
}

/* The side stream waits for what the main stream has issued, for work
 * that reads READS (side_reads). */
static void fork_side(cuda_ctx *c, unsigned reads)
{
    fork_to(c, &c->side);
    c->reads |= reads;
}

/* The main stream waits for the side stream. */
static void join_side(cuda_ctx *c)
{
    join_from(c, &c->side);
    c->reads = 0;
}

/* Before an op that overwrites WHAT (side_reads): side-stream work may
 * still be reading it. */
static void join_reads(cuda_ctx *c, unsigned what)
{
    if (c->reads & what)
        join_side(c);
}

/* Before the host reads, writes or waits, or a capture ends: the main
 * stream waits for the others. */
static void join_all(cuda_ctx *c)
{
    join_from(c, &c->branch);
    join_side(c);
}

/* Room for BYTES in the stage, or NULL: the offset of each slot keeps
 * 64-byte alignment. */
static unsigned char *stage_take(host_stage *h, size_t bytes)
{
    const size_t size = (bytes + 63) / 64 * 64;
    if (size > HOST_STAGE_BYTES - h->used)
        return NULL;
    unsigned char *at = h->base + h->used;
    h->used += size;
    return at;
}

static rk_status cuda_copy_in(void *ctx, void *dst, const void *src, size_t bytes)
{
    cuda_ctx *c = ctx;
    join_all(c);
    /* The slot stays unused until the next sync, when the copy has run. */
    unsigned char *slot = stage_take(&c->stage, bytes);
    if (slot) {
        memcpy(slot, src, bytes);
        src = slot;
    }
    return cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream),
                      "copy in");
}

static rk_status cuda_copy_out(void *ctx, void *dst, const void *src, size_t bytes)
{
    cuda_ctx *c = ctx;
    join_all(c);
    host_stage *h = &c->stage;
    unsigned char *slot = h->n_outs < HOST_STAGE_OUTS ? stage_take(h, bytes) : NULL;
    if (!slot)
        return cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream),
                          "copy out");
    h->outs[h->n_outs++] = (staged_out){dst, (size_t)(slot - h->base), bytes};
    return cuda_check(cudaMemcpyAsync(slot, src, bytes, cudaMemcpyDeviceToHost, c->stream),
                      "copy out");
}

static rk_status cuda_sync(void *ctx)
{
    cuda_ctx *c = ctx;
    join_all(c);
    rk_status st = cuda_check(cudaStreamSynchronize(c->stream), "a kernel");
    host_stage *h = &c->stage;
    for (int i = 0; i < h->n_outs; i++)
        memcpy(h->outs[i].dst, h->base + h->outs[i].at, h->outs[i].bytes);
    h->n_outs = 0;
    h->used = 0;
    if (st == RK_OK)
        st = cuda_check(cudaGetLastError(), "a kernel launch");
    if (st == RK_OK && c->error != RK_OK) {
        st = rk_fail(c->error, "%s", c->error_msg);
        c->error = RK_OK;
    }
    return st;
}

static void cuda_embed(void *ctx, void *x, const void *table, const void *tokens, int n, int dim)
{
    rk_k_embed(((cuda_ctx *)ctx)->stream, x, table, tokens, n, dim);
}

static void cuda_add_layernorm(void *ctx, void *x, const void *a, const void *b, rk_norm_out o1,
                               rk_norm_out o2, int n, int dim, float eps)
{
    rk_k_add_layernorm(((cuda_ctx *)ctx)->stream, x, a, b, o1.y, o1.w, o1.b, o2.y, o2.w, o2.b, n,
                       dim, eps);
}

static int gemm_bucket(int n, int cap)
{
    int b = 1;
    while (b < n && b < GEMM_ROW_STEP)
        b *= 2;
    if (n > GEMM_ROW_STEP)
        b = (n + GEMM_ROW_STEP - 1) / GEMM_ROW_STEP * GEMM_ROW_STEP;
    return b < cap ? b : cap;
}

static gemm_plan *gemm_find(cuda_ctx *c, const gemm_shape *s)
{
    for (int i = 0; i < c->n_gemms; i++) {
        const gemm_shape *g = &c->gemms[i].shape;
        if (g->m == s->m && g->n == s->n && g->k == s->k && g->f32out == s->f32out &&
            g->bias == s->bias && g->workspace == s->workspace)
            return &c->gemms[i];
    }
    return NULL;
}

/* Row-major y[n, out] = x[n, in] · W[out, in]ᵀ is, seen column-major,
 * y[out, n] = Wᵀ · x with W stored as [in, out]: op(A) = T on W, op(B) = N
 * on x. A plan holds the descriptors and the heuristic's algorithm. */
static rk_status gemm_plan_make(cuda_ctx *c, gemm_shape s)
{
    if (gemm_find(c, &s))
        return RK_OK;
    if (c->n_gemms == GEMM_CACHE)
        return rk_fail(RK_ELIMIT, "more than %d GEMM plans", GEMM_CACHE);
    gemm_plan *g = &c->gemms[c->n_gemms];
    *g = (gemm_plan){.shape = s};
    const int m = s.m, n = s.n, k = s.k;
    const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    const cudaDataType_t out_type = s.f32out ? CUDA_R_32F : CUDA_R_16F;
    cublasLtEpilogue_t epi = s.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    int ok = cublasLtMatmulDescCreate(&g->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == 0 &&
             cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT,
                                            sizeof opT) == 0 &&
             cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN,
                                            sizeof opN) == 0 &&
             cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                            sizeof epi) == 0 &&
             cublasLtMatrixLayoutCreate(&g->a, CUDA_R_16F, k, m, k) == 0 &&
             cublasLtMatrixLayoutCreate(&g->b, CUDA_R_16F, k, n, k) == 0 &&
             cublasLtMatrixLayoutCreate(&g->c, out_type, m, n, m) == 0 &&
             cublasLtMatmulPreferenceCreate(&pref) == 0 &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &s.workspace, sizeof s.workspace) == 0 &&
             cublasLtMatmulAlgoGetHeuristic(c->lt, g->desc, g->a, g->b, g->c, g->c, pref, 1,
                                            &result, &found) == 0 &&
             found > 0;
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    c->n_gemms++; /* kept even when incomplete, so that shutdown frees it */
    if (!ok)
        return rk_fail(RK_EDEVICE, "cuBLASLt has no algorithm for a %dx%dx%d GEMM", m, n, k);
    g->algo = result.algo;
    return RK_OK;
}

static rk_status cuda_prepare(void *ctx, const rk_config *cfg, int chunk, int logits_rows)
{
    cuda_ctx *c = ctx;
    const int D = cfg->hidden, F = cfg->ffn;
    rk_k_gemv_init();
    rk_status st = cuda_check(rk_k_kivi_init(), "raising the KIVI flush's shared memory");
    /* A parallel-residual layer's first MLP product runs on the branch
     * (linear_pair), which has no workspace: on the H200, cuBLASLt picks
     * the same algorithm for it with none as with 32 MiB at every row count
     * of a 1920-row chunk (bench/results/prefill_mlp_stream_h200), so a
     * second 32 MiB would buy nothing. */
    const size_t fc1_workspace = cfg->parallel_residual ? 0 : GEMM_WORKSPACE;
    const gemm_shape layer[4] = {
        {.m = 3 * D, .k = D, .bias = 1, .workspace = GEMM_WORKSPACE},
        {.m = D, .k = D, .bias = 1, .workspace = GEMM_WORKSPACE},
        {.m = F, .k = D, .bias = 1, .workspace = fc1_workspace},
        {.m = D, .k = F, .bias = 1, .workspace = GEMM_WORKSPACE},
    };
    c->chunk = chunk;
    c->logits_rows = logits_rows;
    /* One row runs as a matrix-vector product (kernels/gemv.cu). */
    for (int n = 2; n <= chunk && st == RK_OK; n = n == chunk ? n + 1 : gemm_bucket(n + 1, chunk))
        for (int i = 0; i < 4 && st == RK_OK; i++) {
            gemm_shape s = layer[i];
            s.n = n;
            st = gemm_plan_make(c, s);
        }
    /* The last layer's products past its attention, on exactly the logits'
     * rows; fc1 then runs on the main stream, whose workspace it may take. */
    for (int i = 0; i < 4 && st == RK_OK && logits_rows >= 2 && logits_rows < chunk; i++) {
        gemm_shape s = layer[i];
        s.n = logits_rows;
        st = gemm_plan_make(c, s);
        if (st == RK_OK && s.workspace != GEMM_WORKSPACE) {
            s.workspace = GEMM_WORKSPACE;
            st = gemm_plan_make(c, s);
        }
    }
    for (int n = 2; n <= logits_rows && st == RK_OK;
         n = n == logits_rows ? n + 1 : gemm_bucket(n + 1, logits_rows))
        st = gemm_plan_make(c, (gemm_shape){.m = cfg->vocab, .n = n, .k = D, .f32out = 1,
                                            .workspace = GEMM_WORKSPACE});
    return st;
}

/* y = x Wᵀ + bias, or y += with ACCUMULATE, on stream ST with WS_BYTES of
 * workspace: the main stream's, the only one there is, or none. */
static void gemm_on(cuda_ctx *c, cudaStream_t st, size_t ws_bytes, void *y, const void *x,
                    const void *w, const void *bias, int n, int in, int out, int f32out,
                    int accumulate)
{
    void *const ws = ws_bytes ? c->workspace : NULL;
    const int rows = n == c->logits_rows ? n : gemm_bucket(n, f32out ? c->logits_rows : c->chunk);
    const gemm_shape shape = {.m = out, .n = rows, .k = in, .f32out = f32out,
                              .bias = bias != NULL, .workspace = ws_bytes};
    gemm_plan *g = gemm_find(c, &shape);
    if (!g) {
        remember(c, rk_fail(RK_EDEVICE, "no GEMM plan for %dx%dx%d (not prepared)", out, rows, in));
        return;
    }
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    if (bias)
        cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                       sizeof bias);
    cublasStatus_t s = cublasLtMatmul(c->lt, g->desc, &one, w, g->a, x, g->b, &beta, y, g->c, y,
                                      g->c, &g->algo, ws, ws_bytes, st);
    if (s != CUBLAS_STATUS_SUCCESS)
        remember(c, rk_fail(RK_EDEVICE, "cublasLtMatmul failed (%d) for %dx%dx%d", (int)s, out,
                            rows, in));
}

static void gemm(cuda_ctx *c, void *y, const void *x, const void *w, const void *bias, int n,
                 int in, int out, int f32out, int accumulate)
{
    gemm_on(c, c->stream, GEMM_WORKSPACE, y, x, w, bias, n, in, out, f32out, accumulate);
}

static rk_gemv_part gemv_part(const rk_product *p)
{
    return (rk_gemv_part){.y = p->y, .w = p->w, .x = p->x, .bias = p->bias, .in = p->in,
                          .out = p->out, .gelu = p->gelu};
}

static void cuda_linear(void *ctx, const rk_product *p, int n)
{
    cuda_ctx *c = ctx;
    if (n == 1) {
        const rk_gemv_part g = gemv_part(p);
        rk_k_gemv(c->stream, &g, 0);
        return;
    }
    gemm(c, p->y, p->x, p->w, p->bias, n, p->in, p->out, 0, 0);
    /* cuBLASLt's GELU epilogue is the tanh approximation; GPT-NeoX uses erf. */
    if (p->gelu)
        rk_k_gelu(c->stream, p->y, (size_t)n * p->out);
}

static void cuda_linear_pair(void *ctx, const rk_product *a, const rk_product *b, int n)
{
    cuda_ctx *c = ctx;
    if (n == 1) {
        const rk_gemv_part ga = gemv_part(a), gb = gemv_part(b);
        rk_k_gemv_pair(c->stream, &ga, &gb);
        return;
    }
    /* Forked before A so that B's blocks fill what A's leave idle. */
    fork_to(c, &c->branch);
    cuda_linear(ctx, a, n);
    gemm_on(c, c->branch.stream, 0, b->y, b->x, b->w, b->bias, n, b->in, b->out, 0, 0);
    if (b->gelu)
        rk_k_gelu(c->branch.stream, b->y, (size_t)n * b->out);
}

static void cuda_linear_sum(void *ctx, const rk_product *a, const rk_product *b, int n)
{
    cuda_ctx *c = ctx;
    if (n == 1) {
        const rk_gemv_part ga = gemv_part(a), gb = gemv_part(b);
        rk_k_gemv_sum(c->stream, &ga, &gb);
        return;
    }
    gemm(c, a->y, a->x, a->w, a->bias, n, a->in, a->out, 0, 0);
    join_from(c, &c->branch);
    gemm(c, a->y, b->x, b->w, b->bias, n, b->in, b->out, 0, 1);
}

static void cuda_linear_f32out(void *ctx, float *y, const void *x, const void *w, int n, int in,
                               int out)
{
    join_all(ctx);
    if (n == 1) {
        const rk_gemv_part g = {.y = y, .w = w, .x = x, .in = in, .out = out};
        rk_k_gemv(((cuda_ctx *)ctx)->stream, &g, 1);
    } else {
        gemm(ctx, y, x, w, NULL, n, in, out, 1, 0);
    }
}

/* A layer's cache as the kernels take it. Its format is one of kv_formats
 * (the plan refuses the others): the bits name a row format, and a KIVI or
 * smartkv cache's layout is core's (kv_kivi.h, kv_smart.h). */
static rk_k_kv kernel_kv(const rk_kv_layer *c)
{
    rk_k_kv kv = {.k = c->k, .v = c->v, .cap = c->cap, .heads = c->heads,
                  .head_dim = c->head_dim, .bits = rk_kv_format_bits(c->format),
                  .group = c->group};
    if (rk_kv_format_kivi(c->format)) {
        const rk_kivi_side k = rk_kivi_side_of(c->format, 0, c->head_dim, c->group, c->residual,
                                               c->cap),
                           v = rk_kivi_side_of(c->format, 1, c->head_dim, c->group, c->residual,
                                               c->cap);
        kv.bits = RK_KIVI_FORMAT(k.bits, v.bits);
        kv.kivi = (rk_k_kivi){.residual = c->residual, .k_head = k.bytes, .v_head = v.bytes,
                              .k_meta = k.meta, .k_fp16 = k.residual, .v_fp16 = v.residual,
                              .meta16 = ((uintptr_t)c->k | k.bytes | k.meta) % 16 == 0};
    }
    if (c->format == RK_KV_SMART) {
        const rk_smart_side k = rk_smart_side_of(0, c->head_dim, c->group, c->bits_avg, c->cap);
        kv.bits = RK_SMART_FORMAT;
        kv.smart = (rk_k_smart){.maps = k.maps, .k_head = k.bytes, .v_head = k.maps,
                                .sinks = RK_SMART_SINKS};
        for (int t = 0; t < RK_SMART_TIERS; t++) {
            kv.smart.first[t] = k.first[t];
            kv.smart.bits[t] = rk_kv_format_bits(rk_smart_tier_format(t));
            kv.smart.row[t] = (int)k.row[t];
            kv.smart.off[t] = k.off[t];
        }
    }
    return kv;
}

/* Rows of HEADS x HEAD_DIM the stage holds: K and V as fp16. */
static int stage_cap(int heads, int head_dim)
{
    return (int)(GEMM_WORKSPACE / (4 * (size_t)heads * (size_t)head_dim));
}

static int cuda_staged_rows(const rk_config *cfg) { return stage_cap(cfg->n_heads, cfg->head_dim); }

/* Where N rows on their way into a cache not of a row format (KIVI's,
 * smartkv's, whose layouts the kernels that write rows do not know) wait
 * as fp16: the GEMM workspace, which no GEMM uses between the op that
 * fills it (rotary, a gather) and the append that empties it. The plan
 * keeps a chunk and a gather within it (cuda_staged_rows); a call after
 * the prompt may not be, and REMEDY says what takes fewer rows at once. */
static int stage_rows(cuda_ctx *c, const rk_kv_layer *cache, const rk_k_kv *kv, int n,
                      const char *remedy, rk_k_kv *stage)
{
    const size_t half = (size_t)n * kv->heads * kv->head_dim * 2;
    const int cap = stage_cap(kv->heads, kv->head_dim);
    if (n > cap) {
        remember(c, rk_fail(RK_ELIMIT, "a %s KV cache on the cuda target takes up to %d rows at "
                                       "once (got %d): %s",
                            rk_kv_format_name(cache->format), cap, n, remedy));
        return 0;
    }
    *stage = (rk_k_kv){.k = c->workspace, .v = (char *)c->workspace + half, .cap = n,
                       .heads = kv->heads, .head_dim = kv->head_dim, .bits = 16,
                       .group = kv->group};
    return 1;
}

static void cuda_qkv_rotary(void *ctx, void *q, const rk_kv_layer *cache, const void *qkv,
                            const float *rope, const void *pos, const void *row, int n,
                            int rot_dims)
{
    cuda_ctx *c = ctx;
    const rk_k_kv kv = kernel_kv(cache);
    rk_k_kv stage;
    join_reads(c, SIDE_PROMPT);
    if (rk_kv_format_row(cache->format)) {
        rk_k_qkv_rotary(c->stream, q, &kv, qkv, rope, pos, row, n, rot_dims);
    } else if (stage_rows(c, cache, &kv, n, "fewer tokens a call after the prompt", &stage)) {
        rk_k_qkv_rotary(c->stream, q, &stage, qkv, rope, pos, c->zero_row, n, rot_dims);
        if (cache->format == RK_KV_SMART)
            rk_k_smart_append(c->stream, &kv, cache->score, &stage, row, n);
        else
            rk_k_kivi_append(c->stream, &kv, &stage, row, n);
    }
}

/* Queries of HEADS heads whose softmax statistics (attention.h), a pair
 * of floats each, the GEMM workspace holds. */
static size_t stats_cap(int heads) { return GEMM_WORKSPACE / (2 * sizeof(float) * (size_t)heads); }

/* Each query's softmax statistics, which attention leaves for the
 * attention_mass of the same queries: a decode call's in the attention
 * scratch, a prefill's in the GEMM workspace (no GEMM, and no stage,
 * stage_rows, runs between the two, and every other op may overwrite
 * them). NULL when N queries' do not fit. */
static float *attention_stats(cuda_ctx *c, const rk_kv_layer *cache, int n)
{
    if (n <= DECODE_MAX_QUERIES)
        return decode_stats(c, cache, n);
    return (size_t)n <= stats_cap(cache->heads) ? c->workspace : NULL;
}

/* ROT: a decode call over an fp16 cache that rotates and appends the
 * step's rows itself. */
static void attend(cuda_ctx *c, void *out, const void *q, const rk_kv_layer *cache,
                   const void *row, int n, const rk_attention_rotary *rot)
{
    const rk_k_kv kv = kernel_kv(cache);
    join_reads(c, SIDE_PROMPT | SIDE_LEFTOVERS);
    float *const stats = attention_stats(c, cache, n);
    c->scores_of = NULL;
    if (n <= DECODE_MAX_QUERIES) {
        /* A cache that keeps scores has the step's mass added to them next
         * (H2O, smartkv): from these, with no key read again. */
        float *const scores = cache->score ? decode_scores(c, cache, n) : NULL;
        rk_attention_decode(c->stream, out, stats, scores, q, &kv, c->attn_scratch, row, n, rot);
        c->scores_of = scores ? cache->k : NULL;
    } else {
        rk_attention_prefill(c->stream, out, stats, q, &kv, row, n);
    }
}

static void cuda_attention(void *ctx, void *out, const void *q, const rk_kv_layer *cache,
                           const void *row, int n)
{
    attend(ctx, out, q, cache, row, n, NULL);
}

/* A decode step over an fp16 cache needs no rotary launch: the attention
 * rotates the queries and the step's rows itself and appends the rows, one
 * kernel boundary less between the QKV product and the attention. */
static void cuda_qkv_attention(void *ctx, void *out, void *q, const rk_kv_layer *cache,
                               const void *qkv, const float *rope, const void *pos,
                               const void *row, int n, int rot_dims)
{
    if (cache->format == RK_KV_FP16 && n <= DECODE_MAX_QUERIES) {
        const rk_attention_rotary rot = {qkv, rope, pos, q, rot_dims};
        attend(ctx, out, q, cache, row, n, &rot);
        return;
    }
    cuda_qkv_rotary(ctx, q, cache, qkv, rope, pos, row, n, rot_dims);
    cuda_attention(ctx, out, q, cache, row, n);
}

static void cuda_attention_mass(void *ctx, rk_kv_scores scores, const void *q,
                                const rk_kv_layer *cache, const void *row, int n, int from,
                                int add)
{
    cuda_ctx *c = ctx;
    const rk_k_kv kv = kernel_kv(cache);
    const float *const stats = attention_stats(c, cache, n);
    if (c->scores_of == cache->k) {
        /* Writes only scores, which no product reads, and reads only what
         * the attention left, which the next one overwrites (core/ops.h). */
        fork_side(c, SIDE_LEFTOVERS);
        rk_attention_mass_of_scores(c->side.stream, scores.s, stats, decode_scores(c, cache, n),
                                    &kv, row, n, from, scores.stride, add);
        return;
    }
    join_reads(c, SIDE_PROMPT);
    if (!stats) {
        remember(c, rk_fail(RK_ELIMIT, "the CUDA target scores up to %zu queries of %d heads "
                                       "at once (got %d)",
                            stats_cap(cache->heads), cache->heads, n));
        return;
    }
    rk_attention_mass(c->stream, scores.s, stats, q, &kv, row, n, from, scores.stride, add);
}

static void cuda_kv_keep(void *ctx, int32_t *idx, const float *score, int n, int heads,
                         int stride, int pool, int budget, int tail)
{
    cuda_ctx *c = ctx;
    if (n > RK_K_KEEP_MAX) {
        remember(c, rk_fail(RK_ELIMIT, "the CUDA target compresses prompts of up to %d tokens "
                                       "(got %d)", RK_K_KEEP_MAX, n));
        return;
    }
    fork_side(c, SIDE_PROMPT);
    rk_k_kv_keep(c->side.stream, idx, score, n, heads, stride, pool, budget, tail);
}

/* Into a KIVI cache (from the prompt's fp16 rows) the kept rows go through
 * the stage and are appended at row 0, as the CPU target appends them;
 * into a smartkv cache they go through the stage too, with their scores,
 * which place them (kv_smart.h). */
static void cuda_kv_gather(void *ctx, const rk_kv_layer *dst, const rk_kv_layer *src,
                           rk_kv_scores src_scores, const int32_t *idx, int keep)
{
    cuda_ctx *c = ctx;
    const rk_k_kv d = kernel_kv(dst), s = kernel_kv(src);
    const float *scores = dst->score ? src_scores.s : NULL;
    rk_k_kv stage;
    if (rk_kv_format_row(dst->format)) {
        fork_side(c, SIDE_PROMPT);
        rk_k_kv_gather(c->side.stream, &d, dst->pos, dst->score, d.cap, &s, scores, idx, keep,
                       src_scores.stride);
        return;
    }
    /* The stage is GEMM workspace, which the products use: main stream. */
    join_side(c);
    if (stage_rows(c, dst, &d, keep, "smaller budgets, or a shorter prompt limit", &stage)) {
        rk_k_kv_gather(c->stream, &stage, dst->pos, dst->score, d.cap, &s, scores, idx, keep,
                       src_scores.stride);
        if (dst->format == RK_KV_SMART)
            rk_k_smart_place(c->stream, &d, dst->score, &stage, keep);
        else
            rk_k_kivi_append(c->stream, &d, &stage, c->zero_row, keep);
    }
}

/* With Q, the eviction adds the step's mass from what the attention left
 * itself, so that a decode step runs one side kernel a layer. */
static void cuda_kv_evict(void *ctx, const rk_kv_layer *cache, const void *q, const void *pos,
                          const void *row, int budget, int sinks, int recent)
{
    cuda_ctx *c = ctx;
    const rk_k_kv kv = kernel_kv(cache);
    rk_k_step_mass mass = {NULL, NULL};
    if (q && cache->score) {
        /* Where this step's attention kept no scores of the cache, the mass
         * reads the keys again. */
        if (c->scores_of == cache->k)
            mass = (rk_k_step_mass){decode_scores(c, cache, 1), decode_stats(c, cache, 1)};
        else
            cuda_attention_mass(ctx, (rk_kv_scores){cache->score, cache->cap}, q, cache, row, 1,
                                0, 1);
    }
    fork_side(c, mass.scores ? SIDE_LEFTOVERS : 0);
    rk_k_kv_evict(c->side.stream, &kv, cache->pos, cache->score, pos, row, budget, sinks, recent,
                  mass);
}

static void cuda_top_k(void *ctx, float *vals, int32_t *ids, const float *logits, int vocab,
                       int k)
{
    cuda_ctx *c = ctx;
    rk_k_top_k(c->stream, vals, ids, logits, vocab, k, c->top_k_scratch);
}

static rk_status cuda_capture_begin(void *ctx)
{
    cuda_ctx *c = ctx;
    return cuda_check(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal),
                      "cudaStreamBeginCapture");
}

static rk_status cuda_capture_end(void *ctx, int slot)
{
    cuda_ctx *c = ctx;
    join_all(c);
    rk_status st =
        cuda_check(cudaStreamEndCapture(c->stream, &c->graph[slot]), "cudaStreamEndCapture");
    if (st == RK_OK && c->error != RK_OK)
        st = rk_fail(c->error, "%s", c->error_msg);
    if (st == RK_OK)
        st = cuda_check(cudaGraphInstantiate(&c->exec[slot], c->graph[slot], 0),
                        "cudaGraphInstantiate");
    return st;
}

static rk_status cuda_replay(void *ctx, int slot)
{
    cuda_ctx *c = ctx;
    return cuda_check(cudaGraphLaunch(c->exec[slot], c->stream), "cudaGraphLaunch");
}

static size_t cuda_device_used_bytes(void *ctx)
{
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess)
        return 0;
    return total - free_b;
}

/* Copies of 512 MiB, far past the 50 MiB L2, so that only HBM answers;
 * the median of timed ones after a warm-up. */
#define COPY_PROBE_BYTES ((size_t)512 << 20)
#define COPY_PROBE_RUNS 9

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static rk_status cuda_copy_bandwidth(double *bytes_per_s)
{
    void *src = NULL, *dst = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    float ms[COPY_PROBE_RUNS];
    rk_status st = cuda_check(cudaSetDevice(0), "cudaSetDevice");
    if (st == RK_OK)
        st = cuda_check(cudaMalloc(&src, COPY_PROBE_BYTES), "cudaMalloc (copy probe)");
    if (st == RK_OK)
        st = cuda_check(cudaMalloc(&dst, COPY_PROBE_BYTES), "cudaMalloc (copy probe)");
    if (st == RK_OK)
        st = cuda_check(cudaEventCreate(&start), "cudaEventCreate");
    if (st == RK_OK)
        st = cuda_check(cudaEventCreate(&stop), "cudaEventCreate");
    if (st == RK_OK)
        st = cuda_check(cudaMemset(src, 1, COPY_PROBE_BYTES), "cudaMemset");
    for (int r = -1; r < COPY_PROBE_RUNS && st == RK_OK; r++) {
        cudaEventRecord(start, 0);
        cudaMemcpyAsync(dst, src, COPY_PROBE_BYTES, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(stop, 0);
        st = cuda_check(cudaEventSynchronize(stop), "the copy probe");
        if (st == RK_OK && r >= 0)
            st = cuda_check(cudaEventElapsedTime(&ms[r], start, stop), "cudaEventElapsedTime");
    }
    if (st == RK_OK) {
        qsort(ms, COPY_PROBE_RUNS, sizeof ms[0], cmp_float);
        *bytes_per_s = 2.0 * (double)COPY_PROBE_BYTES / (ms[COPY_PROBE_RUNS / 2] * 1e-3);
    }
    if (start)
        cudaEventDestroy(start);
    if (stop)
        cudaEventDestroy(stop);
    cudaFree(src);
    cudaFree(dst);
    return st;
}

static const rk_ops cuda_ops = {
    .name = "cuda",
    .act_bytes = 2,
    .kv_format = RK_KV_FP16,
    /* The row formats, KIVI's and smartkv's (kv_rows.h). */
    .kv_formats = RK_KV_FORMAT_BIT(RK_KV_FP16) | RK_KV_FORMAT_BIT(RK_KV_INT8) |
                  RK_KV_FORMAT_BIT(RK_KV_INT4) | RK_KV_FORMAT_BIT(RK_KV_INT2) |
                  RK_KV_FORMAT_BIT(RK_KV_KIVI) | RK_KV_FORMAT_BIT(RK_KV_KIVI2) |
                  RK_KV_FORMAT_BIT(RK_KV_KIVI4) | RK_KV_FORMAT_BIT(RK_KV_SMART),
    .supports = cuda_supports,
    .staged_rows = cuda_staged_rows,
    .init = cuda_init,
    .shutdown = cuda_shutdown,
    .device_name = cuda_device_name,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .scratch_bytes = cuda_scratch_bytes,
    .bind_scratch = cuda_bind_scratch,
    .prepare = cuda_prepare,
    .upload = cuda_upload,
    .copy_in = cuda_copy_in,
    .copy_out = cuda_copy_out,
    .sync = cuda_sync,
    .embed = cuda_embed,
    .add_layernorm = cuda_add_layernorm,
    .linear = cuda_linear,
    .linear_pair = cuda_linear_pair,
    .linear_sum = cuda_linear_sum,
    .linear_f32out = cuda_linear_f32out,
    .qkv_rotary = cuda_qkv_rotary,
    .qkv_attention = cuda_qkv_attention,
    .attention = cuda_attention,
    .attention_mass = cuda_attention_mass,
    .kv_keep = cuda_kv_keep,
    .kv_gather = cuda_kv_gather,
    .kv_evict = cuda_kv_evict,
    .top_k = cuda_top_k,
    .capture_begin = cuda_capture_begin,
    .capture_end = cuda_capture_end,
    .replay = cuda_replay,
    .device_used_bytes = cuda_device_used_bytes,
    .copy_bandwidth = cuda_copy_bandwidth,
};

const rk_ops *rk_cuda_ops(void) { return &cuda_ops; }
