// cuda-scan: a single-pass tiled scan. Each element of a and x is read once and h written once
// (12 bytes per fp32 element forward; 20 more for the fused backward).
//
// A block owns a tile of R = S*L consecutive time steps by CB consecutive channels (CB*S threads).
//   1. The tile is loaded cooperatively, coalesced along channels (16-byte vectors where the caller
//      says alignment allows), widened to the accumulator type, into shared memory.
//   2. Thread (s, c) scans its L steps of channel c serially, giving the slice's affine map
//      h -> A h + H; the S slices of a channel are combined by a Hillis-Steele scan in shared memory.
//   3. Tiles along time are chained by decoupled look-back: a block publishes its aggregate (A, H)
//      at once, then folds the aggregates of its `window` - 1 predecessors and the inclusive prefix
//      (h at its end) of the one before them. The window is fixed, not "until some inclusive
//      prefix is ready", so results are bitwise deterministic; window = 1 is a chained scan.
//      Blocks take tiles in launch order from an atomic ticket, so every predecessor is already
//      running and the wait cannot deadlock.
//   4. Each thread re-scans its L steps from its carry out of shared memory and the tile is
//      stored coalesced. Re-scanning (rather than applying A*carry + H) keeps the serial loop's
//      rounding and its Inf/NaN behaviour inside a slice.
// `reverse` maps logical step t to physical row T-1-t: no flipped copies. The backward is the same
// scan run in the other direction over g[t] = gh[t] + a[t+1] g[t+1], with da = g * h[t-1] and
// dx = g written in the same pass.
#include "common.cuh"

#ifndef LRB_ITEMS
#define LRB_ITEMS 8  // L: time steps per thread
#endif
// Tests only (tests/test_emulation.py): d > 0 drops the predecessor at distance d from the
// look-back, a deliberately broken kernel that the emulation must catch.
#ifndef LRB_BROKEN_DROP_PREDECESSOR
#define LRB_BROKEN_DROP_PREDECESSOR 0
#endif

// Shared-memory index with one pad word per 32, so that threads walking their own L rows of a
// narrow tile do not collide on banks.
__device__ __forceinline__ int sk(int i) { return i + (i >> 5); }

struct Tile {
    i64 T, N;
    int reverse;          // direction of this scan (logical step t at physical row T-1-t)
    int CB, S, n_cg, cg;  // channels per block, slices per block, channel groups, this group
    int vec;              // 16-byte loads and stores allowed (aligned, CB and N multiples of V)
    int window;           // look-back window (tiles)
    i64 tb;               // this block's tile along time
    i64 col0;             // first channel of this block
    int ncols, nrows;     // valid channels and steps in this tile
    i64 t0;               // first logical step of this tile

    __device__ __forceinline__ i64 phys(i64 t) const { return reverse ? T - 1 - t : t; }
};

// Loads logical rows t0+r+shift (r < R) of channels col0..col0+CB-1 into tile[sk(r*CB + c)].
// Out-of-range rows take `edge` (a per-channel vector, or 0 when null) at row T, and `fill` elsewhere;
// columns beyond ncols take `fill`.
template <typename IO, typename Acc>
__device__ void load_tile(const Tile& k, const IO* __restrict__ src, int shift, Acc fill,
                          const IO* __restrict__ edge, Acc* tile) {
    const int R = k.S * LRB_ITEMS, n = R * k.CB;
    constexpr int V = Vec<IO>::V;
    if (k.vec && shift == 0) {
        for (int i = threadIdx.x * V; i < n; i += blockDim.x * V) {
            const int r = i / k.CB, c = i % k.CB;
            Acc v[V];
            if (r < k.nrows && c < k.ncols) {
                load_vec(src + k.phys(k.t0 + r) * k.N + k.col0 + c, v);
            } else {
#pragma unroll
                for (int j = 0; j < V; ++j) v[j] = fill;
            }
#pragma unroll
            for (int j = 0; j < V; ++j) tile[sk(i + j)] = v[j];
        }
        return;
    }
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int r = i / k.CB, c = i % k.CB;
        const i64 t = k.t0 + r + shift;
        Acc v = fill;
        if (c < k.ncols && r < k.nrows) {
            if (t >= 0 && t < k.T) v = load(src + k.phys(t) * k.N + k.col0 + c);
            else if (t == k.T) v = edge ? Acc(load(edge + k.col0 + c)) : Acc(0);
        }
        tile[sk(i)] = v;
    }
}

template <typename IO, typename Acc>
__device__ void store_tile(const Tile& k, IO* __restrict__ dst, const Acc* tile) {
    const int R = k.S * LRB_ITEMS, n = R * k.CB;
    constexpr int V = Vec<IO>::V;
    if (k.vec) {
        for (int i = threadIdx.x * V; i < n; i += blockDim.x * V) {
            const int r = i / k.CB, c = i % k.CB;
            if (r < k.nrows && c < k.ncols) {
                Acc v[V];
#pragma unroll
                for (int j = 0; j < V; ++j) v[j] = tile[sk(i + j)];
                store_vec(dst + k.phys(k.t0 + r) * k.N + k.col0 + c, v);
            }
        }
        return;
    }
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int r = i / k.CB, c = i % k.CB;
        if (r < k.nrows && c < k.ncols) store(dst + k.phys(k.t0 + r) * k.N + k.col0 + c, tile[sk(i)]);
    }
}

// Steps 2-3: returns the carry into this thread's slice (h before its first step); `has_carry` is
// false only where the scan starts from nothing (first slice of the first tile, no h0), so that no
// 0 * a product can turn an Inf gate into NaN there.
template <typename IO, typename Acc>
__device__ Acc slice_carry(const Tile& k, const Acc* ta, const Acc* tx, const IO* __restrict__ h0,
                           Acc* sA, Acc* sH, Acc* sC, int* flags, Acc* agg_a, Acc* agg_h,
                           Acc* incl_h, bool* has_carry) {
    const int c = threadIdx.x % k.CB, s = threadIdx.x / k.CB;
    const int i0 = s * LRB_ITEMS * k.CB + c;
    Acc A = 1, H = 0;
#pragma unroll
    for (int j = 0; j < LRB_ITEMS; ++j) {
        const Acc aj = ta[sk(i0 + j * k.CB)];
        H = aj * H + tx[sk(i0 + j * k.CB)];
        A = A * aj;
    }
    sA[s * k.CB + c] = A;
    sH[s * k.CB + c] = H;
    __syncthreads();
    for (int d = 1; d < k.S; d <<= 1) {
        Acc pa = 1, ph = 0;
        if (s >= d) { pa = sA[(s - d) * k.CB + c]; ph = sH[(s - d) * k.CB + c]; }
        __syncthreads();
        if (s >= d) { H = A * ph + H; A = A * pa; sA[s * k.CB + c] = A; sH[s * k.CB + c] = H; }
        __syncthreads();
    }
    // (A, H) is now the inclusive map of slices 0..s; slice S-1 holds the tile's aggregate.
    const i64 col = k.col0 + c;
    const bool last = s == k.S - 1 && c < k.ncols;
    int* my_flag = flags + k.tb * k.n_cg + k.cg;
    if (last) {
        agg_a[k.tb * k.N + col] = A;
        agg_h[k.tb * k.N + col] = H;
        if (k.tb == 0) incl_h[col] = h0 ? H + A * Acc(load(h0 + col)) : H;
        __threadfence();
    }
    __syncthreads();
    if (threadIdx.x == 0) atomicExch(my_flag, k.tb == 0 ? 2 : 1);
    if (k.tb > 0 && s == 0 && c < k.ncols) {
        Acc a_acc = 1, h_acc = 0;   // the map of tiles j+1 .. tb-1
        const volatile int* vf = flags;
        for (i64 j = k.tb - 1;; --j) {
            // A fixed window keeps the association, and so the bits, independent of timing.
            const bool use_incl = j == 0 || k.tb - j >= k.window;
            const i64 f_at = j * k.n_cg + k.cg;
            int f;
            do { f = vf[f_at]; } while (f < (use_incl ? 2 : 1));
            __threadfence();
            if (use_incl) { h_acc = h_acc + a_acc * __ldcg(incl_h + j * k.N + col); break; }
            if (LRB_BROKEN_DROP_PREDECESSOR && k.tb - j == LRB_BROKEN_DROP_PREDECESSOR) continue;
            h_acc = h_acc + a_acc * __ldcg(agg_h + j * k.N + col);
            a_acc = a_acc * __ldcg(agg_a + j * k.N + col);
        }
        sC[c] = h_acc;
    }
    __syncthreads();
    if (k.tb > 0) {
        if (last) { incl_h[k.tb * k.N + col] = H + A * sC[c]; __threadfence(); }
        __syncthreads();
        if (threadIdx.x == 0) atomicExch(my_flag, 2);
    }
    // Carry into slice s: the tile's carry pushed through slices 0..s-1.
    bool tile_carry = k.tb > 0 || h0;
    Acc tc = k.tb > 0 ? sC[c] : (h0 && c < k.ncols ? Acc(load(h0 + col)) : Acc(0));
    *has_carry = tile_carry || s > 0;
    if (s == 0) return tc;
    const Acc ea = sA[(s - 1) * k.CB + c], eh = sH[(s - 1) * k.CB + c];
    return tile_carry ? eh + ea * tc : eh;
}

__device__ __forceinline__ Tile make_tile(i64 T, i64 N, int reverse, int CB, int n_cg, int vec,
                                         int window, int ticket) {
    Tile k;
    k.T = T; k.N = N; k.reverse = reverse; k.CB = CB; k.S = blockDim.x / CB; k.n_cg = n_cg; k.vec = vec;
    k.window = window;
    k.tb = ticket / n_cg;
    k.cg = ticket % n_cg;
    k.col0 = (i64)k.cg * CB;
    k.ncols = (int)min((i64)CB, N - k.col0);
    const i64 R = (i64)k.S * LRB_ITEMS;
    k.t0 = k.tb * R;
    k.nrows = (int)min(R, T - k.t0);
    return k;
}

// Dynamic shared memory: TILES padded tiles of the block's R x CB elements, then the slices' scan
// (sA, sH: S x CB) and the tile carries (sC: CB). Plan.smem_bytes in cuda_scan.py mirrors this.
template <typename A, int TILES> struct Smem {
    A* t[TILES];
    A *sA, *sH, *sC;
    __device__ __forceinline__ Smem(const Tile& k, unsigned char* raw) {
        const int P = sk(k.S * LRB_ITEMS * k.CB) + 1;
        A* p = reinterpret_cast<A*>(raw);
        for (int i = 0; i < TILES; ++i, p += P) t[i] = p;
        sA = p;
        sH = sA + k.S * k.CB;
        sC = sH + k.S * k.CB;
    }
};

__device__ __forceinline__ int take_ticket(int* counter) {
    __shared__ int ticket;
    if (threadIdx.x == 0) ticket = atomicAdd(counter, 1);
    __syncthreads();
    return ticket;
}

// state: [0] ticket counter, then one flag per (tile, channel group); zeroed by the caller.
// Scratch agg_a, agg_h, incl_h: n_tiles * N accumulators each.
template <typename IO>
__device__ void scan_forward(const IO* __restrict__ a, const IO* __restrict__ x,
                             const IO* __restrict__ h0, IO* __restrict__ h, i64 T, i64 N,
                             int reverse, int CB, int n_cg, int vec, int window, int* state,
                             typename Acc<IO>::type* agg_a, typename Acc<IO>::type* agg_h,
                             typename Acc<IO>::type* incl_h) {
    typedef typename Acc<IO>::type A;
    extern __shared__ __align__(16) unsigned char smem[];
    const Tile k = make_tile(T, N, reverse, CB, n_cg, vec, window, take_ticket(state));
    const Smem<A, 2> m(k, smem);
    A *ta = m.t[0], *tx = m.t[1];
    load_tile(k, a, 0, A(1), (const IO*)nullptr, ta);
    load_tile(k, x, 0, A(0), (const IO*)nullptr, tx);
    __syncthreads();
    bool has_carry;
    A carry = slice_carry(k, ta, tx, h0, m.sA, m.sH, m.sC, state + 1, agg_a, agg_h, incl_h,
                          &has_carry);
    const int c = threadIdx.x % CB, s = threadIdx.x / CB, i0 = s * LRB_ITEMS * CB + c;
#pragma unroll
    for (int j = 0; j < LRB_ITEMS; ++j) {
        const int i = sk(i0 + j * CB);
        carry = (has_carry || j > 0) ? ta[i] * carry + tx[i] : tx[i];
        tx[i] = carry;
    }
    __syncthreads();
    store_tile(k, h, tx);
}

// The backward of a scan that ran in direction `reverse`, run in the other direction:
// at logical step u (physical row of step u in direction !reverse) the gate is a at step u-1,
// the input gh, and the forward-previous state h at step u+1 (h0 or 0 past the end).
template <typename IO>
__device__ void scan_backward(const IO* __restrict__ a, const IO* __restrict__ h,
                              const IO* __restrict__ h0, const IO* __restrict__ gh,
                              IO* __restrict__ ga, IO* __restrict__ gx, IO* __restrict__ gh0,
                              i64 T, i64 N, int reverse, int CB, int n_cg, int vec, int window,
                              int* state,
                              typename Acc<IO>::type* agg_a, typename Acc<IO>::type* agg_h,
                              typename Acc<IO>::type* incl_h) {
    typedef typename Acc<IO>::type A;
    extern __shared__ __align__(16) unsigned char smem[];
    const Tile k = make_tile(T, N, !reverse, CB, n_cg, vec, window, take_ticket(state));
    const Smem<A, 3> m(k, smem);
    A *ta = m.t[0], *tx = m.t[1], *th = m.t[2];
    load_tile(k, a, -1, A(1), (const IO*)nullptr, ta);   // a[t+1]; unused before the first step
    load_tile(k, gh, 0, A(0), (const IO*)nullptr, tx);
    load_tile(k, h, 1, A(0), h0, th);                     // h[t-1]; h0 (or 0) at the end
    __syncthreads();
    bool has_carry;
    A g = slice_carry(k, ta, tx, (const IO*)nullptr, m.sA, m.sH, m.sC, state + 1, agg_a, agg_h,
                      incl_h, &has_carry);
    const int c = threadIdx.x % CB, s = threadIdx.x / CB, i0 = s * LRB_ITEMS * CB + c;
#pragma unroll
    for (int j = 0; j < LRB_ITEMS; ++j) {
        const int i = sk(i0 + j * CB);
        g = (has_carry || j > 0) ? ta[i] * g + tx[i] : tx[i];
        tx[i] = g;
        th[i] = g * th[i];
        // The last logical step is the forward's first: dh0 = a there times g.
        if (gh0 && k.t0 + s * LRB_ITEMS + j == T - 1 && c < k.ncols)
            store(gh0 + k.col0 + c, A(load(a + k.phys(T - 1) * N + k.col0 + c)) * g);
    }
    __syncthreads();
    store_tile(k, gx, tx);
    store_tile(k, ga, th);
}

#define LRB_SCAN(sfx, IO)                                                                         \
    extern "C" __global__ void scan_forward_##sfx(                                                \
        const IO* a, const IO* x, const IO* h0, IO* h, i64 T, i64 N, int reverse, int CB,         \
        int n_cg, int vec, int window, int* state, Acc<IO>::type* agg_a, Acc<IO>::type* agg_h,    \
        Acc<IO>::type* incl_h) {                                                                  \
        scan_forward<IO>(a, x, h0, h, T, N, reverse, CB, n_cg, vec, window, state, agg_a, agg_h,   \
                         incl_h);                                                                 \
    }                                                                                             \
    extern "C" __global__ void scan_backward_##sfx(                                               \
        const IO* a, const IO* h, const IO* h0, const IO* gh, IO* ga, IO* gx, IO* gh0, i64 T,     \
        i64 N, int reverse, int CB, int n_cg, int vec, int window, int* state,                    \
        Acc<IO>::type* agg_a, Acc<IO>::type* agg_h, Acc<IO>::type* incl_h) {                      \
        scan_backward<IO>(a, h, h0, gh, ga, gx, gh0, T, N, reverse, CB, n_cg, vec, window, state,  \
                          agg_a, agg_h, incl_h);                                                  \
    }
LRB_FOR_EACH_HALF_OR_FLOAT(LRB_SCAN)
