// cuda-serial: the paper's serial baseline (SLR). One thread per channel n walks all T steps:
//   h[t] = a[t] * h[t-1] + x[t],  h[-1] = h0 (or 0).
// Parallel over channels only, so it needs N in the tens of thousands to fill a GPU; with few
// channels it is bound by the latency of the dependent chain. `reverse` runs from t = T-1 down by
// index arithmetic. The backward is fused: one reverse pass computes g, dx = g and da = g * h[t-1].
#include "common.cuh"

template <typename IO>
__device__ __forceinline__ void serial_forward(const IO* __restrict__ a, const IO* __restrict__ x,
                                               const IO* __restrict__ h0, IO* __restrict__ h,
                                               i64 T, i64 N, int reverse) {
    typedef typename Acc<IO>::type A;
    const i64 step = reverse ? -N : N;
    for (i64 n = blockIdx.x * (i64)blockDim.x + threadIdx.x; n < N; n += (i64)gridDim.x * blockDim.x) {
        A c = h0 ? load(h0 + n) : A(0);
        i64 p = (reverse ? T - 1 : 0) * N + n;
        for (i64 t = 0; t < T; ++t, p += step) {
            c = load(a + p) * c + load(x + p);
            store(h + p, c);
        }
    }
}

// g[t] = gh[t] + a[t+1] g[t+1] (forward order), dx = g, da[t] = g[t] h[t-1], dh0 = a[0] g[0].
template <typename IO>
__device__ __forceinline__ void serial_backward(const IO* __restrict__ a, const IO* __restrict__ h,
                                                const IO* __restrict__ h0, const IO* __restrict__ gh,
                                                IO* __restrict__ ga, IO* __restrict__ gx,
                                                IO* __restrict__ gh0, i64 T, i64 N, int reverse) {
    typedef typename Acc<IO>::type A;
    const i64 step = reverse ? -N : N;                 // forward-order step between rows
    for (i64 n = blockIdx.x * (i64)blockDim.x + threadIdx.x; n < N; n += (i64)gridDim.x * blockDim.x) {
        A g = 0, a_next = 0;                           // a at the forward-next step
        i64 p = (reverse ? 0 : T - 1) * N + n;         // the forward-last row
        for (i64 t = T - 1; t >= 0; --t, p -= step) {
            g = load(gh + p) + a_next * g;
            a_next = load(a + p);
            A h_prev = t > 0 ? A(load(h + p - step)) : (h0 ? A(load(h0 + n)) : A(0));
            store(gx + p, g);
            store(ga + p, g * h_prev);
        }
        if (gh0) store(gh0 + n, a_next * g);
    }
}

#define LRB_SERIAL(sfx, IO)                                                                       \
    extern "C" __global__ void serial_forward_##sfx(const IO* a, const IO* x, const IO* h0, IO* h, \
                                                    i64 T, i64 N, int reverse) {                 \
        serial_forward<IO>(a, x, h0, h, T, N, reverse);                                           \
    }                                                                                             \
    extern "C" __global__ void serial_backward_##sfx(const IO* a, const IO* h, const IO* h0,      \
                                                     const IO* gh, IO* ga, IO* gx, IO* gh0,      \
                                                     i64 T, i64 N, int reverse) {                \
        serial_backward<IO>(a, h, h0, gh, ga, gx, gh0, T, N, reverse);                            \
    }
LRB_FOR_EACH_TYPE(LRB_SERIAL)
