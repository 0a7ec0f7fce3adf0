"""Experiments built on lrbench's public API, kept apart from the installed library: they run from a
checkout (``lrbench seed000``, or ``python -m experiments.seed000``)."""
