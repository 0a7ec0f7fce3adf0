// Shared by every kernel: the element types, loads that widen to the accumulator type, stores that
// narrow back, and 64-bit offsets. Layout everywhere: time-major (T, N), element (t, n) at t*N + n.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

typedef long long i64;

// fp32 accumulation for every 16- and 32-bit type; fp64 stays fp64.
template <typename IO> struct Acc { typedef float type; };
template <> struct Acc<double> { typedef double type; };

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ double load(const double* p) { return *p; }
__device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// 16-byte vectors: V = 16 / sizeof(IO) consecutive elements in one load or store. The caller
// guarantees 16-byte alignment of p.
template <typename IO> struct Vec {
    static constexpr int V = 16 / sizeof(IO);
    union { uint4 raw; IO e[V]; } u;
    __device__ __forceinline__ Vec() {}
};

template <typename IO, typename A>
__device__ __forceinline__ void load_vec(const IO* p, A* dst) {
    Vec<IO> v;
    v.u.raw = *reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int k = 0; k < Vec<IO>::V; ++k) dst[k] = load(&v.u.e[k]);
}

template <typename IO, typename A>
__device__ __forceinline__ void store_vec(IO* p, const A* src) {
    Vec<IO> v;
#pragma unroll
    for (int k = 0; k < Vec<IO>::V; ++k) store(&v.u.e[k], src[k]);
    *reinterpret_cast<uint4*>(p) = v.u.raw;
}

// One extern "C" entry point per element type, so names stay plain for CuPy and ptxas reports.
#define LRB_FOR_EACH_TYPE(X) X(f32, float) X(f64, double) X(f16, __half) X(bf16, __nv_bfloat16)
#define LRB_FOR_EACH_HALF_OR_FLOAT(X) X(f32, float) X(f16, __half) X(bf16, __nv_bfloat16)

// The zero-state rule (kernels/README.md). Every map h -> A h + H a parallel scan composes is its
// segment's serial scan from state 0, so H is NaN whenever the segment's first gate is inf or NaN
// (gate * 0). Applied to an incoming state c of exactly 0, the serial loop gives H (0 times finite
// gates), even where A overflowed: A * 0 would be inf * 0 = NaN. For a non-finite first gate H is
// NaN already, as the serial loop's is. Tests only: LRB_BROKEN_ZERO_STATE=1 drops the rule.
#ifndef LRB_BROKEN_ZERO_STATE
#define LRB_BROKEN_ZERO_STATE 0
#endif
template <typename A>
__device__ __forceinline__ A apply_map(A gate, A H, A c) {
    return (c == A(0) && !LRB_BROKEN_ZERO_STATE) ? H : gate * c + H;
}
// The gate product of a segment (A1) followed by another (A2). A1 == 0 (a gate of 0 resets the
// state) makes the composite ignore its input whatever A2 is, where A2 * 0 could be inf * 0.
template <typename A>
__device__ __forceinline__ A compose_gates(A A1, A A2) {
    return (A1 == A(0) && !LRB_BROKEN_ZERO_STATE) ? A1 : A2 * A1;
}
