// Host stand-in for CUDA's cuda_fp16.h (tests/emulation): __half as IEEE binary16, conversions
// rounding to nearest even, as the device's __float2half_rn does.
#pragma once
#include <cstring>

struct __half {
    unsigned short x;
    __half() = default;
};

inline float __half2float(__half h) {
    _Float16 f;
    std::memcpy(&f, &h, 2);
    return float(f);
}

inline __half __float2half_rn(float v) {
    const _Float16 f = _Float16(v);
    __half h;
    std::memcpy(&h, &f, 2);
    return h;
}
