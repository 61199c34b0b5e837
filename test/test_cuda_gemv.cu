/* The one-row products (gemv.h) against a float64 host reference: a single
 * product with fp16 and fp32 output, a pair (the second with GELU) and a
 * sum, on shapes from one output row to Pythia-2.8B's logits, with inputs of
 * different lengths, so that the launch picks splits of 1 to 8 warps a row
 * and batches of 3 to 7 chunks a lane. Outputs start as NaN, so a row left
 * unwritten fails.
 *
 * Then the order the sum relies on: it fetches its second input before it
 * waits for the kernel before it. Here, as in a decode step, a writer that
 * lets its dependent launch at once writes that input after a delay, and a
 * kernel in between waits for the writer before it lets the next launch,
 * then runs on; as behind a long attention, a third kernel may follow that
 * lets the sum launch before it waits. The sum must see each round's input,
 * never the one before (the first round's before is NaN).
 *
 * Usage: test_cuda_gemv */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#include <vector>

#include "gemv.h"
#include "launch.cuh"
#include "rk_cuda_test.h"

static unsigned long long rng = 0x2545f4914f6cdd1dull;

/* N fp16 values on the device and, rounded the same way, on the host. */
struct halves {
    std::vector<float> host;
    __half *dev = nullptr;
};

static halves random_halves(size_t n, float scale)
{
    halves h;
    std::vector<__half> bits(n);
    h.host.resize(n);
    for (size_t i = 0; i < n; i++) {
        bits[i] = __float2half_rn(scale * rk_test_frand(&rng));
        h.host[i] = __half2float(bits[i]);
    }
    CUDA_OK(cudaMalloc(&h.dev, n * sizeof(__half)));
    CUDA_OK(cudaMemcpy(h.dev, bits.data(), n * sizeof(__half), cudaMemcpyHostToDevice));
    return h;
}

struct product {
    halves w, x, bias;
    int in, out, gelu;
    rk_gemv_part part(void *y) const
    {
        return rk_gemv_part{y, w.dev, x.dev, bias.dev, in, out, gelu};
    }
};

static product random_product(int in, int out, int gelu)
{
    /* Weights of about 1/sqrt(in), as a trained layer's, keep outputs near 1. */
    return product{random_halves((size_t)in * out, 1.7f / sqrtf((float)in)),
                   random_halves((size_t)in, 1.0f), random_halves((size_t)out, 0.5f), in, out,
                   gelu};
}

static void free_product(product &p)
{
    cudaFree(p.w.dev);
    cudaFree(p.x.dev);
    cudaFree(p.bias.dev);
}

/* Row O's dot product and the sum of its terms' magnitudes, which bounds
 * the fp32 accumulation's error. */
static double dot_row(const product &p, const std::vector<float> &x, int o, double *mag)
{
    double s = 0.0;
    for (int i = 0; i < p.in; i++) {
        const double t = (double)p.w.host[(size_t)o * p.in + i] * x[i];
        s += t;
        *mag += fabs(t);
    }
    return s;
}

/* Y (fp16 or fp32 on the device) against REF: fp16 output rounds by 2^-11
 * of the value; fp32 accumulation errs by far less than 1e-5 of the terms'
 * magnitudes. */
static void check_rows(const char *what, const void *y, bool f32, const std::vector<double> &ref,
                       const std::vector<double> &mag)
{
    const size_t n = ref.size();
    std::vector<float> got(n);
    if (f32) {
        CUDA_OK(cudaMemcpy(got.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost));
    } else {
        std::vector<__half> h(n);
        CUDA_OK(cudaMemcpy(h.data(), y, n * sizeof(__half), cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n; i++)
            got[i] = __half2float(h[i]);
    }
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        const double tol = (f32 ? 1e-6 : 1e-3) * fabs(ref[i]) + 1e-5 * mag[i] + 1e-6;
        if (!(fabs((double)got[i] - ref[i]) <= tol) && bad++ == 0)
            first = i;
    }
    CHECKF(bad == 0, "%s: %zu of %zu rows off, first %zu: %g against %g", what, bad, n, first,
           (double)got[first], ref[first]);
}

static double gelu(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }

/* P's rows into REF and MAG from offset AT; ADD sums onto what is there. */
static void reference(const product &p, const std::vector<float> &x, std::vector<double> &ref,
                      std::vector<double> &mag, size_t at, bool add)
{
    for (int o = 0; o < p.out; o++) {
        double m = 0.0;
        double v = dot_row(p, x, o, &m) + p.bias.host[o];
        if (p.gelu)
            v = gelu(v);
        ref[at + o] = add ? ref[at + o] + v : v;
        mag[at + o] += m;
    }
}

static void *nan_output(size_t n, size_t elem)
{
    void *y = nullptr;
    CUDA_OK(cudaMalloc(&y, n * elem));
    CUDA_OK(cudaMemset(y, 0xff, n * elem));
    return y;
}

static void single_case(int in, int out, bool f32)
{
    product p = random_product(in, out, 0);
    void *y = nan_output((size_t)out, f32 ? sizeof(float) : sizeof(__half));
    const rk_gemv_part g = p.part(y);
    rk_k_gemv(0, &g, f32 ? 1 : 0);
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<double> ref(out), mag(out, 0.0);
    reference(p, p.x.host, ref, mag, 0, false);
    char what[96];
    snprintf(what, sizeof what, "single in %d out %d %s", in, out, f32 ? "fp32" : "fp16");
    check_rows(what, y, f32, ref, mag);
    cudaFree(y);
    free_product(p);
}

static void pair_case(int in_a, int out_a, int in_b, int out_b)
{
    product a = random_product(in_a, out_a, 0), b = random_product(in_b, out_b, 1);
    void *ya = nan_output((size_t)out_a, sizeof(__half));
    void *yb = nan_output((size_t)out_b, sizeof(__half));
    const rk_gemv_part ga = a.part(ya), gb = b.part(yb);
    rk_k_gemv_pair(0, &ga, &gb);
    CUDA_OK(cudaDeviceSynchronize());
    char what[96];
    std::vector<double> ra(out_a), ma(out_a, 0.0), rb(out_b), mb(out_b, 0.0);
    reference(a, a.x.host, ra, ma, 0, false);
    reference(b, b.x.host, rb, mb, 0, false);
    snprintf(what, sizeof what, "pair %dx%d + %dx%d, first", in_a, out_a, in_b, out_b);
    check_rows(what, ya, false, ra, ma);
    snprintf(what, sizeof what, "pair %dx%d + %dx%d, second (GELU)", in_a, out_a, in_b, out_b);
    check_rows(what, yb, false, rb, mb);
    cudaFree(ya);
    cudaFree(yb);
    free_product(a);
    free_product(b);
}

static void sum_case(int in_a, int in_b, int out)
{
    product a = random_product(in_a, out, 0), b = random_product(in_b, out, 0);
    void *y = nan_output((size_t)out, sizeof(__half));
    const rk_gemv_part ga = a.part(y), gb = b.part(nullptr);
    rk_k_gemv_sum(0, &ga, &gb);
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<double> ref(out), mag(out, 0.0);
    reference(a, a.x.host, ref, mag, 0, false);
    reference(b, b.x.host, ref, mag, 0, true);
    char what[96];
    snprintf(what, sizeof what, "sum %dx%d + %dx%d", in_a, out, in_b, out);
    check_rows(what, y, false, ref, mag);
    cudaFree(y);
    free_product(a);
    free_product(b);
}

/* About MICROS on the SM's clock (some 2 GHz on the GPUs this runs on; the
 * order test needs a delay, not an exact one). */
__device__ void spin(int micros)
{
    const long long until = clock64() + 2000ll * micros;
    while (clock64() < until) {
    }
}

/* Like the QKV + fc1 pair: lets the next kernel launch first, then writes
 * the sum's second input, here from SRC after a delay. */
__global__ void late_writer(__half *x, const __half *src, int n)
{
    rk_allow_next();
    rk_wait_previous();
    spin(50);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        x[i] = src[i];
}

/* Like the decode attention's split: waits, lets the next launch, runs on. */
__global__ void waiting_middle(void)
{
    rk_wait_previous();
    rk_allow_next();
    spin(100);
}

/* Like the merge behind a long attention: lets the sum launch, then waits. */
__global__ void allowing_middle(void)
{
    rk_allow_next();
    rk_wait_previous();
    spin(20);
}

/* ALLOWING: the allowing kernel between the waiting one and the sum. */
static void sum_order_case(int in_a, int in_b, int out, int rounds, bool allowing)
{
    product a = random_product(in_a, out, 0), b = random_product(in_b, out, 0);
    std::vector<halves> src;
    std::vector<void *> y;
    for (int r = 0; r < rounds; r++) {
        src.push_back(random_halves((size_t)in_b, 1.0f));
        y.push_back(nan_output((size_t)out, sizeof(__half)));
    }
    CUDA_OK(cudaMemset(b.x.dev, 0xff, (size_t)in_b * sizeof(__half)));
    /* The setup ran on the legacy stream, which S does not wait for. */
    CUDA_OK(cudaDeviceSynchronize());
    cudaStream_t s;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (int r = 0; r < rounds; r++) {
        launch_dependent(late_writer, dim3(1), dim3(256), 0, s, b.x.dev,
                         (const __half *)src[r].dev, in_b);
        launch_dependent(waiting_middle, dim3(1), dim3(32), 0, s);
        if (allowing)
            launch_dependent(allowing_middle, dim3(1), dim3(32), 0, s);
        const rk_gemv_part ga = a.part(y[r]), gb = b.part(nullptr);
        rk_k_gemv_sum(s, &ga, &gb);
    }
    CUDA_OK(cudaStreamSynchronize(s));
    CUDA_OK(cudaGetLastError());
    for (int r = 0; r < rounds; r++) {
        std::vector<double> ref(out), mag(out, 0.0);
        reference(a, a.x.host, ref, mag, 0, false);
        reference(b, src[r].host, ref, mag, 0, true);
        char what[96];
        snprintf(what, sizeof what, "sum after a late writer%s, round %d",
                 allowing ? " and an allowing kernel" : "", r);
        check_rows(what, y[r], false, ref, mag);
        cudaFree(y[r]);
        cudaFree(src[r].dev);
    }
    cudaStreamDestroy(s);
    free_product(a);
    free_product(b);
}

int main(void)
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("SKIP: no CUDA device\n");
        return RK_SKIP;
    }
    rk_k_gemv_init();
    single_case(8, 1, false);
    single_case(80, 3, false);
    single_case(1000, 33, true);
    single_case(2560, 2560, false);
    single_case(2560, 50304, true); /* Pythia-2.8B's logits */
    pair_case(160, 480, 160, 640);
    pair_case(2560, 7680, 2560, 10240); /* 2.8B's QKV + fc1 */
    pair_case(8, 5, 8, 9);
    sum_case(160, 640, 160);
    sum_case(2560, 10240, 2560); /* 2.8B's dense + fc2 (on an H200: 8 warps a row) */
    sum_case(2048, 8192, 2048);  /* 1.4B's (4) */
    sum_case(768, 3072, 768);    /* 160M's (2) */
    sum_case(8, 24, 7);
    for (int allowing = 0; allowing < 2; allowing++) {
        sum_order_case(2560, 10240, 2560, 8, allowing);
        sum_order_case(2048, 8192, 2048, 8, allowing);
        sum_order_case(160, 640, 160, 8, allowing);
    }
    return rk_test_finish("test_cuda_gemv");
}
