// Exercises the emulation's warp operations (tests/test_emulation.py): per warp, an inclusive
// prefix sum by __shfl_up_sync, a ballot of the odd values, a butterfly total by __shfl_xor_sync,
// and a broadcast of lane 5 by __shfl_sync.
extern "C" __global__ void warp_ops(const int* x, int* prefix, unsigned* odd, int* total,
                                    int* lane5, long long n) {
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const int lane = threadIdx.x % 32;
    const int v = i < n ? x[i] : 0;
    int p = v;
    for (int d = 1; d < 32; d <<= 1) {
        const int u = __shfl_up_sync(0xffffffffu, p, d);
        if (lane >= d) p += u;
    }
    const unsigned b = __ballot_sync(0xffffffffu, v & 1);
    int t = v;
    for (int d = 16; d > 0; d >>= 1) t += __shfl_xor_sync(0xffffffffu, t, d);
    const int five = __shfl_sync(0xffffffffu, v, 5);
    __syncwarp();
    if (i < n) {
        prefix[i] = p;
        total[i] = t;
        lane5[i] = five;
        if (lane == 0) odd[i / 32] = b;
    }
}
