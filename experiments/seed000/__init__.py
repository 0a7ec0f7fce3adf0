"""Seed 000: training non-linear RNNs on all time steps at once (state-embedding tables), and the
solver-based baselines it is measured against (quasi-DEER). Work in progress: see the issue."""
