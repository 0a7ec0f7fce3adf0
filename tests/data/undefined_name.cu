// Does not compile on purpose: tests/test_kernels.py checks that NVRTC's log reaches the user.
extern "C" __global__ void k(float* y) { y[0] = undefined_name; }
