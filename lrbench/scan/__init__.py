"""The scan backends (see ``lrbench.registry``): ``cpu/`` and ``cuda/`` by family, the torch-based
ones (``torch_loop``, ``torch_assoc``, ``log_space``, ``triton_scan``) beside them. The float64
ground truth is ``lrbench.reference``."""
