// cuda-paper: a faithful port of Martin & Cundy's three-kernel parallel scan
// (linear_recurrent_net/linear_recurrence.cu, ICLR 2018; see shared/reference/paper-002.md §1.3).
//
// Kept from the original: fp32, 1024 threads (32 warps) per block, at most 2 blocks per SM and at
// least 32 steps per block; the time axis cut into contiguous chunks, block then warp; each warp is
// one "processor" and its 32 lanes walk the channels; scratch laid out [block][33][N] (slots 0-31
// per warp, slot 32 per block); serial combines over the 32 warps and the blocks; two full reads
// of a and x and one write of h.
// Fixed: the SM count is the caller's (queried), not 15; the scratch is the caller's (torch's
// allocator), not cudaMalloc/cudaFree per call; the caller's stream; 64-bit offsets; `reverse` by
// index arithmetic (the original had no reverse and flipped tensors in TensorFlow); every combine
// of summaries keeps the zero-state rule (common.cuh), so overflowing gate products over a zero
// state give the serial loop's finite answer, not inf * 0 = NaN.
#include "common.cuh"

// The paper's configuration: 1024 threads, 2 blocks resident per SM, so at most 32 registers per
// thread (checked against ptxas in tests/test_kernels.py).
#define LRB_PAPER_BOUNDS __launch_bounds__(1024, 2)

// Contiguous share of n_jobs for worker idx of n_workers: the first n % k get one more.
__device__ __forceinline__ void divide_work(i64 n_jobs, i64 n_workers, i64 idx, i64* start, i64* stop) {
    i64 per = n_jobs / n_workers, extra = n_jobs % n_workers;
    *start = idx * per + (idx < extra ? idx : extra);
    *stop = *start + per + (idx < extra ? 1 : 0);
}

__device__ __forceinline__ void warp_start_stop(i64 T, i64* start, i64* stop) {
    i64 b0, b1;
    divide_work(T, gridDim.x, blockIdx.x, &b0, &b1);
    i64 w0, w1;
    divide_work(b1 - b0, blockDim.x / 32, threadIdx.x / 32, &w0, &w1);
    *start = b0 + w0;
    *stop = b0 + w1;
}

// Physical row of logical step t.
__device__ __forceinline__ i64 row(i64 t, i64 T, int reverse) { return reverse ? T - 1 - t : t; }

extern "C" __global__ void LRB_PAPER_BOUNDS reduction_kernel(const float* a, const float* x, const float* h0,
                                            float* decay_storage, float* h_storage,
                                            i64 T, i64 N, int reverse) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* ds = decay_storage + blockIdx.x * 33 * N;
    float* hs = h_storage + blockIdx.x * 33 * N;
    i64 start, stop;
    warp_start_stop(T, &start, &stop);
    const i64 step = reverse ? -N : N;   // between consecutive logical steps
    for (i64 i = lane; i < N; i += 32) {
        float cum_decay = 1.0f;
        float h = (blockIdx.x == 0 && warp == 0 && h0) ? h0[i] : 0.0f;
        const float* ap = a + row(start, T, reverse) * N + i;
        const float* xp = x + row(start, T, reverse) * N + i;
#pragma unroll 1
        for (i64 n = stop - start; n > 0; --n, ap += step, xp += step) {
            const float av = *ap;
            cum_decay *= av;
            h = av * h + *xp;
        }
        ds[warp * N + i] = cum_decay;
        hs[warp * N + i] = h;
    }
    __syncthreads();
    // The block's 32 warp summaries, combined serially (the original's "TODO: parallel reduction").
    for (i64 i = threadIdx.x; i < N; i += blockDim.x) {
        const float *dp = ds + i, *hp = hs + i;
        float cum_decay = *dp, h = *hp;
#pragma unroll 1
        for (int w = 1; w < 32; ++w) {
            dp += N;
            hp += N;
            h = apply_map(*dp, *hp, h);
            cum_decay = compose_gates(cum_decay, *dp);
        }
        ds[32 * N + i] = cum_decay;
        hs[32 * N + i] = h;
    }
}

// Serial scan over the block summaries (slot 32): afterwards slot 32 of block b holds h at the end
// of block b.
extern "C" __global__ void LRB_PAPER_BOUNDS block_scan_kernel(float* decay_storage, float* h_storage,
                                             i64 N, int n_blocks) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < N; i += (i64)gridDim.x * blockDim.x) {
        for (int b = 1; b < n_blocks; ++b) {
            i64 cur = (b * 33 + 32) * N + i, prev = ((b - 1) * 33 + 32) * N + i;
            h_storage[cur] = apply_map(decay_storage[cur], h_storage[cur], h_storage[prev]);
            decay_storage[cur] = compose_gates(decay_storage[prev], decay_storage[cur]);
        }
    }
}

extern "C" __global__ void LRB_PAPER_BOUNDS warp_scan_kernel(const float* a, const float* x, const float* h0,
                                            float* decay_storage, float* h_storage, float* h,
                                            i64 T, i64 N, int reverse) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const i64 base = blockIdx.x * 33 * N;
    // Phase a: slot w becomes h at the end of warp w's chunk. For w = 0 the previous slot is
    // (base - N), slot 32 of the previous block: the original's "negative indexing".
    for (i64 i = threadIdx.x; i < N; i += blockDim.x) {
#pragma unroll 1
        for (int w = 0; w < 32; ++w) {
            if (blockIdx.x == 0 && w == 0) continue;   // already starts from h0
            i64 cur = base + w * N + i, prev = cur - N;
            h_storage[cur] = apply_map(decay_storage[cur], h_storage[cur], h_storage[prev]);
            decay_storage[cur] = compose_gates(decay_storage[prev], decay_storage[cur]);
        }
    }
    __syncthreads();
    // Phase b: each warp re-scans its chunk from its carry: the second read of a and x.
    i64 start, stop;
    warp_start_stop(T, &start, &stop);
    const i64 step = reverse ? -N : N;
    for (i64 i = lane; i < N; i += 32) {
        float c;
        if (blockIdx.x == 0 && warp == 0) c = h0 ? h0[i] : 0.0f;
        else c = h_storage[base + (warp - 1) * N + i];
        const i64 p0 = row(start, T, reverse) * N + i;
        const float *ap = a + p0, *xp = x + p0;
        float* hp = h + p0;
        for (i64 n = stop - start; n > 0; --n, ap += step, xp += step, hp += step) {
            c = *ap * c + *xp;
            *hp = c;
        }
    }
}
