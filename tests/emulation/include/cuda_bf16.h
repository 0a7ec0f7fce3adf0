// Host stand-in for CUDA's cuda_bf16.h (tests/emulation): bfloat16 as the top 16 bits of a float,
// converted from float by rounding to nearest even (NaN stays NaN), as __float2bfloat16_rn does.
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    unsigned short x;
    __nv_bfloat16() = default;
};

inline float __bfloat162float(__nv_bfloat16 b) {
    const uint32_t u = uint32_t(b.x) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline __nv_bfloat16 __float2bfloat16_rn(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) b.x = (unsigned short)((u >> 16) | 0x40);   // quiet NaN
    else b.x = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
    return b;
}
