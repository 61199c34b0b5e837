/* How many thread-block clusters of the decode split's shape can be resident at once: blocks of
 * 128 threads with the shared memory of 64-key slices (92928 B, the full cache at cap 2048) and
 * of 32-key slices (47872 B, the 640-row compressed caches). Run 3 of this folder:
 *   nvcc -arch=sm_90 -O2 -o occ occupancy.cu && ./occ > occupancy.txt */
#include <cstdio>
#include <cuda_runtime.h>
__global__ void k(float *p) { extern __shared__ float s[]; if (p) p[threadIdx.x] = s[threadIdx.x]; }
int main()
{
    const int smem = (16 + 2 * 4 * 64) * 88 * 2, smem32 = (16 + 2 * 4 * 32) * 88 * 2;
    cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    int per_sm = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, 128, smem);
    int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    printf("SMs %d, blocks/SM at %d B smem: %d (all SMs: %d)\n", sms, smem, per_sm, per_sm * sms);
    const int sizes[] = {1, 2, 4, 5, 8};
    for (int c : sizes)
        for (int sm : {smem, smem32}) {
            cudaLaunchConfig_t cfg = {};
            cfg.gridDim = dim3(c == 5 ? 5 : 8, 32, 1);
            cfg.blockDim = dim3(128);
            cfg.dynamicSmemBytes = sm;
            cudaLaunchAttribute a;
            a.id = cudaLaunchAttributeClusterDimension;
            a.val.clusterDim.x = c; a.val.clusterDim.y = 1; a.val.clusterDim.z = 1;
            cfg.attrs = &a; cfg.numAttrs = 1;
            int n = 0;
            cudaError_t e = cudaOccupancyMaxActiveClusters(&n, k, &cfg);
            printf("cluster %d, smem %6d B: max active clusters %d (%d blocks) %s\n", c, sm, n, n * c,
                   e ? cudaGetErrorString(e) : "");
        }
    return 0;
}
