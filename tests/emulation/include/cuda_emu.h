// A CPU emulation of the CUDA features lrbench/scan/cuda/*.cu use, so that the unmodified sources compile with
// g++ and run on the host (tests/emulation/emu.py builds and drives it; tests/test_emulation.py).
//
// Model: every CUDA thread is a fiber with its own stack; a block's fibers run on one host thread,
// switching only at __syncthreads and at warp operations (shuffles, votes, __syncwarp), which
// are barriers of the block or of the warp's participating lanes. Blocks run concurrently on a
// pool of host threads, started in a shuffled order (seeded), so an inter-block protocol such as
// the look-back really waits on blocks that are still running; fences and __nanosleep can give
// up the host thread at random (seeded) to make those waits more likely. Shared memory is one
// per-host-thread buffer, filled with 0xff (NaN) before each block: a read of shared memory that
// nothing wrote shows up as NaN. Dynamic shared memory must be declared `extern __shared__ ...
// smem[]` (the name every kernel here uses).
//
// Fatal misuse (a barrier not reached by every thread, lanes disagreeing on a shuffle's mask, a
// shuffle reading a lane outside the mask, dynamic shared memory beyond the buffer) prints a line
// naming it and aborts. What the host cannot show: the GPU's weak memory ordering (x86 is TSO), so
// missing fences are caught only on a GPU (compute-sanitizer, stage (a) of benchmarks/gpu.sh).
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sys/mman.h>
#include <random>
#include <sched.h>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#ifndef __global__
#define __global__
#endif
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Block-scope thread_local is static: one instance per host thread, i.e. per running block.
#define __shared__ thread_local

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3() = default;
    dim3(unsigned x_, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
static constexpr int warpSize = 32;

namespace lrb_emu {

constexpr size_t SMEM_BYTES = 228 * 1024;   // an H100/H200 SM's shared memory

[[noreturn]] inline void fatal(const char* what) {
    std::fprintf(stderr, "cuda_emu: %s\n", what);
    std::fflush(stderr);
    std::abort();
}

struct Fiber {
    void* sp = nullptr;          // saved stack pointer while switched out
    char* stack = nullptr;
    size_t stack_size = 0;
    uint3 tid{0, 0, 0};
    unsigned lane = 0, warp = 0;
    bool done = false;
#if defined(__SANITIZE_ADDRESS__)
    void* fake_stack = nullptr;
#endif
};

struct Warp {
    unsigned expect = 0, arrived = 0, gen = 0;
    unsigned long long slot[32];
};

struct Block {
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    unsigned n = 0, arrived = 0, gen = 0;
    unsigned long long events = 0;   // barrier arrivals, completions, exits: progress
    void* sched_sp = nullptr;
    std::mt19937 rng;
    const std::function<void()>* body = nullptr;
#if defined(__SANITIZE_ADDRESS__)
    void* sched_fake_stack = nullptr;
    const void* sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
#endif
};

inline thread_local Block* blk = nullptr;
inline thread_local Fiber* cur = nullptr;
inline thread_local uint3 block_idx{0, 0, 0};
inline thread_local dim3 block_dim, grid_dim;
inline std::atomic<unsigned long long> sleeps{0}, host_yields{0};
inline std::atomic<int> yield_permille{0};

// Context switch: save the callee-saved registers on the current stack, store its pointer in
// *from, load `to` and pop the other context's registers (x86-64 System V).
extern "C" void lrb_emu_switch(void** from, void* to);
asm(R"(
.text
.globl lrb_emu_switch
.type lrb_emu_switch,@function
lrb_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size lrb_emu_switch,.-lrb_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");

// Fiber -> scheduler.
inline void yield() {
    Fiber* f = cur;
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&f->fake_stack, blk->sched_stack_bottom, blk->sched_stack_size);
#endif
    lrb_emu_switch(&f->sp, blk->sched_sp);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
}

[[noreturn]] inline void fiber_exit() {
    Fiber* f = cur;
    f->done = true;
    ++blk->events;
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(nullptr, blk->sched_stack_bottom, blk->sched_stack_size);
#endif
    void* dead;
    lrb_emu_switch(&dead, blk->sched_sp);
    __builtin_unreachable();
}

extern "C" inline void lrb_emu_fiber_main() {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(nullptr, &blk->sched_stack_bottom, &blk->sched_stack_size);
#endif
    (*blk->body)();
    fiber_exit();
}

// Scheduler -> fiber.
inline void resume(Fiber* f) {
    cur = f;
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&blk->sched_fake_stack, f->stack, f->stack_size);
#endif
    lrb_emu_switch(&blk->sched_sp, f->sp);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(blk->sched_fake_stack, nullptr, nullptr);
#endif
    cur = nullptr;
}

inline void maybe_host_yield() {
    int p = yield_permille.load(std::memory_order_relaxed);
    if (p > 0 && blk && int(blk->rng() % 1000) < p) {
        host_yields.fetch_add(1, std::memory_order_relaxed);
        sched_yield();
    }
}

// Block-wide barrier.
inline void syncthreads() {
    Block& b = *blk;
    const unsigned g = b.gen;
    ++b.events;
    if (++b.arrived == b.n) { b.arrived = 0; ++b.gen; return; }
    while (b.gen == g) yield();
}

inline unsigned lanes_present(unsigned warp) {
    const unsigned n = blk->n - warp * 32;
    return n >= 32 ? 0xffffffffu : (1u << n) - 1;
}

// Barrier of the lanes in `mask` of the calling thread's warp; every one of them must call it
// with the same mask.
inline void warp_barrier(unsigned mask) {
    Block& b = *blk;
    Fiber& f = *cur;
    Warp& w = b.warps[f.warp];
    mask &= lanes_present(f.warp);
    const unsigned bit = 1u << f.lane;
    if (!(mask & bit)) fatal("a warp operation's mask leaves out the calling lane");
    if (w.arrived == 0) w.expect = mask;
    else if (w.expect != mask) fatal("lanes of one warp passed different masks to a warp operation");
    if (w.arrived & bit) fatal("a lane arrived twice at one warp barrier");
    const unsigned g = w.gen;
    w.arrived |= bit;
    ++b.events;
    if (w.arrived == w.expect) { w.arrived = 0; ++w.gen; return; }
    while (w.gen == g) yield();
}

template <typename T> inline unsigned long long bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    unsigned long long u = 0;
    std::memcpy(&u, &v, sizeof(T));
    return u;
}

// Every lane of `mask` publishes v; each gets the value of lane src(lane).
template <typename T, typename F> inline T exchange(unsigned mask, T v, F src) {
    Warp& w = blk->warps[cur->warp];
    w.slot[cur->lane] = bits(v);
    warp_barrier(mask);
    const int s = src((int)cur->lane);
    T r = v;
    if (s != (int)cur->lane) {
        if (s < 0 || s > 31 || !((mask & lanes_present(cur->warp)) >> s & 1))
            fatal("a shuffle reads a lane outside its mask");
        std::memcpy(&r, &w.slot[s], sizeof(T));
    }
    warp_barrier(mask);
    return r;
}

template <typename T> inline unsigned ballot(unsigned mask, T pred) {
    Warp& w = blk->warps[cur->warp];
    w.slot[cur->lane] = pred ? 1 : 0;
    warp_barrier(mask);
    unsigned r = 0;
    for (int l = 0; l < 32; ++l)
        if ((mask & lanes_present(cur->warp)) >> l & 1) r |= unsigned(w.slot[l] != 0) << l;
    warp_barrier(mask);
    return r;
}

constexpr size_t STACK_BYTES =
#if defined(__SANITIZE_ADDRESS__)
    128 * 1024;
#else
    64 * 1024;
#endif

// Runs one block: its fibers round-robin until all have exited.
inline void run_block(Block& b, uint3 bidx) {
    block_idx = bidx;
    unsigned t = 0;
    for (unsigned z = 0; z < block_dim.z; ++z)
        for (unsigned y = 0; y < block_dim.y; ++y)
            for (unsigned x = 0; x < block_dim.x; ++x, ++t) {
                Fiber& f = b.fibers[t];
                f.tid = {x, y, z};
                f.lane = t % 32;
                f.warp = t / 32;
                f.done = false;
#if defined(__SANITIZE_ADDRESS__)
                // Frames of fibers that exited by switching away were never unwound.
                ASAN_UNPOISON_MEMORY_REGION(f.stack, f.stack_size);
#endif
                // Stack top: 16-aligned; a return-address slot, the entry for `ret`, 6 registers.
                uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + f.stack_size) & ~uintptr_t(15);
                void** sp = reinterpret_cast<void**>(top);
                *--sp = nullptr;
                *--sp = reinterpret_cast<void*>(&lrb_emu_fiber_main);
                for (int r = 0; r < 6; ++r) *--sp = nullptr;
                f.sp = sp;
            }
    for (Warp& w : b.warps) { w.expect = w.arrived = 0; }
    b.arrived = 0;
    unsigned live = b.n;
    while (live > 0) {
        const unsigned long long before = b.events;
        live = 0;
        for (Fiber& f : b.fibers) {
            if (f.done) continue;
            resume(&f);
            live += !f.done;
        }
        if (live > 0 && b.events == before)
            fatal("deadlock inside a block: some threads wait at a barrier (__syncthreads or a "
                  "warp operation) that others never reach");
    }
    if (b.arrived != 0) fatal("threads exited while others wait at __syncthreads");
}

struct Config {
    unsigned grid[3], block[3];
    unsigned long long smem;   // dynamic shared memory, bytes
    unsigned seed;
    int workers;               // host threads running blocks
    int yield_permille;        // chance that a fence or __nanosleep gives up the host thread
};

}  // namespace lrb_emu

// One buffer per host thread; `extern __shared__ ... smem[]` inside a kernel names it.
alignas(16) inline thread_local unsigned char smem[lrb_emu::SMEM_BYTES];

#define threadIdx (lrb_emu::cur->tid)
#define blockIdx (lrb_emu::block_idx)
#define blockDim (lrb_emu::block_dim)
#define gridDim (lrb_emu::grid_dim)

namespace lrb_emu {

inline void run_grid(const Config& c, const std::function<void()>& body) {
    const unsigned nb = c.grid[0] * c.grid[1] * c.grid[2];
    const unsigned nt = c.block[0] * c.block[1] * c.block[2];
    if (nt == 0 || nt > 1024) fatal("block size must be 1..1024 threads");
    if (c.smem > SMEM_BYTES) fatal("dynamic shared memory beyond an SM's 228 KiB");
    std::vector<unsigned> order(nb);
    for (unsigned i = 0; i < nb; ++i) order[i] = i;
    std::mt19937 rng(c.seed);
    std::shuffle(order.begin(), order.end(), rng);
    yield_permille.store(c.yield_permille);
    std::atomic<unsigned> next{0};
    auto worker = [&](unsigned wid) {
        Block b;
        b.n = nt;
        b.body = &body;
        b.rng.seed(c.seed * 7919u + wid);
        b.fibers.resize(nt);
        b.warps.resize((nt + 31) / 32);
        // Stacks are mapped, not zeroed: only the pages a kernel touches cost memory.
        const size_t bytes = size_t(nt) * STACK_BYTES;
        void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (map == MAP_FAILED) fatal("cannot map the fibers' stacks");
        char* stacks = static_cast<char*>(map);
        for (unsigned i = 0; i < nt; ++i) {
            b.fibers[i].stack = stacks + size_t(i) * STACK_BYTES;
            b.fibers[i].stack_size = STACK_BYTES;
        }
        blk = &b;
        block_dim = dim3(c.block[0], c.block[1], c.block[2]);
        grid_dim = dim3(c.grid[0], c.grid[1], c.grid[2]);
        for (unsigned i; (i = next.fetch_add(1)) < nb;) {
            const unsigned id = order[i];
            std::memset(smem, 0xff, c.smem ? c.smem : 1024);
            run_block(b, {id % c.grid[0], id / c.grid[0] % c.grid[1], id / (c.grid[0] * c.grid[1])});
        }
        blk = nullptr;
        munmap(map, bytes);
    };
    const unsigned nw = std::max(1u, std::min<unsigned>(c.workers, nb));
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < nw; ++w) pool.emplace_back(worker, w);
    worker(0);
    for (auto& t : pool) t.join();
}

// Copies the arguments out of argv (each points at a value of the kernel's parameter type, as in
// cuLaunchKernel) after checking their sizes, and runs the grid.
template <typename... A, size_t... I>
int launch_impl(void (*k)(A...), const Config& c, void** argv, const int* sizes, int n,
                std::index_sequence<I...>) {
    constexpr int want[] = {int(sizeof(A))..., 0};
    if (n != int(sizeof...(A))) {
        std::fprintf(stderr, "cuda_emu: kernel takes %d arguments, launch passed %d\n",
                     int(sizeof...(A)), n);
        return 1;
    }
    for (int i = 0; i < n; ++i)
        if (sizes[i] != want[i]) {
            std::fprintf(stderr, "cuda_emu: argument %d is %d bytes, the kernel's parameter %d\n",
                         i, sizes[i], want[i]);
            return 2;
        }
    std::tuple<A...> args;
    ((std::memcpy(&std::get<I>(args), argv[I], sizeof(A))), ...);
    const std::function<void()> body = [&] { std::apply(k, args); };
    run_grid(c, body);
    return 0;
}

template <typename... A>
int launch(void (*k)(A...), const Config& c, void** argv, const int* sizes, int n) {
    return launch_impl(k, c, argv, sizes, n, std::index_sequence_for<A...>{});
}

}  // namespace lrb_emu

// One exported launcher per kernel entry: lrb_emu__<entry>(config, argv, sizes, n).
#define LRB_EMU_ENTRY(name)                                                                       \
    extern "C" int lrb_emu__##name(const lrb_emu::Config* c, void** argv, const int* sizes,       \
                                   int n) {                                                        \
        return lrb_emu::launch(&name, *c, argv, sizes, n);                                        \
    }

// The header is included by one translation unit per library (tests/emulation/emu.py).
extern "C" unsigned long long lrb_emu_sleeps() { return lrb_emu::sleeps.load(); }

// ---- the device API ----------------------------------------------------------------------------
inline void __syncthreads() { lrb_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { lrb_emu::warp_barrier(mask); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); lrb_emu::maybe_host_yield(); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) {
    lrb_emu::sleeps.fetch_add(1, std::memory_order_relaxed);
    lrb_emu::host_yields.fetch_add(1, std::memory_order_relaxed);
    sched_yield();
}
inline unsigned __activemask() { return lrb_emu::lanes_present(lrb_emu::cur->warp); }

template <typename T> inline T __shfl_sync(unsigned m, T v, int src, int w = 32) {
    return lrb_emu::exchange(m, v, [&](int l) { return (l & ~(w - 1)) + (src & (w - 1)); });
}
template <typename T> inline T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32) {
    return lrb_emu::exchange(m, v, [&](int l) { return (l & (w - 1)) >= int(d) ? l - int(d) : l; });
}
template <typename T> inline T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32) {
    return lrb_emu::exchange(m, v, [&](int l) { return (l & (w - 1)) + int(d) < w ? l + int(d) : l; });
}
template <typename T> inline T __shfl_xor_sync(unsigned m, T v, int x, int w = 32) {
    return lrb_emu::exchange(m, v, [&](int l) { int s = l ^ x; return (s & ~(w - 1)) == (l & ~(w - 1)) ? s : l; });
}
inline unsigned __ballot_sync(unsigned m, int p) { return lrb_emu::ballot(m, p); }
inline int __all_sync(unsigned m, int p) { return lrb_emu::ballot(m, p) == (m & lrb_emu::lanes_present(lrb_emu::cur->warp)); }
inline int __any_sync(unsigned m, int p) { return lrb_emu::ballot(m, p) != 0; }

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v ? __builtin_clz((unsigned)v) : 32; }

template <typename T> inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline float atomicAdd(float* p, float v) {
    float old, nv;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    do { nv = old + v; } while (!__atomic_compare_exchange(p, &old, &nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return old;
}
template <typename T> inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
template <typename T> inline T atomicCAS(T* p, T cmp, T v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
template <typename T> inline T atomicMax(T* p, T v) { return __atomic_fetch_max(p, v, __ATOMIC_SEQ_CST); }
template <typename T> inline T atomicMin(T* p, T v) { return __atomic_fetch_min(p, v, __ATOMIC_SEQ_CST); }

// CUDA 12.8's scoped atomics (__nv_atomic_*): the host's orders; scope is irrelevant on one host.
#define __NV_ATOMIC_RELAXED __ATOMIC_RELAXED
#define __NV_ATOMIC_ACQUIRE __ATOMIC_ACQUIRE
#define __NV_ATOMIC_RELEASE __ATOMIC_RELEASE
#define __NV_ATOMIC_ACQ_REL __ATOMIC_ACQ_REL
#define __NV_ATOMIC_SEQ_CST __ATOMIC_SEQ_CST
#define __NV_THREAD_SCOPE_SYSTEM 0
#define __NV_THREAD_SCOPE_DEVICE 1
#define __NV_THREAD_SCOPE_BLOCK 2
template <typename T> inline T __nv_atomic_load_n(const T* p, int order, int) {
    lrb_emu::maybe_host_yield();
    return __atomic_load_n(p, order);
}
template <typename T> inline void __nv_atomic_store_n(T* p, T v, int order, int) {
    __atomic_store_n(p, v, order);
    lrb_emu::maybe_host_yield();
}

// Cache-hint loads and stores: plain accesses through volatile, so the compiler keeps them.
template <typename T> inline T __ldcg(const T* p) { return *const_cast<const volatile T*>(p); }
template <typename T> inline T __ldcv(const T* p) { return *const_cast<const volatile T*>(p); }
template <typename T> inline T __ldg(const T* p) { return *p; }
template <typename T> inline void __stcg(T* p, T v) { *const_cast<volatile T*>(p) = v; }

template <typename T> inline T min(T a, T b) { return b < a ? b : a; }
template <typename T> inline T max(T a, T b) { return a < b ? b : a; }
