// Lab: device-to-device copies of 1 GiB back to back for SECONDS (default 3), so that
// nvidia-smi can sample the board's power and SM clock while only HBM traffic runs.
// nvcc -O2 -o power_copy power_copy.cu && ./power_copy 3
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

int main(int argc, char **argv)
{
    const double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    const size_t bytes = (size_t)1 << 30;
    void *a = nullptr, *b = nullptr;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc failed\n");
        return 1;
    }
    cudaMemset(a, 1, bytes);
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    cudaEventRecord(t0);
    int copies = 0;
    float ms = 0;
    while (ms < seconds * 1e3) {
        for (int i = 0; i < 16; i++, copies++)
            cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(t1);
        cudaEventSynchronize(t1);
        cudaEventElapsedTime(&ms, t0, t1);
    }
    printf("%d copies of 1 GiB in %.0f ms: %.0f GB/s (read + written)\n", copies, ms,
           2.0 * copies * (double)bytes / (ms * 1e-3) / 1e9);
    return 0;
}
