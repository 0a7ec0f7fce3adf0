"""The CPU family: Numba kernels run on the calling thread and helper threads.

``serial`` (cpu-serial) and ``chunked`` (cpu-chunked, with its ``CarryRelay`` pipeline) over the
kernels ``rows`` (one row of N channels a step), ``chains`` (8 chains in registers), ``chunks``
(reduce and carries for many channels); ``driver`` binds a kernel to forward and fused backward,
``flat`` addresses time-major buffers, ``threads`` hands tasks to helper threads.
"""
