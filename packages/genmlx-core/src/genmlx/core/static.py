"""Automatic compilation of batched GFI operations on static models.

A batched operation (``vsimulate``, ``vgenerate``, ``vupdate``, ``vregenerate``,
``vassess``) on a static model (:func:`genmlx.core.analyze`) is the same computation
every time its inputs have the same structure. The second time an operation is called
with a given signature — the model, the operation, the structure, shapes and dtypes of
its arguments, constraints or trace, the number of particles and the other static
values — it is compiled with ``mx.compile`` and the compiled program is reused from
then on: the Python body, the handlers and ``vmap``'s tracing no longer run per call.
The compiled program computes exactly what the interpreter computes (the same MLX
operations, so the same traces, scores and weights; particle ``i`` still equals the
unbatched run with key ``split(key, n)[i]``).

What is and is not compiled:

* only static models that read no trainable parameters (``param``), outside any
  transformation the caller runs (inside a user's ``vmap``/``compile``/``grad`` the
  operation is traced into the caller's program anyway);
* arrays the model's body reads from global variables or closures are part of the
  program; GenMLX records which objects they are and drops the program if one of those
  names is rebound (a value mutated in place is not seen: pass data as arguments);
* ``config.auto_compile(False)`` or ``GENMLX_AUTO_COMPILE=0`` turns it off.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def m(mu):
    ...     return normal(mu, 1.0) @ "x"
    >>> a = m.vsimulate((mx.array(1.0),), 5, key=mx.random.key(0))   # interpreted
    >>> b = m.vsimulate((mx.array(1.0),), 5, key=mx.random.key(0))   # compiled here
    >>> bool(mx.all(a["x"] == b["x"])), stats(m)["compiled_programs"]
    (True, 1)
"""

from __future__ import annotations

import contextlib
import os
import types
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import runtime
from genmlx.core.compile import compile_function
from genmlx.core.tree import flatten, opaque_nodes, unflatten

__all__ = ["auto_compile", "auto_compile_enabled", "clear", "stats"]

_ENABLED: ContextVar[bool] = ContextVar(
    "genmlx_auto_compile", default=os.environ.get("GENMLX_AUTO_COMPILE", "1") != "0"
)
_COMPILE_AFTER = 2  # calls with one signature before it is compiled
_MAX_PROGRAMS = 32  # per model


def auto_compile_enabled() -> bool:
    """Whether batched operations on static models are compiled automatically."""
    return _ENABLED.get()


@contextlib.contextmanager
def auto_compile(enabled: bool) -> Iterator[None]:
    """Turn automatic compilation on or off inside a ``with`` block."""
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


# ---------------------------------------------------------------------------- captures
def _code_globals(code: types.CodeType, out: set[str]) -> None:
    out.update(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code_globals(c, out)


def _captured(fn: Callable[..., Any], seen: set[int] | None = None) -> list[tuple[Any, str, Any]]:
    """``(namespace, name, object)`` of every array (or array container, or nested
    ``@gen`` function) that ``fn``'s body reads from globals or closures."""
    from genmlx.core.dsl import DynamicGenerativeFunction

    seen = set() if seen is None else seen
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    names: set[str] = set()
    _code_globals(code, names)
    g = getattr(fn, "__globals__", {})
    out: list[tuple[Any, str, Any]] = []
    for n in names:
        if n in g:
            v = g[n]
            if _watch(v):
                out.append((g, n, v))
            if isinstance(v, DynamicGenerativeFunction):
                out.extend(_captured(v.fn, seen))
    for cell, n in zip(fn.__closure__ or (), code.co_freevars):
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if _watch(v):
            out.append((cell, n, v))
        if isinstance(v, DynamicGenerativeFunction):
            out.extend(_captured(v.fn, seen))
    return out


def _watch(v: Any) -> bool:
    if isinstance(v, (mx.array, np.ndarray)):
        return True
    if isinstance(v, (list, tuple, dict)) and len(v) < 64:
        vals = v.values() if isinstance(v, dict) else v
        return any(isinstance(x, (mx.array, np.ndarray)) for x in vals)
    return False


def _fingerprint(caps: list[tuple[Any, str, Any]]) -> tuple[int, ...]:
    out = []
    for ns, name, _ in caps:
        if isinstance(ns, dict):
            v = ns.get(name)
        else:
            try:
                v = ns.cell_contents
            except ValueError:
                v = None
        out.append(id(v))
        if isinstance(v, (list, tuple)):
            out.extend(id(x) for x in v)
        elif isinstance(v, dict):
            out.extend(id(x) for x in v.values())
    return tuple(out)


_CAPS: weakref.WeakKeyDictionary[Any, list[tuple[Any, str, Any]]] = weakref.WeakKeyDictionary()


def globals_fingerprint(gf: Any) -> tuple[int, ...]:
    """Which objects the arrays ``gf``'s body reads from globals or closures are now (by
    identity): caches of anything computed from the body (its graph, the rewrites' data
    constants) key on it, so that rebinding such a name is noticed."""
    fn = getattr(gf, "fn", None)
    if fn is None:
        return ()
    try:
        caps = _CAPS.get(gf)
        if caps is None:
            caps = _CAPS[gf] = _captured(fn)
    except TypeError:  # not weak-referenceable
        caps = _captured(fn)
    fp = _fingerprint(caps)
    if caps:
        # keep the last few fingerprinted objects alive, so that a freed array's id is
        # not reused by a new one while caches may still hold entries under it
        try:
            held = _HELD.setdefault(gf, [])
        except TypeError:
            return fp
        if not held or held[-1][0] != fp:
            held.append((fp, [_current(ns, name) for ns, name, _ in caps]))
            if len(held) > 8:
                del held[0]
    return fp


_HELD: weakref.WeakKeyDictionary[Any, list[tuple[tuple[int, ...], list[Any]]]] = (
    weakref.WeakKeyDictionary()
)


def _current(ns: Any, name: str) -> Any:
    if isinstance(ns, dict):
        return ns.get(name)
    try:
        return ns.cell_contents
    except ValueError:
        return None


# ---------------------------------------------------------------------------- cache
class _ModelCache:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.captures = _captured(fn)
        self.fingerprint = _fingerprint(self.captures)
        self.counts: dict[Any, int] = {}
        self.programs: dict[Any, tuple[Callable[..., Any], dict[str, Any]]] = {}
        self.compiled = 0

    def valid(self) -> bool:
        fp = _fingerprint(self.captures)
        if fp != self.fingerprint:
            self.fingerprint = fp
            self.counts.clear()
            self.programs.clear()
            return False
        return True


_CACHES: weakref.WeakKeyDictionary[Any, _ModelCache] = weakref.WeakKeyDictionary()


_SEEN: weakref.WeakKeyDictionary[Any, dict[Any, int]] = weakref.WeakKeyDictionary()


def _eligible(
    gf: Any, args: tuple[Any, ...], depth: int = 1, counted: bool = True
) -> _ModelCache | None:
    from genmlx.core.dsl import DynamicGenerativeFunction
    from genmlx.core.graph import _arg_signature, cached_graph, structural_graph

    if not _ENABLED.get() or runtime.in_transform() or runtime.active_run() is not None:
        return None
    if runtime.operation_depth() > depth:
        # a kernel called by a combinator or another operation: only the models users
        # call are analysed and compiled (a kernel's arguments, such as a time step,
        # change every call)
        return None
    if not isinstance(gf, DynamicGenerativeFunction):
        return None
    g = cached_graph(gf, args)
    if g is None and counted:
        # analyse a signature the second time it is seen: a one-off call (or arguments
        # such as a time step that change every call) costs nothing extra
        try:
            sig = _arg_signature(args)
            seen = _SEEN.setdefault(gf, {})
            n = seen.get(sig, 0) + 1
            if len(seen) > 1024:
                seen.clear()
            seen[sig] = n
        except TypeError:
            return None
        if n < _COMPILE_AFTER:
            return None
    if g is None:
        try:
            g = structural_graph(gf, args)
        except Exception:
            return None
    if not g.is_static or g.uses_params:
        return None
    cache = _CACHES.get(gf)
    if cache is None:
        cache = _CACHES[gf] = _ModelCache(gf.fn)
    cache.valid()
    return cache


def prepare(gf: Any, args: tuple[Any, ...]) -> None:
    """Analyse a ``@gen`` model for ``args``' signature (once) so that its updates and
    regenerations can be dependency-aware; nothing happens inside transformations."""
    _eligible(gf, args, depth=0)


def run(
    gf: Any, op: str, fn: Callable[..., Any], inputs: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    """``fn(*inputs)``, compiled for static ``gf`` once its signature repeats.

    ``fn`` must be a pure function of the arrays in ``inputs`` (everything else in
    ``inputs`` is static and part of the signature). Returns ``fn``'s result.
    """
    if not _ENABLED.get() or runtime.in_transform() or runtime.operation_depth() > 1:
        return fn(*inputs)
    # (without opaque nodes the freezing flatten is the plain one: use it as it is)
    leaves, td = flatten(inputs, freeze=True)
    if opaque_nodes(td):  # lazily gathered sequence steps: keep their O(1) updates
        return fn(*inputs)
    sig = (op, td, tuple((tuple(x.shape), x.dtype) for x in leaves))
    cache = _CACHES.get(gf)
    entry = cache.programs.get(sig) if cache is not None and cache.valid() else None
    if entry is None:
        seen = _SEEN.setdefault(gf, {})
        n = seen.get(sig, 0) + 1
        if len(seen) > 1024:
            seen.clear()
        seen[sig] = n
        if n < _COMPILE_AFTER:
            return fn(*inputs)
        cache = _eligible(gf, args, counted=False)
        if cache is None:
            seen[sig] = -(10**9)  # not eligible: do not ask again
            return fn(*inputs)
        box: dict[str, Any] = {}

        def pure(*lv: mx.array) -> list[mx.array]:
            a = unflatten(td, list(lv))
            with runtime.transforming():
                out = fn(*a)
            out_leaves, out_td = flatten(out)
            box["td"] = out_td
            return out_leaves

        cfn = compile_function(pure)
        if len(cache.programs) >= _MAX_PROGRAMS:
            cache.programs.pop(next(iter(cache.programs)))
        out_leaves = cfn(*leaves)
        if opaque_nodes(box["td"]):  # an output part kept outside the arrays
            seen[sig] = -(10**9)
            return unflatten(box["td"], list(out_leaves))
        cache.programs[sig] = (cfn, box)
        cache.compiled += 1
        return unflatten(box["td"], list(out_leaves))
    cfn, box = entry
    return unflatten(box["td"], list(cfn(*leaves)))


def stats(gf: Any) -> dict[str, int]:
    """How many programs were compiled for ``gf`` and are cached now."""
    cache = _CACHES.get(gf)
    if cache is None:
        return {"compiled_programs": 0, "cached_programs": 0}
    return {"compiled_programs": cache.compiled, "cached_programs": len(cache.programs)}


def clear(gf: Any = None) -> None:
    """Drop the compiled programs of ``gf`` (or of every model)."""
    if gf is None:
        _CACHES.clear()
    else:
        _CACHES.pop(gf, None)
