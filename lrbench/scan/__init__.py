"""One module per scan backend (see ``lrbench.registry``), plus the Numba kernels they share."""
