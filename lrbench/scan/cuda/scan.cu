// cuda-scan: a single-pass tiled scan. Each element of a and x is read once and h written once
// (12 bytes per fp32 element forward; 20 more for the fused backward).
//
// A block owns a tile of R = S*L consecutive time steps by CB consecutive channels (CB*S threads).
// L is 8, or for a narrow scan (one channel group: N <= 32) 16 forward and 12 backward, so a
// narrow tile carries more time steps for each look-back it pays.
//   1. The tile is loaded cooperatively, coalesced along channels (16-byte vectors where the caller
//      says alignment allows), widened to the accumulator type, into shared memory.
//   2. Thread (s, c) scans its L steps of channel c serially, giving the slice's affine map
//      h -> A h + H; the S slices of a channel are combined by a Hillis-Steele scan in shared memory.
//   3. Tiles along time are chained by a decoupled look-back over a fixed window of W tiles: a
//      block publishes its aggregate (A, H) at once, then folds the aggregates of tiles
//      tb-W+1 .. tb-1 onto the inclusive prefix (h at the end) of tile tb-W (or of tile 0). The
//      look-back is parallel: thread (s, c) takes a contiguous run of up to LRB_LOOKBACK_RUN
//      predecessors, polls all their flags at once, then loads all their aggregates at once, so
//      a look-back costs a few memory round trips whatever W is; the runs' maps are combined by
//      the same fixed-shape Hillis-Steele scan over s. The window and the shape depend only on
//      (tb, W, S), never on timing, so results are bitwise deterministic.
//      Memory ordering (PTX model, device scope): a publisher stores its data, fences
//      (__threadfence), meets the block barrier, and thread 0 stores the flag with release
//      semantics (__nv_atomic_store_n, st.release.gpu). A reader polls flags with relaxed atomic
//      loads; once every flag it needs is set, __threadfence after those loads makes them
//      acquire, and only then does it read the data (ld.cg, from L2). Blocks take tiles in
//      launch order from an atomic ticket, so every predecessor is already running and the wait
//      cannot deadlock; a waiting thread backs off with __nanosleep.
//   4. Each thread re-scans its L steps from its carry out of shared memory and the tile is
//      stored coalesced. Re-scanning (rather than applying A*carry + H) keeps the serial loop's
//      rounding and its Inf/NaN behaviour inside a slice.
// Every composition of maps (steps 2, 3 and the carries) keeps the zero-state rule of common.cuh:
// a state of exactly 0 entering a map gives its H, never A * 0, so gate products that overflow
// over a zero state stay finite where the serial loop is.
// `reverse` maps logical step t to physical row T-1-t: no flipped copies. The backward is the same
// scan run in the other direction over g[t] = gh[t] + a[t+1] g[t+1], with da = g * h[t-1] and
// dx = g written in the same pass.
#include "common.cuh"

// Predecessors one thread polls and loads at once in the look-back (registers: 2 per entry).
#define LRB_LOOKBACK_RUN 8
#define LRB_LOOKBACK_BATCH 4
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
    int window;           // look-back window W (tiles), at most S * LRB_LOOKBACK_RUN + 1
    i64 tb;               // this block's tile along time
    i64 col0;             // first channel of this block
    int ncols, nrows;     // valid channels and steps in this tile
    i64 t0;               // first logical step of this tile

    __device__ __forceinline__ i64 phys(i64 t) const { return reverse ? T - 1 - t : t; }
};

// Loads logical rows t0+r+shift (r < R) of channels col0..col0+CB-1 into tile[sk(r*CB + c)].
// Out-of-range rows take `edge` (a per-channel vector, or 0 when null) at row T, and `fill` elsewhere;
// columns beyond ncols take `fill`.
template <int L, typename IO, typename Acc>
__device__ void load_tile(const Tile& k, const IO* __restrict__ src, int shift, Acc fill,
                          const IO* __restrict__ edge, Acc* tile) {
    const int R = k.S * L, n = R * k.CB;
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

template <int L, typename IO, typename Acc>
__device__ void store_tile(const Tile& k, IO* __restrict__ dst, const Acc* tile) {
    const int R = k.S * L, n = R * k.CB;
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

// Inclusive scan over s of the maps (A, H) of threads (s, c), c fixed: afterwards thread s holds
// the composition of maps 0..s, and so does buf[s * CB + c]. A fixed-shape Hillis-Steele scan;
// every composition keeps the zero-state rule (common.cuh).
template <typename Acc>
__device__ __forceinline__ void scan_maps(const Tile& k, int s, int c, Acc& A, Acc& H, Acc* bA,
                                          Acc* bH) {
    bA[s * k.CB + c] = A;
    bH[s * k.CB + c] = H;
    __syncthreads();
    for (int d = 1; d < k.S; d <<= 1) {
        Acc pa = 1, ph = 0;
        if (s >= d) { pa = bA[(s - d) * k.CB + c]; ph = bH[(s - d) * k.CB + c]; }
        __syncthreads();
        if (s >= d) {
            H = apply_map(A, H, ph);
            A = compose_gates(pa, A);
            bA[s * k.CB + c] = A;
            bH[s * k.CB + c] = H;
        }
        __syncthreads();
    }
}

// Step 3 for tile tb > 0: h at the end of tile tb-1, for channel c (every thread (s, c) returns it).
// Thread s folds predecessors first+1+s*run .. (a contiguous run), where `first` is the tile whose
// inclusive prefix starts the window.
template <typename Acc>
__device__ Acc look_back(const Tile& k, int s, int c, int* flags, const Acc* agg_a,
                         const Acc* agg_h, const Acc* incl_h, Acc* lA, Acc* lH) {
    const i64 first = k.tb > k.window ? k.tb - k.window : 0;
    const int m = (int)(k.tb - 1 - first);                       // aggregates to fold
    const int run = (m + k.S - 1) / k.S;                         // <= LRB_LOOKBACK_RUN
    const i64 j0 = first + 1 + (i64)s * run;                     // this thread's first tile
    const int cnt = (int)max((i64)0, min((i64)run, k.tb - j0));
    const i64 col = k.col0 + c;
    Acc A = 1, H = 0;
    if (c < k.ncols && cnt > 0) {
        // Poll every flag of the run at once; then one fence makes the observations acquire.
        for (;;) {
            bool ready = true;
#pragma unroll
            for (int q = 0; q < LRB_LOOKBACK_RUN; ++q)
                if (q < cnt)
                    ready &= __nv_atomic_load_n(flags + (j0 + q) * k.n_cg + k.cg, __NV_ATOMIC_RELAXED,
                                                __NV_THREAD_SCOPE_DEVICE) >= 1;
            if (ready) break;
            __nanosleep(64);
        }
        __threadfence();
        // Loads in batches of LRB_LOOKBACK_BATCH in flight (registers), folded in order.
#pragma unroll 1
        for (int b = 0; b < cnt; b += LRB_LOOKBACK_BATCH) {
            Acc ra[LRB_LOOKBACK_BATCH], rh[LRB_LOOKBACK_BATCH];
#pragma unroll
            for (int q = 0; q < LRB_LOOKBACK_BATCH; ++q) {
                ra[q] = b + q < cnt ? __ldcg(agg_a + (j0 + b + q) * k.N + col) : Acc(1);
                rh[q] = b + q < cnt ? __ldcg(agg_h + (j0 + b + q) * k.N + col) : Acc(0);
            }
#pragma unroll
            for (int q = 0; q < LRB_LOOKBACK_BATCH; ++q) {
                if (b + q >= cnt) break;
                if (LRB_BROKEN_DROP_PREDECESSOR && k.tb - (j0 + b + q) == LRB_BROKEN_DROP_PREDECESSOR)
                    continue;
                H = apply_map(ra[q], rh[q], H);
                A = compose_gates(A, ra[q]);
            }
        }
    }
    scan_maps(k, s, c, A, H, lA, lH);                            // slice S-1: the whole window
    Acc tA = lA[(k.S - 1) * k.CB + c], tH = lH[(k.S - 1) * k.CB + c];
    __syncthreads();
    if (s == 0 && c < k.ncols) {
        int* f = flags + first * k.n_cg + k.cg;
        while (__nv_atomic_load_n(f, __NV_ATOMIC_RELAXED, __NV_THREAD_SCOPE_DEVICE) < 2) __nanosleep(64);
        __threadfence();
        const Acc base = __ldcg(incl_h + first * k.N + col);
        lH[c] = m > 0 ? apply_map(tA, tH, base) : base;
    }
    __syncthreads();
    return lH[c];
}

// Steps 2-3: returns the carry into this thread's slice (h before its first step; h0 or 0 before
// the scan's first step, which the re-scan multiplies by the first gate, as the serial loop does).
template <int L, typename IO, typename Acc>
__device__ Acc slice_carry(const Tile& k, const Acc* ta, const Acc* tx, const IO* __restrict__ h0,
                           Acc* sA, Acc* sH, Acc* sC, Acc* lA, Acc* lH, int* flags, Acc* agg_a,
                           Acc* agg_h, Acc* incl_h) {
    const int c = threadIdx.x % k.CB, s = threadIdx.x / k.CB;
    const int i0 = s * L * k.CB + c;
    Acc A = 1, H = 0;
#pragma unroll
    for (int j = 0; j < L; ++j) {
        const Acc aj = ta[sk(i0 + j * k.CB)];
        H = aj * H + tx[sk(i0 + j * k.CB)];
        A = A * aj;
    }
    scan_maps(k, s, c, A, H, sA, sH);
    // (A, H) is now the inclusive map of slices 0..s; slice S-1 holds the tile's aggregate.
    const i64 col = k.col0 + c;
    const bool last = s == k.S - 1 && c < k.ncols;
    int* my_flag = flags + k.tb * k.n_cg + k.cg;
    if (last) {
        agg_a[k.tb * k.N + col] = A;
        agg_h[k.tb * k.N + col] = H;
        if (k.tb == 0) incl_h[col] = h0 ? apply_map(A, H, Acc(load(h0 + col))) : H;
        __threadfence();
    }
    __syncthreads();
    if (threadIdx.x == 0)
        __nv_atomic_store_n(my_flag, k.tb == 0 ? 2 : 1, __NV_ATOMIC_RELEASE, __NV_THREAD_SCOPE_DEVICE);
    if (k.tb > 0) {
        const Acc carry = look_back(k, s, c, flags, agg_a, agg_h, incl_h, lA, lH);
        if (s == 0) sC[c] = carry;
        if (last) { incl_h[k.tb * k.N + col] = apply_map(A, H, carry); __threadfence(); }
        __syncthreads();
        if (threadIdx.x == 0)
            __nv_atomic_store_n(my_flag, 2, __NV_ATOMIC_RELEASE, __NV_THREAD_SCOPE_DEVICE);
    }
    // Carry into slice s: the tile's carry pushed through slices 0..s-1.
    const Acc tc = k.tb > 0 ? sC[c] : (h0 && c < k.ncols ? Acc(load(h0 + col)) : Acc(0));
    if (s == 0) return tc;
    return apply_map(sA[(s - 1) * k.CB + c], sH[(s - 1) * k.CB + c], tc);
}

template <int L>
__device__ __forceinline__ Tile make_tile(i64 T, i64 N, int reverse, int CB, int n_cg, int vec,
                                         int window, int ticket) {
    Tile k;
    k.T = T; k.N = N; k.reverse = reverse; k.CB = CB; k.S = blockDim.x / CB; k.n_cg = n_cg; k.vec = vec;
    k.window = window;
    k.tb = ticket / n_cg;
    k.cg = ticket % n_cg;
    k.col0 = (i64)k.cg * CB;
    k.ncols = (int)min((i64)CB, N - k.col0);
    const i64 R = (i64)k.S * L;
    k.t0 = k.tb * R;
    k.nrows = (int)min(R, T - k.t0);
    return k;
}

// Dynamic shared memory: TILES padded tiles of the block's R x CB elements, then the slices' scan
// (sA, sH: S x CB), the look-back's runs (lA, lH: S x CB) and the tile carries (sC: CB).
// Plan.smem_bytes in scan.py mirrors this.
template <typename A, int TILES, int L> struct Smem {
    A* t[TILES];
    A *sA, *sH, *lA, *lH, *sC;
    __device__ __forceinline__ Smem(const Tile& k, unsigned char* raw) {
        const int P = sk(k.S * L * k.CB) + 1;
        A* p = reinterpret_cast<A*>(raw);
        for (int i = 0; i < TILES; ++i, p += P) t[i] = p;
        sA = p;
        sH = sA + k.S * k.CB;
        lA = sH + k.S * k.CB;
        lH = lA + k.S * k.CB;
        sC = lH + k.S * k.CB;
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
template <typename IO, int L>
__device__ void scan_forward(const IO* __restrict__ a, const IO* __restrict__ x,
                             const IO* __restrict__ h0, IO* __restrict__ h, i64 T, i64 N,
                             int reverse, int CB, int n_cg, int vec, int window, int* state,
                             typename Acc<IO>::type* agg_a, typename Acc<IO>::type* agg_h,
                             typename Acc<IO>::type* incl_h) {
    typedef typename Acc<IO>::type A;
    extern __shared__ __align__(16) unsigned char smem[];
    const Tile k = make_tile<L>(T, N, reverse, CB, n_cg, vec, window, take_ticket(state));
    const Smem<A, 2, L> m(k, smem);
    A *ta = m.t[0], *tx = m.t[1];
    load_tile<L>(k, a, 0, A(1), (const IO*)nullptr, ta);
    load_tile<L>(k, x, 0, A(0), (const IO*)nullptr, tx);
    __syncthreads();
    A carry = slice_carry<L>(k, ta, tx, h0, m.sA, m.sH, m.sC, m.lA, m.lH, state + 1, agg_a, agg_h,
                             incl_h);
    const int c = threadIdx.x % CB, s = threadIdx.x / CB, i0 = s * L * CB + c;
#pragma unroll 8                  // fully unrolled (L = 16), every load is hoisted and sm_90 spills
    for (int j = 0; j < L; ++j) {
        const int i = sk(i0 + j * CB);
        carry = ta[i] * carry + tx[i];
        tx[i] = carry;
    }
    __syncthreads();
    store_tile<L>(k, h, tx);
}

// The backward of a scan that ran in direction `reverse`, run in the other direction:
// at logical step u (physical row of step u in direction !reverse) the gate is a at step u-1,
// the input gh, and the forward-previous state h at step u+1 (h0 or 0 past the end).
template <typename IO, int L>
__device__ void scan_backward(const IO* __restrict__ a, const IO* __restrict__ h,
                              const IO* __restrict__ h0, const IO* __restrict__ gh,
                              IO* __restrict__ ga, IO* __restrict__ gx, IO* __restrict__ gh0,
                              i64 T, i64 N, int reverse, int CB, int n_cg, int vec, int window,
                              int* state,
                              typename Acc<IO>::type* agg_a, typename Acc<IO>::type* agg_h,
                              typename Acc<IO>::type* incl_h) {
    typedef typename Acc<IO>::type A;
    extern __shared__ __align__(16) unsigned char smem[];
    const Tile k = make_tile<L>(T, N, !reverse, CB, n_cg, vec, window, take_ticket(state));
    const Smem<A, 3, L> m(k, smem);
    A *ta = m.t[0], *tx = m.t[1], *th = m.t[2];
    load_tile<L>(k, a, -1, A(1), (const IO*)nullptr, ta);   // a[t+1]; 1 before the first step
    load_tile<L>(k, gh, 0, A(0), (const IO*)nullptr, tx);
    load_tile<L>(k, h, 1, A(0), h0, th);                     // h[t-1]; h0 (or 0) at the end
    __syncthreads();
    A g = slice_carry<L>(k, ta, tx, (const IO*)nullptr, m.sA, m.sH, m.sC, m.lA, m.lH, state + 1,
                         agg_a, agg_h, incl_h);
    const int c = threadIdx.x % CB, s = threadIdx.x / CB, i0 = s * L * CB + c;
#pragma unroll
    for (int j = 0; j < L; ++j) {
        const int i = sk(i0 + j * CB);
        g = ta[i] * g + tx[i];
        tx[i] = g;
        th[i] = g * th[i];
        // The last logical step is the forward's first: dh0 = a there times g.
        if (gh0 && k.t0 + s * L + j == T - 1 && c < k.ncols)
            store(gh0 + k.col0 + c, A(load(a + k.phys(T - 1) * N + k.col0 + c)) * g);
    }
    __syncthreads();
    store_tile<L>(k, gx, tx);
    store_tile<L>(k, ga, th);
}

// Time steps per thread: 8; a narrow scan (one channel group) takes 16 forward, 12 backward (three
// tiles of shared memory stay under 48 KiB). cuda_scan.ITEMS mirrors these.
// 256 threads (cuda_scan.THREADS), at least 4 blocks per SM: at most 64 registers per thread.
#define LRB_SCAN_BOUNDS __launch_bounds__(256, 4)
#define LRB_SCAN_L(sfx, IO, name, L)                                                              \
    extern "C" __global__ void LRB_SCAN_BOUNDS scan_forward##name##sfx(                                           \
        const IO* a, const IO* x, const IO* h0, IO* h, i64 T, i64 N, int reverse, int CB,         \
        int n_cg, int vec, int window, int* state, Acc<IO>::type* agg_a, Acc<IO>::type* agg_h,    \
        Acc<IO>::type* incl_h) {                                                                  \
        scan_forward<IO, L>(a, x, h0, h, T, N, reverse, CB, n_cg, vec, window, state, agg_a,      \
                            agg_h, incl_h);                                                       \
    }
#define LRB_SCAN_BWD_L(sfx, IO, name, L)                                                          \
    extern "C" __global__ void LRB_SCAN_BOUNDS scan_backward##name##sfx(                                          \
        const IO* a, const IO* h, const IO* h0, const IO* gh, IO* ga, IO* gx, IO* gh0, i64 T,     \
        i64 N, int reverse, int CB, int n_cg, int vec, int window, int* state,                    \
        Acc<IO>::type* agg_a, Acc<IO>::type* agg_h, Acc<IO>::type* incl_h) {                      \
        scan_backward<IO, L>(a, h, h0, gh, ga, gx, gh0, T, N, reverse, CB, n_cg, vec, window,     \
                             state, agg_a, agg_h, incl_h);                                        \
    }
#define LRB_SCAN(sfx, IO)                                                                         \
    LRB_SCAN_L(sfx, IO, _, 8) LRB_SCAN_L(sfx, IO, _narrow_, 16)                                   \
    LRB_SCAN_BWD_L(sfx, IO, _, 8) LRB_SCAN_BWD_L(sfx, IO, _narrow_, 12)
LRB_FOR_EACH_HALF_OR_FLOAT(LRB_SCAN)
