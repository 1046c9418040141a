"""Compiling GFI operations and whole inference loops with ``mx.compile``.

:func:`compile` turns a Python function of keys, arrays, traces and choice maps into a
pure function of its array leaves, compiled once per input structure and shapes. The
result is rebuilt into the same objects the interpreted function returns (traces,
NamedTuples, choice maps), with the same values: compilation fuses the graph but does
not change what is computed.

Rules for compiled functions: pass every array (keys included) as an argument rather
than capturing it from an enclosing scope (captured arrays are frozen at the first
call); non-array arguments (ints, strings, generative functions, selections) are static
and a new value triggers a new compilation. ``key=None`` inside a compiled function
draws fresh keys in every call (from a hidden key input the compiled function gets from
the operating system each time), as it does uncompiled; a plain ``mx.compile`` cannot
do that, so use this one.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, compile
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def model(mu):
    ...     return normal(mu, 1.0) @ "x"
    >>> step = compile(lambda key, mu: model.vsimulate((mu,), 1000, key=key))
    >>> tr = step(mx.random.key(0), mx.array(2.0))
    >>> tr2 = model.vsimulate((mx.array(2.0),), 1000, key=mx.random.key(0))
    >>> bool(mx.all(tr["x"] == tr2["x"]))
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.random import fresh_key
from genmlx.core.threads import guard_thread
from genmlx.core.tree import TreeDef, flatten, unflatten

__all__ = ["compile", "compile_function", "fusion_enabled", "kernel_fusion"]

F = TypeVar("F", bound=Callable[..., Any])


# ---------------------------------------------------------------------------- fusion
# ``mx.compile`` fuses chains of elementwise operations into generated kernels. On the
# GPU that saves memory traffic; on the CPU every new fused kernel is C++ source that
# the system compiler builds (about a second each, cached under $TMPDIR/mlx), which is
# where minutes of first-call latency came from, while unfused graphs run within
# ~1.5x of fused ones for the small pieces GenMLX compiles. MLX's C++ API has a
# compile mode without fusion (``set_compile_mode(no_fuse)``) that Python does not
# bind; GenMLX reaches it through ctypes and sets it only while a new program is being
# traced, so other users of ``mx.compile`` in the process keep MLX's default.
_FUSION = os.environ.get("GENMLX_KERNEL_FUSION", "auto").lower()
_MODE_LOCK = threading.RLock()
_NO_FUSE, _ENABLED = 2, 3  # mlx::core::CompileMode {disabled, no_simplify, no_fuse, enabled}


def _load_set_mode() -> Any:
    try:
        libdir = os.path.join(os.path.dirname(mx.__file__), "lib")
        for path in sorted(glob.glob(os.path.join(libdir, "libmlx*.so*"))):
            lib = ctypes.CDLL(path)
            fn = getattr(lib, "_ZN3mlx4core16set_compile_modeENS0_11CompileModeE", None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                return fn
    except OSError:
        return None
    return None


_SET_MODE = _load_set_mode()


def fusion_enabled() -> bool:
    """Whether GenMLX's compiled programs fuse elementwise kernels.

    ``GENMLX_KERNEL_FUSION`` (``1``/``0``/``auto``, default ``auto``) or
    :func:`kernel_fusion` decide; ``auto`` fuses on a GPU and not on the CPU, where
    fused kernels must first be built by the C++ compiler. Where MLX's compile mode
    cannot be reached, programs are always fused (MLX's default).
    """
    if _SET_MODE is None:
        return True
    if _FUSION in ("1", "true", "on", "yes"):
        return True
    if _FUSION in ("0", "false", "off", "no"):
        return False
    return bool(mx.default_device() == mx.gpu)


def kernel_fusion(enabled: bool | str) -> None:
    """Set kernel fusion for programs GenMLX compiles from now on (``True``, ``False``
    or ``"auto"``)."""
    global _FUSION
    _FUSION = "auto" if enabled == "auto" else ("1" if enabled else "0")


@contextlib.contextmanager
def tracing_mode() -> Iterator[None]:
    """Hold MLX's compile mode at GenMLX's fusion setting while a program is traced."""
    if _SET_MODE is None or fusion_enabled():
        yield
        return
    with _MODE_LOCK:
        _SET_MODE(_NO_FUSE)
        try:
            yield
        finally:
            _SET_MODE(_ENABLED)


def compile_function(fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    """``mx.compile(fn, **kwargs)`` under GenMLX's kernel-fusion setting.

    Every call holds MLX's compile mode at :func:`fusion_enabled` (a new input shape
    re-traces the program inside MLX, so the first call alone is not enough); the
    switch costs two C calls. Used for every program GenMLX compiles.
    """
    cfn = mx.compile(fn, **kwargs)

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        with tracing_mode():
            return cfn(*args)

    return call


class _Compiled:
    """One ``mx.compile``'d function per input structure/shape signature."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn, updated=())
        self.fn = fn
        self.cache: dict[Any, tuple[Callable[..., Any], dict[str, TreeDef]]] = {}

    def __call__(self, *args: Any) -> Any:
        guard_thread()
        leaves, in_td = flatten(args)
        sig = (in_td, tuple((tuple(x.shape), x.dtype) for x in leaves))
        entry = self.cache.get(sig)
        if entry is None:
            box: dict[str, TreeDef] = {}
            fn = self.fn

            def pure(*lv: mx.array) -> list[mx.array]:
                a = unflatten(in_td, list(lv[:-1]))
                with runtime.transforming(), runtime.compiling(lv[-1]):
                    out = fn(*a)
                out_leaves, out_td = flatten(out)
                box["td"] = out_td
                return out_leaves

            entry = (compile_function(pure), box)
            self.cache[sig] = entry
        cfn, box = entry
        # a hidden per-call key: key=None inside fn is fresh in every call
        out_leaves = cfn(*leaves, fresh_key())
        return unflatten(box["td"], list(out_leaves))


def compile(fn: F) -> F:
    """Compile ``fn`` (a GFI operation or a whole inference loop) with ``mx.compile``.

    Args:
        fn: a function whose arguments are keys, arrays, traces, choice maps,
            (named) tuples/lists/dicts of them, or static Python values, and whose
            result is made of the same.

    Returns:
        A function with the same signature and results, compiled per input signature.
    """
    return _Compiled(fn)  # type: ignore[return-value]
