"""The CUDA family: each kernel source (``*.cu``, shipped in the package) beside its launcher.

``serial`` (cuda-serial, ``serial.cu``), ``paper`` (cuda-paper, ``paper.cu``), ``scan`` (cuda-scan,
``scan.cu``), sharing ``common.cuh``; ``launch`` compiles them through NVRTC and launches them with
CuPy on torch's stream.
"""
