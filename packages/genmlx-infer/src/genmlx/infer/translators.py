"""Trace translators (Gen.jl's): move traces between models with correct weights.

A *trace translator* maps a trace ``t`` of a model ``p`` to a trace ``t'`` of a model
``p'`` (possibly the same) and returns a log weight ``w`` such that, if ``t`` is
properly weighted for ``p``, ``(t', w_old + w)`` is properly weighted for ``p'``. The
deterministic part is a *transform*, a plain Python function of a :class:`TransformIO`
that reads values from the old trace (and from the forward proposal's choices) and
writes the new trace's choices (and the backward proposal's):

.. code-block:: python

    def split(io):
        c = io.read_old("level")
        u = io.read_fwd("u")
        io.write_new("left", c + u)
        io.write_new("right", c - u)

Values whose dtype is floating are *continuous* (pass ``continuous=False`` to treat
one as a discrete copy); the transform must be a bijection between the continuous
values read and written, and its Jacobian is computed automatically (``mx.jvp``, one
column per number read) so that

.. math::

    w = \\log p'(t') + \\log q_{bwd}(v; t') − \\log p(t) − \\log q_{fwd}(u; t)
        + \\log |\\det J_f(t, u)|.

* :class:`DeterministicTraceTranslator` — no auxiliary choices (a change of variables
  between two models' spaces);
* :class:`GeneralTraceTranslator` — forward and backward proposals;
* :class:`SimpleExtendingTraceTranslator` — the new trace extends the old one by
  ``update`` with proposed choices (the particle filter's step);
* :class:`SymmetricTraceTranslator` — ``p' = p`` with an involution (an MCMC move:
  :func:`translator_mh` accepts it with probability ``min(1, e^w)``).

Every translator works on single and batched traces (each particle on its own, all in
one vectorised computation). :func:`translate_particles` applies one to every particle
of a :class:`~genmlx.infer.ParticleFilterState` — the move of coarse-to-fine SMC:
infer at a coarse resolution, translate the particles to a finer model, reweight,
resample and rejuvenate, and repeat.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.dists import normal
    >>> @gen
    ... def p_old():
    ...     normal(0.0, 1.0) @ "x"
    >>> @gen
    ... def p_new():
    ...     normal(0.0, 2.0) @ "y"
    >>> def double(io):
    ...     io.write_new("y", 2.0 * io.read_old("x"))
    >>> tr = p_old.generate((), choicemap({"x": 0.5}), key=mx.random.key(0)).trace
    >>> new, w = DeterministicTraceTranslator(p_new, (), None, double)(tr, key=mx.random.key(1))
    >>> float(new["y"]), round(float(w), 5)   # p'(2x)·2 = p(x): the weight is 0
    (1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Trace, runtime
from genmlx.core.address import Address, Path, format_address, to_path
from genmlx.core.batching import vmap_traces
from genmlx.core.checks import as_args, as_choicemap
from genmlx.core.choicemap import as_array
from genmlx.core.diff import Diff, diff_args
from genmlx.core.random import Key, resolve_key
from genmlx.infer._traces import accept_reject
from genmlx.infer.kernel_info import MHInfo
from genmlx.infer.metropolis import _lu_log_abs_det

__all__ = [
    "DeterministicTraceTranslator",
    "GeneralTraceTranslator",
    "SimpleExtendingTraceTranslator",
    "SymmetricTraceTranslator",
    "TransformIO",
    "translate_particles",
    "translator_mh",
]

Transform = Callable[["TransformIO"], Any]


class TransformIO:
    """What a transform reads and writes (see the module docstring).

    Methods: ``read_old(addr)``, ``read_fwd(addr)`` (the forward proposal's choices),
    ``write_new(addr, value)``, ``write_bwd(addr, value)`` (the backward proposal's),
    ``copy_old(addr)`` (write the old value at the same address of the new trace,
    outside the Jacobian), and ``old_args`` (the old trace's arguments).
    """

    def __init__(
        self,
        old: ChoiceMap,
        fwd: ChoiceMap,
        old_args: tuple[Any, ...],
        override: dict[tuple[str, Path], mx.array] | None = None,
    ) -> None:
        self._old = old
        self._fwd = fwd
        self.old_args = old_args
        self._override = override or {}
        self.reads: list[tuple[str, Path, mx.array, bool]] = []
        self.writes: list[tuple[str, Path, mx.array, bool]] = []

    def _read(self, src: str, addr: Address, continuous: bool | None) -> mx.array:
        path = to_path(addr)
        cm = self._old if src == "old" else self._fwd
        if not cm.has_value(path):
            where = "old trace" if src == "old" else "forward proposal's choices"
            raise KeyError(
                f"translator transform: no value at {format_address(path)} in the {where}"
            )
        v = as_array(cm[path])
        cont = mx.issubdtype(v.dtype, mx.floating) if continuous is None else bool(continuous)
        if any(s == src and p == path for s, p, _, _ in self.reads):
            raise ValueError(f"translator transform: {format_address(path)} read twice from {src}")
        v = self._override.get((src, path), v)
        self.reads.append((src, path, v, cont))
        return v

    def read_old(self, addr: Address, *, continuous: bool | None = None) -> mx.array:
        """The old trace's value at ``addr``."""
        return self._read("old", addr, continuous)

    def read_fwd(self, addr: Address, *, continuous: bool | None = None) -> mx.array:
        """The forward proposal's value at ``addr``."""
        return self._read("fwd", addr, continuous)

    def _write(self, dst: str, addr: Address, value: Any, continuous: bool | None) -> None:
        path = to_path(addr)
        v = as_array(value)
        if any(d == dst and p == path for d, p, _, _ in self.writes):
            raise ValueError(f"translator transform: {format_address(path)} written twice to {dst}")
        cont = mx.issubdtype(v.dtype, mx.floating) if continuous is None else bool(continuous)
        self.writes.append((dst, path, v, cont))

    def write_new(self, addr: Address, value: Any, *, continuous: bool | None = None) -> None:
        """Set the new trace's choice at ``addr``."""
        self._write("new", addr, value, continuous)

    def write_bwd(self, addr: Address, value: Any, *, continuous: bool | None = None) -> None:
        """Set the backward proposal's choice at ``addr``."""
        self._write("bwd", addr, value, continuous)

    def copy_old(self, addr: Address, new_addr: Address | None = None) -> None:
        """Copy the old value at ``addr`` to the new trace unchanged (a discrete copy:
        identity, outside the Jacobian; continuous copies contribute a factor 1)."""
        v = self.read_old(addr, continuous=False)
        self._write("new", addr if new_addr is None else new_addr, v, False)


def _run_transform(
    f: Transform, old: ChoiceMap, fwd: ChoiceMap, old_args: tuple[Any, ...]
) -> tuple[ChoiceMap, ChoiceMap, mx.array]:
    """Apply ``f``; return the new choices, the backward choices and ``log |det J|``."""
    io = TransformIO(old, fwd, old_args)
    f(io)
    inputs = [(s, p, v) for s, p, v, c in io.reads if c]
    outputs = [(d, p, v) for d, p, v, c in io.writes if c]
    new_cm = ChoiceMap.from_nodes([(p, ChoiceMap(v)) for d, p, v, _ in io.writes if d == "new"], ())
    bwd_cm = ChoiceMap.from_nodes([(p, ChoiceMap(v)) for d, p, v, _ in io.writes if d == "bwd"], ())
    n_in = sum(int(v.size) for _, _, v in inputs)
    n_out = sum(int(v.size) for _, _, v in outputs)
    if n_in != n_out:
        raise ValueError(
            f"trace translator: the transform reads {n_in} continuous numbers and writes "
            f"{n_out}; it must be a bijection between equal dimensions (add auxiliary "
            "choices with the forward/backward proposals)"
        )
    if n_in == 0:
        return new_cm, bwd_cm, mx.array(0.0)
    shapes = [v.shape for _, _, v in inputs]
    sizes = [int(v.size) for _, _, v in inputs]
    x0 = mx.concatenate([v.reshape(-1).astype(mx.float32) for _, _, v in inputs])

    def fx(x: mx.array) -> mx.array:
        over: dict[tuple[str, Path], mx.array] = {}
        off = 0
        for (s, p, v), sh, n in zip(inputs, shapes, sizes):
            over[(s, p)] = x[off : off + n].reshape(sh).astype(v.dtype)
            off += n
        io2 = TransformIO(old, fwd, old_args, over)
        f(io2)
        outs = [v for _, _, v, c in io2.writes if c]
        return mx.concatenate([o.reshape(-1).astype(mx.float32) for o in outs])

    cols = mx.vmap(lambda e: mx.jvp(fx, [x0], [e])[1][0])(mx.eye(n_in))
    return new_cm, bwd_cm, _lu_log_abs_det(cols.T)


def _propose(
    q: GenerativeFunction | None, trace: Trace, q_args: tuple[Any, ...], key: mx.array
) -> tuple[ChoiceMap, mx.array]:
    if q is None:
        return ChoiceMap.empty(), mx.array(0.0)
    u, log_q, _ = q.propose((trace, *q_args), key=key)
    return u, log_q


def _assess(
    q: GenerativeFunction | None, trace: Trace, q_args: tuple[Any, ...], v: ChoiceMap
) -> mx.array:
    if q is None:
        if not v.is_empty:
            raise ValueError(
                "trace translator: the transform wrote backward choices but there is no "
                "backward proposal"
            )
        return mx.array(0.0)
    return q.assess((trace, *q_args), v)[0]


def _check_model(gf: Any, what: str) -> None:
    if not isinstance(gf, GenerativeFunction):
        raise TypeError(f"{what} must be a GenerativeFunction, got {type(gf).__name__}")


def _check_transform(f: Any) -> None:
    if not callable(f):
        raise TypeError("trace translator: the transform must be a function of a TransformIO")


class GeneralTraceTranslator:
    """A translator with forward and backward proposals (Gen.jl's ``GeneralTraceTranslator``).

    ``u ~ q_forward(t, *q_forward_args)``; the transform maps ``(t, u)`` to the new
    model's latent choices and the backward choices ``v``; the new trace is
    ``p_new.generate(new_args, new_choices ∪ new_observations)`` (every latent choice of
    the new model must be written), and the weight is the module docstring's ``w``.

    Args:
        p_new: the new model; new_args: its arguments; new_observations: its
            observed choices.
        q_forward, q_forward_args: proposal of the auxiliary choices, called as
            ``q_forward(old_trace, *q_forward_args)`` (``None``: none).
        q_backward, q_backward_args: the reverse proposal, called as
            ``q_backward(new_trace, *q_backward_args)`` (``None``: none).
        transform: the bijection (a function of a :class:`TransformIO`).
    """

    def __init__(
        self,
        p_new: GenerativeFunction,
        new_args: tuple[Any, ...],
        new_observations: Any,
        q_forward: GenerativeFunction | None,
        q_forward_args: tuple[Any, ...],
        q_backward: GenerativeFunction | None,
        q_backward_args: tuple[Any, ...],
        transform: Callable[[TransformIO], Any],
    ) -> None:
        _check_model(p_new, "GeneralTraceTranslator: p_new")
        for q, name in ((q_forward, "q_forward"), (q_backward, "q_backward")):
            if q is not None:
                _check_model(q, f"GeneralTraceTranslator: {name}")
        _check_transform(transform)
        self.p_new = p_new
        self.new_args = as_args(new_args, "GeneralTraceTranslator")
        self.new_observations = as_choicemap(
            new_observations, "GeneralTraceTranslator", "new_observations"
        )
        self.q_forward, self.q_forward_args = q_forward, tuple(q_forward_args)
        self.q_backward, self.q_backward_args = q_backward, tuple(q_backward_args)
        self.transform = transform

    def _one(self, key: mx.array, trace: Trace) -> tuple[Trace, mx.array, mx.array]:
        k1, k2 = mx.random.split(key)
        u, log_qf = _propose(self.q_forward, trace, self.q_forward_args, k1)
        new_cm, v, logdet = _run_transform(self.transform, trace.get_choices(), u, trace.args)
        cons = new_cm.merge(self.new_observations) if not self.new_observations.is_empty else new_cm
        new, gw = self.p_new.generate(self.new_args, cons, key=k2)
        log_qb = _assess(self.q_backward, new, self.q_backward_args, v)
        w = new.score + log_qb - trace.score - log_qf + logdet
        # generate's weight is the score only when every choice was given
        gap = mx.abs(gw - new.score) / (1.0 + mx.abs(new.score))
        return new, w, gap

    def __call__(self, trace: Trace, *, key: Key = None) -> tuple[Trace, mx.array]:
        """Translate ``trace`` (single or batched): ``(new_trace, log_weight)``."""
        if not isinstance(trace, Trace):
            raise TypeError(f"trace translator: expected a Trace, got {type(trace).__name__}")
        key = resolve_key(key)
        if trace.batch_shape:
            with runtime.transforming():
                new, w, gap = vmap_traces(
                    self._one, trace, key=key, result_args=tuple(self.new_args)
                )
        else:
            new, w, gap = self._one(key, trace)
        if not bool(mx.all(gap <= 1e-4).item()):
            raise ValueError(
                "GeneralTraceTranslator: the transform did not write every latent choice of the "
                "new model (its generate sampled some); write them all"
            )
        return new, w


def _batched_new(
    body: Callable[[mx.array, Trace], tuple[Trace, mx.array]],
    trace: Trace,
    key: mx.array,
    p_new: GenerativeFunction,
    new_args: tuple[Any, ...],
) -> tuple[Trace, mx.array]:
    """Run ``body`` per particle; the new traces belong to another model, so their
    arguments are restored from ``new_args``."""
    with runtime.transforming():
        new, w = vmap_traces(body, trace, key=key, result_args=tuple(new_args))
    return new, w


class DeterministicTraceTranslator(GeneralTraceTranslator):
    """A change of variables between two models (no auxiliary choices):
    ``w = log p'(f(t)) − log p(t) + log |det J_f|``."""

    def __init__(
        self,
        p_new: GenerativeFunction,
        new_args: tuple[Any, ...],
        new_observations: Any,
        transform: Callable[[TransformIO], Any],
    ) -> None:
        super().__init__(p_new, new_args, new_observations, None, (), None, (), transform)


class SimpleExtendingTraceTranslator:
    """Extend a trace by ``update`` with proposed choices (Gen.jl's
    ``SimpleExtendingTraceTranslator``): ``u ~ q_forward(t, *q_forward_args)``,
    ``(t', w_u) = update(t, u ∪ new_observations, new_args, argdiffs)``,
    ``w = w_u − log q_forward(u; t)``. Without a proposal, new choices come from the
    model and ``w`` is the update weight (the bootstrap particle filter's step)."""

    def __init__(
        self,
        new_args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...] | None,
        new_observations: Any,
        q_forward: GenerativeFunction | None = None,
        q_forward_args: tuple[Any, ...] = (),
    ) -> None:
        if q_forward is not None:
            _check_model(q_forward, "SimpleExtendingTraceTranslator: q_forward")
        self.new_args = as_args(new_args, "SimpleExtendingTraceTranslator")
        self.argdiffs = argdiffs
        self.new_observations = as_choicemap(
            new_observations, "SimpleExtendingTraceTranslator", "new_observations"
        )
        self.q_forward, self.q_forward_args = q_forward, tuple(q_forward_args)

    def __call__(self, trace: Trace, *, key: Key = None) -> tuple[Trace, mx.array]:
        """Translate ``trace`` (single or batched): ``(new_trace, log_weight)``."""
        key = resolve_key(key)
        diffs = self.argdiffs if self.argdiffs is not None else diff_args(trace.args, self.new_args)
        obs = self.new_observations

        def one(k: mx.array, t: Trace) -> tuple[Trace, mx.array]:
            k1, k2 = mx.random.split(k)
            u, log_q = _propose(self.q_forward, t, self.q_forward_args, k1)
            cons = u.merge(obs) if not obs.is_empty else u
            new, w, _, _ = t.gen_fn.update(t, cons, self.new_args, diffs, key=k2)
            return new, w - log_q

        if trace.batch_shape:
            return _batched_new(one, trace, key, trace.gen_fn, self.new_args)
        return one(key, trace)


class SymmetricTraceTranslator:
    """An involutive move on one model (Gen.jl's ``SymmetricTraceTranslator``):
    ``u ~ q(t, *q_args)``; the transform (an involution on ``(t, u)``) writes the
    changed choices and the reverse auxiliary choices ``v``; ``t' = update(t, written)``
    and ``w = log p(t') − log p(t) + log q(v; t') − log q(u; t) + log |det J|``."""

    def __init__(
        self,
        q: GenerativeFunction,
        q_args: tuple[Any, ...],
        involution: Callable[[TransformIO], Any],
    ) -> None:
        _check_model(q, "SymmetricTraceTranslator: q")
        _check_transform(involution)
        self.q, self.q_args, self.involution = q, tuple(q_args), involution

    def _one(self, key: mx.array, trace: Trace) -> tuple[Trace, mx.array]:
        k1, k2 = mx.random.split(key)
        u, log_qf = _propose(self.q, trace, self.q_args, k1)
        written, v, logdet = _run_transform(self.involution, trace.get_choices(), u, trace.args)
        new, w, _, _ = trace.gen_fn.update(trace, written, key=k2)
        log_qb = _assess(self.q, new, self.q_args, v)
        return new, w + log_qb - log_qf + logdet

    def __call__(self, trace: Trace, *, key: Key = None) -> tuple[Trace, mx.array]:
        """Translate ``trace`` (single or batched): ``(new_trace, log_weight)``."""
        key = resolve_key(key)
        if trace.batch_shape:
            with runtime.transforming():
                return vmap_traces(self._one, trace, key=key)  # type: ignore[no-any-return]
        return self._one(key, trace)


def translator_mh(
    trace: Trace, translator: SymmetricTraceTranslator, *, key: Key = None
) -> tuple[Trace, MHInfo]:
    """An MCMC kernel from a symmetric translator: accept ``t'`` with probability
    ``min(1, e^w)`` (per chain for a batched trace). Returns ``(trace, info)`` with
    ``info`` an :class:`~genmlx.infer.kernel_info.MHInfo`."""
    if not isinstance(translator, SymmetricTraceTranslator):
        raise TypeError(
            "translator_mh: needs a SymmetricTraceTranslator (a move within one model); use "
            "translate_particles for translators between models"
        )
    key = resolve_key(key)

    def one(k: mx.array, t: Trace) -> tuple[Trace, MHInfo]:
        k1, k2 = mx.random.split(k)
        new, w = translator._one(k1, t)
        return accept_reject(k2, w, new, t)

    if trace.batch_shape:
        with runtime.transforming():
            return vmap_traces(one, trace, key=key)  # type: ignore[no-any-return]
    return one(key, trace)


def translate_particles(state: Any, translator: Any, *, key: Key = None) -> Any:
    """Apply a translator to every particle of a particle filter state: the traces are
    translated (in one batched computation) and ``log w_i += w_i``.

    Works with :class:`~genmlx.infer.ParticleFilterState` (coarse-to-fine SMC: translate
    the particles to the next model, then ``resample``/``rejuvenate``) and returns a
    state of the same type; its ``log_ml_estimate`` then estimates the new model's
    evidence.
    """
    if not callable(translator):
        raise TypeError("translate_particles: translator must be a trace translator")
    new, w = translator(state.traces, key=key)
    return state._replace(traces=new, log_weights=state.log_weights + w)
