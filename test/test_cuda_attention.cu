/* The CUDA attention kernels against a float64 host reference: prefill and
 * split-context decode for every head size the kernels are built for, and
 * fp16 caches of head sizes between them (run padded to the next size up:
 * multiples of 8 and not, odd multiples of 2 among them), chunks that start past
 * earlier cached rows, caches exactly as long as the context, a decode step
 * replayed from a CUDA graph at several positions, then timings at the
 * Pythia-2.8B shape (printed, never checked). Decode runs with the
 * shortest slices (a few heads) and with the shape's own (32 heads), which
 * launch_decode picks by the blocks they make. Caches of int8, int4 and int2
 * rows (kv_rows.h) too, the reference reading the values their codes stand
 * for: prefill with one and with two row tiles per warp, and caches whose
 * heads are not 16-byte aligned (prefill then copies codes 4 bytes at a
 * time).
 *
 * Cache rows past the context hold NaN (quantized: NaN scales), and the
 * output and scratch start as NaN, so a kernel that reads an invalid row or
 * leaves an output unwritten fails the error bound.
 *
 * A decode call that rotates and appends the step's rows itself (from the
 * QKV product's rows) must give, bit for bit, what rk_k_qkv_rotary and then
 * the call give: output, statistics, scores, queries and the cache.
 *
 * Usage: test_cuda_attention [--quick]   (--quick: a few small cases, no
 * timings; for the sanitizers) */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "attention.h"
#include "elementwise.h"
#include "rk_cuda_test.h"

static const double kTolerance = 2e-3;
/* The softmax sum's relative error: fp32 scores and sums of up to 2048
 * terms err by about 1e-6; a wrong scale, base or row is off by far more. */
static const double kStatsTolerance = 5e-4;
static const uint16_t kHalfNaN = 0x7e00;

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double uniform01(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static double normal(void)
{
    const double u = uniform01() + 1e-12, v = uniform01();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static uint16_t to_half_bits(double x)
{
    __half h = __float2half_rn((float)x);
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
}

/* Every fp16 value as a double, so that the reference's inner loops are
 * table reads. */
static double half_value[65536];

static void fill_half_values(void)
{
    for (int b = 0; b < 65536; b++) {
        const uint16_t bits = (uint16_t)b;
        __half h;
        memcpy(&h, &bits, 2);
        half_value[b] = (double)__half2float(h);
    }
}

static double from_half_bits(uint16_t b)
{
    return half_value[b];
}

/* An fp16 cache of HEADS x CAP rows of HEAD_DIM at K and V. */
static rk_k_kv fp16_cache(void *k, void *v, int heads, int head_dim, int cap)
{
    return rk_k_kv{k, v, cap, heads, head_dim, 16, 0};
}

struct Problem {
    int head_dim, heads, n, pos0, cap;
    std::vector<uint16_t> q, k, v;
    /* A quantized cache's rows (bits < 16); k and v then hold the values
     * they read back as. */
    int bits, group;
    std::vector<uint8_t> kq, vq;
};

/* Queries with a spread of 1.5 make the softmax peaked enough that a wrong
 * scale or mask shows; cache rows past pos0+n are NaN. */
static Problem make_problem(int head_dim, int heads, int n, int pos0, int cap)
{
    Problem p{head_dim, heads, n, pos0, cap, {}, {}, {}, 16, 0, {}, {}};
    const int kv_len = pos0 + n;
    p.q.resize((size_t)heads * n * head_dim);
    for (auto &x : p.q)
        x = to_half_bits(1.5 * normal());
    p.k.assign((size_t)heads * cap * head_dim, kHalfNaN);
    p.v.assign((size_t)heads * cap * head_dim, kHalfNaN);
    for (int h = 0; h < heads; h++)
        for (size_t i = 0; i < (size_t)kv_len * head_dim; i++) {
            p.k[(size_t)h * cap * head_dim + i] = to_half_bits(normal());
            p.v[(size_t)h * cap * head_dim + i] = to_half_bits(2.0 * uniform01() - 1.0);
        }
    return p;
}

/* P's cache as BITS-bit rows in groups of GROUP: random codes under
 * random scales and minimums (K's over a range of 1 to 4, V's over 2, about
 * zero), written as kv_rows.h lays them out; P's K and V become the values
 * those read back as, code x scale + minimum in fp32, then fp16, as the
 * kernels read them into their tiles. Rows past the context are 0xff bytes,
 * whose scales are NaN. */
static void quantize_problem(Problem &p, int bits, int group)
{
    const int D = p.head_dim, kv_len = p.pos0 + p.n, per_byte = 8 / bits;
    const size_t code_bytes = (size_t)D * bits / 8, row_bytes = code_bytes + D / group * 4;
    const unsigned qmax = (1u << bits) - 1;
    p.bits = bits;
    p.group = group;
    for (int side = 0; side < 2; side++) {
        std::vector<uint8_t> &rows = side ? p.vq : p.kq;
        std::vector<uint16_t> &values = side ? p.v : p.k;
        rows.assign((size_t)p.heads * p.cap * row_bytes, 0xff);
        for (int h = 0; h < p.heads; h++)
            for (int r = 0; r < kv_len; r++) {
                uint8_t *row = &rows[((size_t)h * p.cap + r) * row_bytes];
                uint16_t *value = &values[((size_t)h * p.cap + r) * D];
                memset(row, 0, code_bytes);
                for (int g = 0; g < D / group; g++) {
                    const double range = side ? 2.0 : 1.0 + 3.0 * uniform01();
                    const uint16_t sb = to_half_bits(range / qmax);
                    const uint16_t mb = to_half_bits(-0.5 * range + 0.1 * normal());
                    memcpy(row + code_bytes + 4 * g, &sb, 2);
                    memcpy(row + code_bytes + 4 * g + 2, &mb, 2);
                    const float sc = (float)from_half_bits(sb), mn = (float)from_half_bits(mb);
                    for (int i = g * group; i < (g + 1) * group; i++) {
                        const unsigned code = (unsigned)(uniform01() * (qmax + 1)) % (qmax + 1);
                        row[i / per_byte] |= (uint8_t)(code << (bits * (i % per_byte)));
                        const float prod = (float)code * sc;
                        value[i] = to_half_bits(prod + mn);
                    }
                }
            }
    }
}

/* Heads and rows compared against the reference: all of a small problem; in
 * a large one the first, middle and last heads, and every fifth row plus the
 * first and last 64, where tiles start and end. Every output is still
 * checked to be finite (written). */
static bool head_checked(const Problem &p, int h)
{
    return p.heads <= 4 || h == 0 || h == p.heads / 2 || h == p.heads - 1;
}

static bool row_checked(const Problem &p, int i)
{
    if ((double)p.n * (p.pos0 + p.n) <= 2e6)
        return true;
    return i % 5 == 0 || i < 64 || i >= p.n - 64;
}

/* Max |gpu - reference| over the checked rows; NaN anywhere gives +inf.
 * With STATS (the kernels' softmax statistics, a max M in log2 units and a
 * sum L per head and row), *STATS_ERR gets the worst relative error of the
 * softmax denominator they give, L * 2^(M - reference max), whatever max the
 * kernel chose. */
static double max_error(const Problem &p, const std::vector<uint16_t> &out,
                        const std::vector<float> *stats = nullptr, double *stats_err = nullptr)
{
    const int D = p.head_dim, width = p.heads * D;
    double worst = 0.0;
    for (size_t i = 0; i < out.size(); i++)
        if (!isfinite(from_half_bits(out[i])))
            return INFINITY;
    std::vector<double> w(p.pos0 + p.n), acc(D);
    const double scale = 1.0 / sqrt((double)D);
    for (int h = 0; h < p.heads; h++) {
        if (!head_checked(p, h))
            continue;
        const uint16_t *kh = &p.k[(size_t)h * p.cap * D], *vh = &p.v[(size_t)h * p.cap * D];
        for (int i = 0; i < p.n; i++) {
            if (!row_checked(p, i))
                continue;
            const uint16_t *qi = &p.q[((size_t)h * p.n + i) * D];
            const int visible = p.pos0 + i + 1;
            double mx = -INFINITY;
            for (int j = 0; j < visible; j++) {
                double s = 0.0;
                for (int d = 0; d < D; d++)
                    s += from_half_bits(qi[d]) * from_half_bits(kh[(size_t)j * D + d]);
                w[j] = s * scale;
                mx = std::max(mx, w[j]);
            }
            double sum = 0.0;
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int j = 0; j < visible; j++) {
                const double e = exp(w[j] - mx);
                sum += e;
                for (int d = 0; d < D; d++)
                    acc[d] += e * from_half_bits(vh[(size_t)j * D + d]);
            }
            if (stats) {
                const size_t at = 2 * ((size_t)h * p.n + i);
                const double m = (*stats)[at], l = (*stats)[at + 1];
                const double rel = fabs(l * exp2(m - mx / log(2.0)) / sum - 1.0);
                *stats_err = std::max(*stats_err, isfinite(rel) ? rel : INFINITY);
            }
            for (int d = 0; d < D; d++) {
                const double got = from_half_bits(out[(size_t)i * width + h * D + d]);
                worst = std::max(worst, fabs(got - acc[d] / sum));
            }
        }
    }
    return worst;
}

struct DeviceProblem {
    void *q, *k, *v, *out, *scratch;
    float *stats, *scores;
    int *pos;
    size_t out_bytes, scratch_bytes, stats_bytes, scores_bytes;
};

static DeviceProblem upload(const Problem &p)
{
    DeviceProblem d;
    const bool quantized = p.bits != 16;
    const size_t cache = quantized ? p.kq.size() : p.k.size() * 2;
    d.out_bytes = (size_t)p.n * p.heads * p.head_dim * 2;
    d.scratch_bytes = rk_attention_decode_scratch_bytes(p.n, p.heads, p.head_dim, p.cap);
    d.stats_bytes = (size_t)p.heads * p.n * 2 * sizeof(float);
    d.scores_bytes = (size_t)p.heads * p.n * p.cap * sizeof(float);
    CUDA_OK(cudaMalloc(&d.q, p.q.size() * 2));
    CUDA_OK(cudaMalloc(&d.k, cache));
    CUDA_OK(cudaMalloc(&d.v, cache));
    CUDA_OK(cudaMalloc(&d.out, d.out_bytes));
    CUDA_OK(cudaMalloc(&d.scratch, d.scratch_bytes));
    CUDA_OK(cudaMalloc(&d.stats, d.stats_bytes));
    CUDA_OK(cudaMalloc(&d.scores, d.scores_bytes));
    CUDA_OK(cudaMalloc(&d.pos, sizeof(int)));
    CUDA_OK(cudaMemcpy(d.q, p.q.data(), p.q.size() * 2, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d.k, quantized ? (const void *)p.kq.data() : p.k.data(), cache,
                       cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d.v, quantized ? (const void *)p.vq.data() : p.v.data(), cache,
                       cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d.pos, &p.pos0, sizeof(int), cudaMemcpyHostToDevice));
    return d;
}

static void release(DeviceProblem &d)
{
    cudaFree(d.q);
    cudaFree(d.k);
    cudaFree(d.v);
    cudaFree(d.out);
    cudaFree(d.scratch);
    cudaFree(d.stats);
    cudaFree(d.scores);
    cudaFree(d.pos);
}

static void poison(const DeviceProblem &d)
{
    CUDA_OK(cudaMemset(d.out, 0xff, d.out_bytes));
    CUDA_OK(cudaMemset(d.scratch, 0xff, d.scratch_bytes));
    CUDA_OK(cudaMemset(d.stats, 0xff, d.stats_bytes));
    CUDA_OK(cudaMemset(d.scores, 0xff, d.scores_bytes));
}

static std::vector<float> fetch_stats(const DeviceProblem &d)
{
    std::vector<float> stats(d.stats_bytes / sizeof(float));
    CUDA_OK(cudaMemcpy(stats.data(), d.stats, d.stats_bytes, cudaMemcpyDeviceToHost));
    return stats;
}

static std::vector<uint16_t> fetch_out(const Problem &p, const DeviceProblem &d)
{
    CUDA_OK(cudaGetLastError());
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<uint16_t> out((size_t)p.n * p.heads * p.head_dim);
    CUDA_OK(cudaMemcpy(out.data(), d.out, d.out_bytes, cudaMemcpyDeviceToHost));
    return out;
}

/* The built sizes, then fp16-only ones between them: multiples of 8 (24,
 * 40, 72, 136) and not (50, 250), some a whole built size smaller. */
#define RK_LIST(D) D,
static const int dims[] = {RK_ATTENTION_HEAD_DIMS(RK_LIST) 24, 40, 50, 72, 136, 250};
#undef RK_LIST
#define RK_COUNT(D) +1
enum { N_BUILT = 0 RK_ATTENTION_HEAD_DIMS(RK_COUNT), N_DIMS = sizeof dims / sizeof dims[0] };
#undef RK_COUNT
static double worst_by_dim[N_DIMS];

static void record(int head_dim, double err)
{
    for (int i = 0; i < N_DIMS; i++)
        if (dims[i] == head_dim)
            worst_by_dim[i] = std::max(worst_by_dim[i], err);
}

/* A kernel's output and statistics for P against the reference. */
static void check_run(const Problem &p, const DeviceProblem &d, const char *kernel,
                      const char *fmt)
{
    const std::vector<uint16_t> out = fetch_out(p, d);
    const std::vector<float> stats = fetch_stats(d);
    double stats_err = 0.0;
    const double err = max_error(p, out, &stats, &stats_err);
    printf("%-7s D=%-3d heads=%d n=%-4d pos0=%-4d cap=%-4d%s max abs err %.2e\n", kernel,
           p.head_dim, p.heads, p.n, p.pos0, p.cap, fmt, err);
    CHECKF(err <= kTolerance, "%s D=%d n=%d pos0=%d%s: %g", kernel, p.head_dim, p.n, p.pos0, fmt,
           err);
    CHECKF(stats_err <= kStatsTolerance, "%s D=%d n=%d pos0=%d%s: softmax sum off by %g", kernel,
           p.head_dim, p.n, p.pos0, fmt, stats_err);
    record(p.head_dim, err);
}

/* The scores a decode call left (attention.h) against q·k of the values the
 * cache holds, relative to the sum of |q_d k_d|: fp32 sums of fp16 products
 * err by about 1e-6 of it, a wrong row or query by far more than the 1e-4
 * allowed. Rows past a query's own must be -inf. */
static double scores_error(const Problem &p, const DeviceProblem &d)
{
    const int D = p.head_dim;
    std::vector<float> got(d.scores_bytes / sizeof(float));
    CUDA_OK(cudaMemcpy(got.data(), d.scores, d.scores_bytes, cudaMemcpyDeviceToHost));
    double worst = 0.0;
    for (int h = 0; h < p.heads; h++)
        for (int i = 0; i < p.n; i++) {
            const uint16_t *qi = &p.q[((size_t)h * p.n + i) * D];
            for (int j = 0; j < p.pos0 + p.n; j++) {
                const float g = got[((size_t)h * p.n + i) * p.cap + j];
                if (j > p.pos0 + i) {
                    if (!(isinf(g) && g < 0))
                        return INFINITY;
                    continue;
                }
                double s = 0.0, size = 0.0;
                for (int e = 0; e < D; e++) {
                    const double x = from_half_bits(qi[e]) *
                                     from_half_bits(p.k[((size_t)h * p.cap + j) * D + e]);
                    s += x;
                    size += fabs(x);
                }
                const double err = fabs(g - s) / (size + 1e-30);
                worst = std::max(worst, isfinite(err) ? err : INFINITY);
            }
        }
    return worst;
}

/* BITS 16: an fp16 cache; 8, 4 or 2: one of those rows in groups of GROUP. */
static void run_case(int head_dim, int heads, int n, int pos0, int cap, bool prefill, bool decode,
                     int bits = 16, int group = 0)
{
    Problem p = make_problem(head_dim, heads, n, pos0, cap);
    if (bits != 16)
        quantize_problem(p, bits, group);
    DeviceProblem d = upload(p);
    const rk_k_kv kv = {d.k, d.v, cap, heads, head_dim, bits, group};
    char fmt[32] = "";
    if (bits != 16)
        snprintf(fmt, sizeof fmt, " int%d/%d", bits, group);
    if (prefill) {
        poison(d);
        rk_attention_prefill(0, d.out, d.stats, d.q, &kv, d.pos, n);
        check_run(p, d, "prefill", fmt);
    }
    if (decode) {
        poison(d);
        rk_attention_decode(0, d.out, d.stats, d.scores, d.q, &kv, d.scratch, d.pos, n, NULL);
        check_run(p, d, "decode", fmt);
        const double err = scores_error(p, d);
        CHECKF(err <= 1e-4, "decode D=%d n=%d pos0=%d%s: scores off by %.3g of sum |q k|",
               head_dim, n, pos0, fmt, err);
    }
    release(d);
}

/* The quantized caches: every format at a head size, one and two row tiles
 * per warp, chunks after cached rows, heads 16-byte aligned (cap 2048) and
 * not (cap 1921, 1923), a group that is not a multiple of 8. */
static void quantized_cases(int D, bool quick)
{
    static const int formats[] = {8, 4, 2};
    for (int bits : formats) {
        if (quick) {
            run_case(D, 2, 70, 100, 175, true, false, bits, 16);
            run_case(D, 2, 5, 120, 131, true, true, bits, 16);
            continue;
        }
        run_case(D, 3, 300, 0, 301, true, false, bits, 16);
        run_case(D, 3, 16, 1000, 1021, true, true, bits, 16);
        run_case(D, 32, 1920, 0, 2048, true, false, bits, 16);
        run_case(D, 32, 1664, 256, 1921, true, false, bits, 16);
        run_case(D, 32, 1920, 0, 1923, true, false, bits, D == 80 ? 20 : D);
    }
}

template <typename T> static std::vector<T> fetch(const void *p, size_t count)
{
    std::vector<T> x(count);
    CUDA_OK(cudaMemcpy(x.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost));
    return x;
}

/* N rows of a QKV product ([n, heads, 3, head_dim]) at positions POSITION..
 * into cache rows POS0.. of an fp16 cache of CAP rows: rk_k_qkv_rotary and
 * a decode call, against a decode call that rotates the rows itself. */
static void rotary_case(int head_dim, int heads, int n, int pos0, int cap, int rot_dims,
                        int position)
{
    Problem p = make_problem(head_dim, heads, n, pos0, cap);
    std::vector<uint16_t> qkv((size_t)n * heads * 3 * head_dim);
    for (auto &x : qkv)
        x = to_half_bits(1.5 * normal());
    std::vector<float> rope((size_t)(position + n) * rot_dims);
    for (int t = 0; t < position + n; t++)
        for (int i = 0; i < rot_dims / 2; i++) {
            const double f = t * pow(10000.0, -2.0 * i / rot_dims);
            rope[(size_t)t * rot_dims + 2 * i] = (float)cos(f);
            rope[(size_t)t * rot_dims + 2 * i + 1] = (float)sin(f);
        }
    DeviceProblem a = upload(p), b = upload(p);
    void *d_qkv;
    float *d_rope;
    int *d_position;
    CUDA_OK(cudaMalloc(&d_qkv, qkv.size() * 2));
    CUDA_OK(cudaMalloc(&d_rope, rope.size() * sizeof(float)));
    CUDA_OK(cudaMalloc(&d_position, sizeof(int)));
    CUDA_OK(cudaMemcpy(d_qkv, qkv.data(), qkv.size() * 2, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d_rope, rope.data(), rope.size() * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d_position, &position, sizeof(int), cudaMemcpyHostToDevice));
    poison(a);
    poison(b);
    CUDA_OK(cudaMemset(a.q, 0xff, p.q.size() * 2));
    CUDA_OK(cudaMemset(b.q, 0xff, p.q.size() * 2));
    const rk_k_kv ka = fp16_cache(a.k, a.v, heads, head_dim, cap),
                  kb = fp16_cache(b.k, b.v, heads, head_dim, cap);
    rk_k_qkv_rotary(0, a.q, &ka, d_qkv, d_rope, d_position, a.pos, n, rot_dims);
    rk_attention_decode(0, a.out, a.stats, a.scores, a.q, &ka, a.scratch, a.pos, n, NULL);
    const rk_attention_rotary rot = {d_qkv, d_rope, d_position, b.q, rot_dims};
    rk_attention_decode(0, b.out, b.stats, b.scores, b.q, &kb, b.scratch, b.pos, n, &rot);
    CUDA_OK(cudaGetLastError());
    CUDA_OK(cudaDeviceSynchronize());
    const size_t cache_halves = (size_t)heads * cap * head_dim;
    int differ = 0;
    differ += fetch<uint16_t>(a.out, a.out_bytes / 2) != fetch<uint16_t>(b.out, b.out_bytes / 2);
    differ += 2 * (fetch<uint32_t>(a.stats, a.stats_bytes / 4) !=
                   fetch<uint32_t>(b.stats, b.stats_bytes / 4));
    differ += 4 * (fetch<uint32_t>(a.scores, a.scores_bytes / 4) !=
                   fetch<uint32_t>(b.scores, b.scores_bytes / 4));
    differ += 8 * (fetch<uint16_t>(a.q, p.q.size()) != fetch<uint16_t>(b.q, p.q.size()));
    differ += 16 * (fetch<uint16_t>(a.k, cache_halves) != fetch<uint16_t>(b.k, cache_halves));
    differ += 32 * (fetch<uint16_t>(a.v, cache_halves) != fetch<uint16_t>(b.v, cache_halves));
    printf("rotary  D=%-3d heads=%d n=%-4d pos0=%-4d cap=%-4d rot=%d position=%d: %s\n", head_dim,
           heads, n, pos0, cap, rot_dims, position, differ ? "DIFFERS" : "same bits");
    CHECKF(differ == 0,
           "decode rotating its own rows, D=%d n=%d pos0=%d: differs from rotary then decode "
           "(1 output, 2 statistics, 4 scores, 8 queries, 16 K, 32 V: %d)",
           head_dim, n, pos0, differ);
    cudaFree(d_qkv);
    cudaFree(d_rope);
    cudaFree(d_position);
    release(a);
    release(b);
}

/* One decode step captured once and replayed with pos0 changed in device
 * memory, as the model's decode graph does. */
static void graph_replay_case(int head_dim, int heads, int cap, const int *positions, int count)
{
    Problem p = make_problem(head_dim, heads, 1, positions[count - 1], cap);
    DeviceProblem d = upload(p);
    cudaStream_t s;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamCreate(&s));
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    const rk_k_kv kv = fp16_cache(d.k, d.v, heads, head_dim, cap);
    rk_attention_decode(s, d.out, NULL, NULL, d.q, &kv, d.scratch, d.pos, 1, NULL);
    CUDA_OK(cudaStreamEndCapture(s, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < count; i++) {
        Problem at = p;
        at.pos0 = positions[i];
        CUDA_OK(cudaMemcpy(d.pos, &at.pos0, sizeof(int), cudaMemcpyHostToDevice));
        poison(d);
        CUDA_OK(cudaGraphLaunch(exec, s));
        /* Rows between this position and the last one hold data, not NaN, so
         * this also checks that they are ignored. */
        const double err = max_error(at, fetch_out(at, d));
        printf("graph   D=%-3d heads=%d n=1    pos0=%-4d cap=%-4d max abs err %.2e\n", head_dim,
               heads, at.pos0, cap, err);
        CHECKF(err <= kTolerance, "graph replay D=%d pos0=%d: %g", head_dim, at.pos0, err);
        record(head_dim, err);
    }
    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
    CUDA_OK(cudaStreamDestroy(s));
    release(d);
}

__global__ void fill_random(__half *p, size_t count, uint32_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 0x9e3779b9u ^ seed;
        x ^= x >> 16;
        x *= 0x7feb352du;
        x ^= x >> 15;
        x *= 0x846ca68bu;
        x ^= x >> 16;
        p[i] = __float2half(scale * ((float)(x >> 8) * (2.0f / 16777216.0f) - 1.0f));
    }
}

static double median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/* Pythia-2.8B: 32 heads of 80, a 2048-row cache per layer, 32 layers, so
 * that the decode reads come from memory and not from the 50 MB L2. */
static void timings(void)
{
    const int heads = 32, D = 80, cap = 2048, layers = 32, n_prefill = 1920, reps = 20;
    const size_t cache = (size_t)heads * cap * D;
    __half *k, *v, *q, *out;
    void *scratch;
    int *pos;
    CUDA_OK(cudaMalloc(&k, cache * layers * 2));
    CUDA_OK(cudaMalloc(&v, cache * layers * 2));
    CUDA_OK(cudaMalloc(&q, (size_t)heads * n_prefill * D * 2));
    CUDA_OK(cudaMalloc(&out, (size_t)heads * n_prefill * D * 2));
    CUDA_OK(cudaMalloc(&scratch, rk_attention_decode_scratch_bytes(1, heads, D, cap)));
    CUDA_OK(cudaMalloc(&pos, sizeof(int)));
    fill_random<<<1024, 256>>>(k, cache * layers, 1, 1.0f);
    fill_random<<<1024, 256>>>(v, cache * layers, 2, 1.0f);
    fill_random<<<1024, 256>>>(q, (size_t)heads * n_prefill * D, 3, 1.5f);
    CUDA_OK(cudaGetLastError());

    cudaEvent_t t0, t1;
    CUDA_OK(cudaEventCreate(&t0));
    CUDA_OK(cudaEventCreate(&t1));
    std::vector<float> ms;
    float elapsed;

    const int zero = 0;
    CUDA_OK(cudaMemcpy(pos, &zero, sizeof(int), cudaMemcpyHostToDevice));
    const rk_k_kv first = fp16_cache(k, v, heads, D, cap);
    for (int i = 0; i < 3; i++)
        rk_attention_prefill(0, out, NULL, q, &first, pos, n_prefill);
    for (int i = 0; i < reps; i++) {
        const size_t layer = (size_t)(i % layers) * cache;
        CUDA_OK(cudaEventRecord(t0));
        const rk_k_kv kv = fp16_cache(k + layer, v + layer, heads, D, cap);
        rk_attention_prefill(0, out, NULL, q, &kv, pos, n_prefill);
        CUDA_OK(cudaEventRecord(t1));
        CUDA_OK(cudaEventSynchronize(t1));
        CUDA_OK(cudaEventElapsedTime(&elapsed, t0, t1));
        ms.push_back(elapsed);
    }
    CUDA_OK(cudaGetLastError());
    const double prefill_us = median(ms) * 1e3;
    const double pairs = (double)n_prefill * (n_prefill + 1) / 2;
    printf("timing prefill n=%d pos0=0 (32x80): %.1f us per layer, %.0f TFLOP/s causal\n",
           n_prefill, prefill_us, 4.0 * pairs * D * heads / (prefill_us * 1e-6) / 1e12);

    const int last = 1919;
    CUDA_OK(cudaMemcpy(pos, &last, sizeof(int), cudaMemcpyHostToDevice));
    const double bytes = 2.0 * heads * (last + 1) * D * 2;
    for (int i = 0; i < 3; i++)
        rk_attention_decode(0, out, NULL, NULL, q, &first, scratch, pos, 1, NULL);
    ms.clear();
    for (int i = 0; i < reps; i++) {
        const size_t layer = (size_t)(i % layers) * cache;
        CUDA_OK(cudaEventRecord(t0));
        const rk_k_kv kv = fp16_cache(k + layer, v + layer, heads, D, cap);
        rk_attention_decode(0, out, NULL, NULL, q, &kv, scratch, pos, 1, NULL);
        CUDA_OK(cudaEventRecord(t1));
        CUDA_OK(cudaEventSynchronize(t1));
        CUDA_OK(cudaEventElapsedTime(&elapsed, t0, t1));
        ms.push_back(elapsed);
    }
    CUDA_OK(cudaGetLastError());
    double us = median(ms) * 1e3;
    printf("timing decode n=1 pos0=%d (32x80), one call: %.2f us per layer, %.0f GB/s\n", last, us,
           bytes / (us * 1e-6) / 1e9);

    cudaStream_t s;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamCreate(&s));
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int l = 0; l < layers; l++) {
        const rk_k_kv kv = fp16_cache(k + l * cache, v + l * cache, heads, D, cap);
        rk_attention_decode(s, out, NULL, NULL, q, &kv, scratch, pos, 1, NULL);
    }
    CUDA_OK(cudaStreamEndCapture(s, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 3; i++)
        CUDA_OK(cudaGraphLaunch(exec, s));
    ms.clear();
    for (int i = 0; i < reps; i++) {
        CUDA_OK(cudaEventRecord(t0, s));
        CUDA_OK(cudaGraphLaunch(exec, s));
        CUDA_OK(cudaEventRecord(t1, s));
        CUDA_OK(cudaEventSynchronize(t1));
        CUDA_OK(cudaEventElapsedTime(&elapsed, t0, t1));
        ms.push_back(elapsed);
    }
    us = median(ms) * 1e3 / layers;
    printf("timing decode n=1 pos0=%d (32x80), graph of %d layers: %.2f us per layer, %.0f GB/s\n",
           last, layers, us, bytes / (us * 1e-6) / 1e9);

    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
    CUDA_OK(cudaStreamDestroy(s));
    CUDA_OK(cudaEventDestroy(t0));
    CUDA_OK(cudaEventDestroy(t1));
    cudaFree(k);
    cudaFree(v);
    cudaFree(q);
    cudaFree(out);
    cudaFree(scratch);
    cudaFree(pos);
}

int main(int argc, char **argv)
{
    const bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("SKIP: no CUDA device\n");
        return RK_SKIP;
    }
    fill_half_values();
    /* Quantized rows only at a built size; no odd, oversized or empty heads. */
    CHECK(rk_attention_supports(50, 16) && !rk_attention_supports(50, 8));
    CHECK(rk_attention_instance_dim(50, 16) == 64 && rk_attention_instance_dim(250, 16) == 256);
    CHECK(rk_attention_instance_dim(80, 4) == 80 && rk_attention_instance_dim(72, 4) == 0);
    CHECK(!rk_attention_supports(51, 16) && !rk_attention_supports(258, 16) &&
          !rk_attention_supports(0, 16));
    for (int di = 0; di < N_DIMS; di++) {
        const int D = dims[di];
        CHECK(rk_attention_supports(D, 16));
        CHECK(rk_attention_supports(D, 8) == (di < N_BUILT));
        if (di >= N_BUILT) {
            /* Padded sizes: one-row and few-row decode, chunks after cached
             * rows, one and two row tiles a warp. */
            run_case(D, 3, 1, 0, 1, true, true);
            run_case(D, 3, 1, 1919, 2048, true, true);
            run_case(D, 2, 20, 300, 333, true, true);
            run_case(D, 3, 300, 256, 565, true, false);
            if (!quick)
                run_case(D, 32, 1920, 0, 2048, true, false);
            continue;
        }
        if (quick) {
            run_case(D, 2, 1, 0, 1, true, true);
            run_case(D, 2, 1, 127, 130, true, true);
            run_case(D, 2, 16, 40, 56, true, true);
            run_case(D, 1, 130, 0, 130, true, false);
            run_case(D, 1, 70, 100, 175, true, false);
            if (D == 80)
                quantized_cases(D, true);
            continue;
        }
        /* Decode at the positions of the brief; caches exactly full (pos0 0
         * and 127), or with room left. */
        run_case(D, 3, 1, 0, 1, true, true);
        run_case(D, 3, 1, 1, 200, true, true);
        run_case(D, 3, 1, 127, 128, true, true);
        run_case(D, 3, 1, 1919, 2048, true, true);
        /* A few queries, up to two groups of 16. */
        run_case(D, 3, 5, 63, 68, true, true);
        run_case(D, 3, 16, 1000, 1100, true, true);
        run_case(D, 2, 20, 300, 333, true, true);
        static const int ns[] = {1, 7, 64, 300, 1920};
        static const int starts[] = {0, 256};
        for (int n : ns)
            for (int pos0 : starts) {
                const int heads = n >= 1920 ? 2 : 3;
                const int cap = pos0 + n + (n % 2 ? 0 : 9);
                run_case(D, heads, n, pos0, cap, true, n <= 16);
            }
        /* The model's own shape, enough blocks for the kernel variant with
         * two row tiles per warp, and for decode with the shape's own slices
         * (fewer heads give an SM no block of those and take the shortest
         * slices: launch_decode). */
        run_case(D, 32, 1920, 0, 2048, true, false);
        run_case(D, 32, 1, 1919, 2048, false, true);
        run_case(D, 32, 16, 1000, 1100, false, true);
        run_case(D, 32, 1664, 128, 2048, true, false);
        if (D == 80 || D == 128)
            quantized_cases(D, false);
    }
    static const int positions[] = {0, 700, 1919};
    graph_replay_case(80, 4, 2048, positions, 3);
    graph_replay_case(80, 32, 2048, positions, 3);
    /* Pythia's quarter of head_dim rotated; rows at other positions than
     * their own (a compressed cache); few rows across a slice's end; head
     * sizes padded, not a multiple of 8, and the largest. */
    rotary_case(80, 3, 1, 0, 1, 20, 0);
    rotary_case(80, 3, 1, 700, 2048, 20, 700);
    rotary_case(80, 32, 1, 1500, 2048, 20, 1500);
    rotary_case(80, 3, 1, 511, 513, 20, 1900);
    rotary_case(80, 2, 16, 120, 200, 20, 120);
    rotary_case(64, 3, 5, 61, 70, 16, 300);
    rotary_case(128, 2, 7, 1000, 1100, 32, 1000);
    rotary_case(50, 2, 3, 30, 40, 12, 30);
    rotary_case(256, 2, 2, 255, 300, 64, 255);
    if (!quick)
        timings();
    for (int di = 0; di < N_DIMS; di++)
        printf("head_dim %3d: max abs err %.2e\n", dims[di], worst_by_dim[di]);
    return rk_test_finish("test_cuda_attention");
}
