// Run 8 (nvcc -O2 -arch=sm_90 -o pdl_event pdl_event.cu; ./pdl_event; output pdl_event.txt).
// Does a kernel launched with programmatic stream serialization honour a
// cudaStreamWaitEvent that sits between it and the previous kernel of its stream?
#include <cstdio>
#include <cuda_runtime.h>

__device__ void spin(long long cycles) { long long t = clock64(); while (clock64() - t < cycles) {} }

__global__ void writer(volatile int *x, int v, long long cycles) { spin(cycles); *x = v; __threadfence_system(); }
__global__ void trigger_early(long long cycles) {
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    spin(cycles);
}
__global__ void reader(const volatile int *x, int *out, int wait) {
    if (wait) asm volatile("griddepcontrol.wait;\n" ::: "memory");
    *out = *x;
}

int main() {
    int *x, *out;
    cudaMalloc(&x, 4); cudaMalloc(&out, 4);
    cudaStream_t a, b; cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking); cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
    cudaEvent_t e; cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
    const char *names[] = {"pdl reader, waits", "pdl reader, no wait", "plain reader"};
    for (int mode = 0; mode < 3; mode++) {
        int stale = 0, trials = 20;
        for (int t = 0; t < trials; t++) {
            cudaMemset(x, 0, 4); cudaMemset(out, 0xff, 4); cudaDeviceSynchronize();
            writer<<<1, 1, 0, a>>>(x, t + 1, 2000000);      // about 1 ms
            cudaEventRecord(e, a);
            trigger_early<<<1, 32, 0, b>>>(20000);           // about 10 us
            cudaStreamWaitEvent(b, e, 0);
            if (mode < 2) {
                cudaLaunchAttribute attr; attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
                attr.val.programmaticStreamSerializationAllowed = 1;
                cudaLaunchConfig_t cfg = {}; cfg.gridDim = 1; cfg.blockDim = 1; cfg.stream = b; cfg.attrs = &attr; cfg.numAttrs = 1;
                cudaLaunchKernelEx(&cfg, reader, (const volatile int *)x, out, mode == 0 ? 1 : 0);
            } else {
                reader<<<1, 1, 0, b>>>(x, out, 0);
            }
            cudaDeviceSynchronize();
            int got = -1; cudaMemcpy(&got, out, 4, cudaMemcpyDeviceToHost);
            if (got != t + 1) stale++;
        }
        printf("%-22s: read the writer's value late in %d of %d trials (%s)\n", names[mode], stale, 20,
               cudaGetErrorString(cudaGetLastError()));
    }
    return 0;
}
