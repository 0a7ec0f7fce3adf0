"""Input validation for ``linear_recurrence``: every message names the argument and what was seen."""

from __future__ import annotations

import torch


def _desc(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_inputs(a, x, h0, dim: int, packed: bool = False) -> int:
    """Validate (a, x, h0); return ``dim`` normalised to ``[0, a.ndim)``. ``packed``: h0 holds one
    state per sequence, ``(B,) + a.shape without dim``."""
    for name, t in (("a", a), ("x", x)):
        if t is None:
            raise TypeError(f"argument {name!r} must be a torch.Tensor or numpy.ndarray, got None")
    for name, t in (("a", a), ("x", x), ("h0", h0)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(
                f"argument {name!r} must be a torch.Tensor or numpy.ndarray, got {type(t).__name__}"
            )
    if a.ndim == 0:
        raise ValueError(f"argument 'a' must have a time axis; got a 0-d tensor ({_desc(a)})")
    if a.shape != x.shape:
        raise ValueError(
            f"arguments 'a' and 'x' must have the same shape; got a {tuple(a.shape)} "
            f"and x {tuple(x.shape)}"
        )
    if not -a.ndim <= dim < a.ndim:
        raise ValueError(
            f"argument 'dim'={dim} is out of range for a and x of shape {tuple(a.shape)}"
        )
    dim %= a.ndim
    for name, t in (("a", a), ("x", x), ("h0", h0)):
        if t is not None and not (t.is_floating_point() or t.is_complex()):
            raise TypeError(
                f"argument {name!r} must be a floating-point or complex tensor; got {_desc(t)}"
            )
    others = [(n, t) for n, t in (("x", x), ("h0", h0)) if t is not None]
    for name, t in others:
        if t.dtype != a.dtype:
            raise TypeError(
                f"arguments 'a' and {name!r} must have the same dtype; got a {a.dtype} "
                f"and {name} {t.dtype}"
            )
        if t.device != a.device:
            raise ValueError(
                f"arguments 'a' and {name!r} must be on the same device; got a on "
                f"{a.device} and {name} on {t.device}"
            )
    if h0 is not None:
        want = tuple(a.shape[:dim] + a.shape[dim + 1 :])
        if packed:
            if h0.ndim != len(want) + 1 or tuple(h0.shape[1:]) != want:
                raise ValueError(
                    f"argument 'h0' must have shape (B,) + {want} with cu_seqlens (one "
                    f"state per sequence); got {tuple(h0.shape)} (a is {tuple(a.shape)})"
                )
        elif tuple(h0.shape) != want:
            raise ValueError(
                f"argument 'h0' must have the shape of 'a' without the time axis "
                f"dim={dim}, {want}; got {tuple(h0.shape)} (a is {tuple(a.shape)})"
            )
    return dim


def check_backend(name: str, mod, a: torch.Tensor) -> None:
    """The backend can take this dtype and device."""
    if a.dtype not in mod.DTYPES:
        raise TypeError(
            f"backend {name!r} cannot take dtype {a.dtype} (arguments 'a', 'x'); "
            f"it takes {[str(d) for d in mod.DTYPES]}"
        )
    if mod.DEVICES is not None and a.device.type not in mod.DEVICES:
        raise ValueError(
            f"backend {name!r} cannot run on device {a.device} (arguments 'a', 'x'); "
            f"it runs on {list(mod.DEVICES)}"
        )


def _span(t: torch.Tensor) -> tuple[int, int]:
    """[first, last] byte address that t can touch."""
    lo = hi = t.data_ptr()
    if t.is_contiguous():  # the common case, without a loop over the axes
        return lo, lo + t.numel() * t.element_size() - 1
    for size, stride in zip(t.shape, t.stride()):
        reach = (size - 1) * stride * t.element_size()
        lo, hi = (lo + reach, hi) if reach < 0 else (lo, hi + reach)
    return lo, hi + t.element_size() - 1


def check_out(out, a: torch.Tensor, x: torch.Tensor, h0) -> None:
    """``out`` can take the result: a tensor of x's shape, dtype and device, apart from every input,
    and no input requires grad (like torch's own ``out=`` functions)."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"argument 'out' must be a torch.Tensor; got {type(out).__name__}")
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"argument 'out' must have x's shape, dtype and device ({_desc(x)}); got {_desc(out)}"
        )
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (a, x, h0, out)):
        raise RuntimeError(
            "argument 'out': linear_recurrence(out=...) is not differentiable, but an "
            "input requires grad; call it without out=, or under torch.no_grad()"
        )
    if not out.is_contiguous() and any(st == 0 and n > 1 for n, st in zip(out.shape, out.stride())):
        raise ValueError(
            f"argument 'out' is broadcast (stride 0, strides {out.stride()}): its "
            f"elements share memory; pass a tensor with memory of its own"
        )
    if torch.compiler.is_compiling():  # traced: no addresses; the operator checks when it runs
        for name, t in (("a", a), ("x", x), ("h0", h0)):
            if t is out:
                raise ValueError(
                    f"argument 'out' overlaps argument {name!r} in memory; pass a "
                    f"separate output tensor"
                )
        return
    check_apart(out, a, x, h0)


def check_apart(out: torch.Tensor, a: torch.Tensor, x: torch.Tensor, h0) -> None:
    """``out`` shares no byte with an input. Run by ``linear_recurrence`` and again by the
    ``scan_out`` operator itself, so it holds wherever the kernel runs (eagerly through
    ``torch.ops``, or inside a compiled graph, where the trace sees no addresses)."""
    if out.numel() == 0:
        return
    lo, hi = _span(out)  # by address: views from NumPy have storages of their own
    for name, t in (("a", a), ("x", x), ("h0", h0)):
        if t is None or t.numel() == 0:
            continue
        tlo, thi = _span(t)
        if tlo <= hi and lo <= thi:
            raise ValueError(
                f"argument 'out' overlaps argument {name!r} in memory; pass a separate "
                f"output tensor"
            )
