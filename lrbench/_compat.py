"""The one place lrbench touches private internals of torch and Numba.

Each internal is looked up once (torch's at import, Numba's when the first chain kernel is
wrapped, so that importing lrbench does not import Numba). One that is missing, or fails when
called once, is recorded in ``MISSING`` (dotted name -> why, with the library's version) and the
feature that needs it falls back to the public path: correct, only slower.

* ``direct``: whether a call may skip the dispatcher and autograd (about 60 us a call). Needs
  ``TORCH_DIRECT``; without any of them it always answers False (every call goes through the
  dispatcher).
* ``slp``: compile a Numba kernel with LLVM's SLP vectorizer (which packs ``chains.reduce``'s
  W lanes into one vector). Needs ``NUMBA_SLP``; without any of them the kernel is returned as it
  is (compiled without the flag).

* ``transforms_active`` and ``is_batched``: whether a packed call runs under a torch.func
  transform or forward-mode AD (then each sequence is scanned alone), and whether an offsets tensor
  is batched by vmap. Need ``TORCH_TRANSFORMS``; without them a packed call always scans each
  sequence alone (correct everywhere) and a batched offsets tensor meets vmap's own error.

``tests/test_compat.py`` fails by name when a pinned torch or Numba lacks one of these.
"""

from __future__ import annotations

import functools
import importlib

import torch
from torch import Tensor

MISSING: dict[str, str] = {}

TORCH_DIRECT = (
    "torch._C._are_functorch_transforms_active",
    "torch._C._len_torch_dispatch_stack",
    "torch._C._is_torch_function_mode_enabled",
    "torch._C._get_tracing_state",
    "torch.autograd.forward_ad._current_level",  # a module global, read on every call
)
NUMBA_SLP = (
    "numba.core.config.SLP_VECTORIZE",  # read by Numba's codegen for each library
    "numba.core.compiler_lock.global_compiler_lock",
    "numba.core.dispatcher.Dispatcher.compile",  # wrapped per kernel
)


def lookup(dotted: str):
    """The object ``dotted`` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, name in enumerate(parts[1:], 1):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            if not hasattr(obj, "__path__"):  # not a package: no submodule to import
                raise
            obj = importlib.import_module(".".join(parts[: i + 1]))  # a submodule not yet imported
    return obj


def _version(dotted: str) -> str:
    lib = dotted.split(".")[0]
    try:
        return f"{lib} {importlib.import_module(lib).__version__}"
    except Exception:  # noqa: BLE001 - only for the message
        return lib


def _resolve(names, get, missing: dict, check=None) -> dict | None:
    """{name: object} for ``names``, or None (each failure recorded in ``missing``) if any is
    missing or fails ``check(name, object)``."""
    found = {}
    for name in names:
        try:
            obj = get(name)
            if check is not None:
                check(name, obj)
            found[name] = obj
        except Exception as e:  # noqa: BLE001 - any failure means "missing"
            missing[name] = f"{type(e).__name__}: {e} ({_version(name)})"
    return found if len(found) == len(names) else None


def _check_direct(name, obj):
    if name.endswith("_current_level"):
        if not isinstance(obj, int):
            raise TypeError(f"expected an int, got {type(obj).__name__}")
    else:
        obj()  # all take no arguments; once, at import


def build_direct(get=lookup, missing: dict = MISSING):
    """``direct(*tensors) -> bool`` from the internals ``get`` finds (``get`` is replaceable for
    tests); the always-False fallback where one is missing."""
    found = _resolve(TORCH_DIRECT, get, missing, _check_direct)
    if found is None:

        def direct(*tensors) -> bool:
            """Fallback (an internal is missing, see ``_compat.MISSING``): never skip the dispatcher."""
            return False

        return direct

    functorch_active, dispatch_stack, function_mode, tracing_state = (
        found[n] for n in TORCH_DIRECT[:4]
    )
    forward_ad = get(TORCH_DIRECT[4].rpartition(".")[0])
    is_compiling, grad_enabled = torch.compiler.is_compiling, torch.is_grad_enabled

    def direct(*tensors) -> bool:
        """Whether a call may skip the dispatcher and autograd: plain tensors, nothing requires
        grad, no tracing, torch.func transform or dispatch mode active. Such a call gets the same
        kernel without their cost (about 60 us a call, measured)."""
        if (
            is_compiling()
            or functorch_active()
            or dispatch_stack()
            or function_mode()
            or forward_ad._current_level >= 0
            or tracing_state()
        ):
            return False
        grad = grad_enabled()
        return all(
            t is None or (type(t) is Tensor and not (grad and t.requires_grad)) for t in tensors
        )

    return direct


direct = build_direct()

TORCH_TRANSFORMS = ("torch._C._functorch.is_batchedtensor",)


def _build_transforms(get=lookup, missing: dict = MISSING):
    """(transforms_active, is_batched) from the internals, or their safe fallbacks."""
    found = _resolve(
        TORCH_DIRECT[:1] + TORCH_DIRECT[4:] + TORCH_TRANSFORMS, get, missing, lambda name, obj: None
    )
    if found is None:
        return (lambda: True), (lambda t: False)
    functorch_active = found[TORCH_DIRECT[0]]
    forward_ad = get(TORCH_DIRECT[4].rpartition(".")[0])
    is_batched = found[TORCH_TRANSFORMS[0]]

    def transforms_active() -> bool:
        """A torch.func transform (vmap, grad, jvp) or forward-mode AD is active."""
        return functorch_active() or forward_ad._current_level >= 0

    return transforms_active, is_batched


transforms_active, is_batched = _build_transforms()


def build_slp(get=lookup, missing: dict = MISSING):
    """``slp(kernel)`` from the Numba internals ``get`` finds; the identity where one is missing."""
    found = _resolve(NUMBA_SLP, get, missing)
    if found is None:
        return lambda kernel: kernel
    config = get(NUMBA_SLP[0].rpartition(".")[0])
    lock = found[NUMBA_SLP[1]]

    def slp(kernel):
        """``kernel`` (a Numba dispatcher), compiled with LLVM's SLP vectorizer, which Numba leaves
        off by default since numba#8705."""
        compile_ = kernel.compile

        def compile_slp(sig):
            with lock:  # no other compile sees the flag (the lock is re-entrant)
                old, config.SLP_VECTORIZE = config.SLP_VECTORIZE, 1
                try:
                    return compile_(sig)
                finally:
                    config.SLP_VECTORIZE = old

        kernel.compile = compile_slp
        return kernel

    return slp


@functools.cache
def _slp():
    return build_slp()


def slp(kernel):
    """Decorator: ``kernel`` compiled with the SLP vectorizer where Numba's internals allow it."""
    return _slp()(kernel)


def numba_probed() -> None:
    """Look up the Numba internals now (recording any missing ones in ``MISSING``)."""
    _slp()
