"""Hidden Markov models: the forward–backward algorithm on ``Unfold``/``Scan`` models.

:func:`hmm_forward_backward` takes a sequence model (an ``Unfold``/``Scan``, or a
``@gen`` model around one) whose kernel has **one latent choice** ``z_t`` with a finite
support (``categorical``, ``bernoulli``, ``uniform_discrete``, ... — a scalar) that it
returns as the new state, and observed choices of any distribution. By replaying the
kernel it builds, for every step,

* the transition matrix ``log A_t[i, j] = log p(z_t = v_j | z_{t−1} = v_i)`` (the kernel
  run with each support value ``v_i`` as the incoming state),
* the initial distribution ``log p(z_0 = v_j | init)``,
* the emission log-likelihoods ``log p(y_t | z_t = v_j)`` (the kernel run with each
  value of ``z_t``; a missing observation contributes nothing),

vectorised over the support values and — when the kernel's Python code allows — over
the steps, then runs the forward and backward recursions in log space: the exact log
marginal likelihood, filtered and smoothed marginals, the most probable path
(Viterbi) and exact posterior samples of the whole path (forward filtering, backward
sampling). Batched observations (``batch_shape == (B,)``) run ``B`` sequences at once.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.dists import categorical
    >>> from genmlx.combinators import Unfold
    >>> TR = mx.array([[0.9, 0.1], [0.2, 0.8]])
    >>> EM = mx.array([[0.8, 0.2], [0.3, 0.7]])
    >>> @gen
    ... def step(t, z):
    ...     z = categorical(TR[z]) @ "z"
    ...     categorical(EM[z]) @ "y"
    ...     return z
    >>> obs = choicemap({(t, "y"): y for t, y in enumerate([0, 0, 1, 1, 1])})
    >>> res = hmm_forward_backward(Unfold(step), (5, mx.array(0)), obs)
    >>> res.viterbi().tolist()
    [0, 0, 1, 1, 1]
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

from genmlx.core import (
    ChoiceMap,
    Distribution,
    GenerativeFunction,
    StaticModelError,
    Trace,
    runtime,
)
from genmlx.core.address import Path, format_address, from_path
from genmlx.core.choicemap import as_array
from genmlx.core.random import Key, resolve_key
from genmlx.core.tree import flatten
from genmlx.infer._ssm import stack_steps
from genmlx.infer.kalman import _batched_values, _prepare

__all__ = ["HMMResult", "hmm_arrays", "hmm_forward_backward"]


def _forward(log_init: mx.array, log_A: mx.array, log_e: mx.array) -> tuple[mx.array, mx.array]:
    """Log forward messages ``[T, K]`` (``α_t = log p(z_t, y_{0:t})``) and ``log p(y)``."""
    T = log_e.shape[0]
    a = log_init + log_e[0]
    out = [a]
    for t in range(1, T):
        a = mx.logsumexp(a[:, None] + log_A[t], axis=0) + log_e[t]
        out.append(a)
    alpha = mx.stack(out)
    return alpha, mx.logsumexp(alpha[-1])


def _backward(log_A: mx.array, log_e: mx.array) -> mx.array:
    T, K = log_e.shape
    b = mx.zeros((K,))
    out = [b]
    for t in range(T - 1, 0, -1):
        b = mx.logsumexp(log_A[t] + (log_e[t] + b)[None, :], axis=1)
        out.append(b)
    return mx.stack(out[::-1])


def _viterbi(log_init: mx.array, log_A: mx.array, log_e: mx.array) -> mx.array:
    T = log_e.shape[0]
    d = log_init + log_e[0]
    back = []
    for t in range(1, T):
        s = d[:, None] + log_A[t]
        back.append(mx.argmax(s, axis=0))
        d = mx.max(s, axis=0) + log_e[t]
    z = mx.argmax(d)
    path = [z]
    for t in range(T - 2, -1, -1):
        z = back[t][z]
        path.append(z)
    return mx.stack(path[::-1]).astype(mx.int32)


def _ffbs(alpha: mx.array, log_A: mx.array, n: int, key: mx.array) -> mx.array:
    T, K = alpha.shape
    keys = mx.random.split(key, T)

    def draw(logits: mx.array, k: mx.array) -> mx.array:
        g = mx.random.gumbel(logits.shape, key=k)
        return mx.argmax(mx.where(logits > -mx.inf, logits + g, -mx.inf), axis=-1)

    z = draw(mx.broadcast_to(alpha[-1], (n, K)), keys[T - 1])
    out = [z]
    for t in range(T - 2, -1, -1):
        logits = alpha[t][None, :] + log_A[t + 1][:, z].T  # [n, K]
        z = draw(logits, keys[t])
        out.append(z)
    return mx.stack(out[::-1], axis=1).astype(mx.int32)


class HMMResult:
    """Result of :func:`hmm_forward_backward` / :func:`hmm_arrays`.

    Attributes:
        log_ml: ``log p(y_{0:T−1})``, exact (``[B]`` for batched observations).
        filtered: ``p(z_t | y_{0:t})``, ``[B?, T, K]``.
        smoothed: ``p(z_t | y_{0:T−1})``, ``[B?, T, K]``.
        support: the state values ``[K]`` (column ``j`` of the marginals is value ``j``).
        log_init, log_transition ``[T, K, K]``, log_emission ``[B?, T, K]``: the arrays the
            recursions ran on.
        marginalized: ``{address: how}``; weight_kind: ``"marginal"``; method: ``"hmm"``.
    """

    weight_kind = "marginal"
    method = "hmm"
    exact = True

    def __init__(
        self,
        log_init: mx.array,
        log_A: mx.array,
        log_e: mx.array,
        support: mx.array,
        batch: tuple[int, ...],
        sm: Any,
        state: Path | None,
    ) -> None:
        self.log_init, self.log_transition, self.log_emission = log_init, log_A, log_e
        self.support = support
        self.batch_shape = batch

        def one(le: mx.array) -> tuple[mx.array, ...]:
            alpha, lml = _forward(log_init, log_A, le)
            beta = _backward(log_A, le)
            filt = mx.exp(alpha - mx.logsumexp(alpha, axis=1, keepdims=True))
            sm_ = alpha + beta
            smooth = mx.exp(sm_ - mx.logsumexp(sm_, axis=1, keepdims=True))
            return alpha, lml, filt, smooth

        with runtime.transforming():
            out = mx.vmap(one)(log_e) if batch else one(log_e)
        self._alpha, self.log_ml, self.filtered, self.smoothed = out
        self._sm = sm
        self._state = state
        where = format_address(state).strip("'") if state is not None else "z"
        self.marginalized = {
            from_path(state)
            if state is not None
            else "z": f"hmm forward–backward (the state {where} at every step)"
        }

    @property
    def log_ml_estimate(self) -> mx.array:
        """The same as :attr:`log_ml` (exact)."""
        return self.log_ml

    def viterbi(self) -> mx.array:
        """The most probable state path (values, ``[B?, T]``)."""
        if self.batch_shape:
            idx = mx.vmap(lambda le: _viterbi(self.log_init, self.log_transition, le))(
                self.log_emission
            )
        else:
            idx = _viterbi(self.log_init, self.log_transition, self.log_emission)
        return self.support[idx]

    def sample(self, n: int, *, key: Key = None) -> mx.array:
        """``n`` exact posterior draws of the path (values, ``[B?, n, T]``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"sample: n must be a positive int, got {n!r}")
        k = resolve_key(key)
        if self.batch_shape:
            keys = mx.random.split(k, self.batch_shape[0])
            with runtime.transforming():
                idx = mx.vmap(lambda a, kk: _ffbs(a, self.log_transition, n, kk))(self._alpha, keys)
        else:
            idx = _ffbs(self._alpha, self.log_transition, n, k)
        return self.support[idx]

    def traces(self, n: int, *, key: Key = None) -> Trace:
        """``n`` posterior draws as one batched trace of the model."""
        if self._sm is None or self._state is None or self.batch_shape:
            raise ValueError("traces: needs an unbatched result computed from a model")
        sm = self._sm
        k1, k2 = mx.random.split(resolve_key(key))
        zs = self.sample(n, key=k1)
        nodes = []
        for t in range(sm.T):
            nodes.append((sm.address(t, self._state), ChoiceMap(zs[:, t])))
            for p in sm.obs_paths:
                if bool(sm.obs_mask[p][t].item()):
                    v = sm.obs_values[p][t]
                    nodes.append((sm.address(t, p), ChoiceMap(mx.broadcast_to(v, (n, *v.shape)))))
        cm = ChoiceMap.from_nodes(nodes, (n,))
        return sm.model.vgenerate(sm._model_args, cm, n, key=k2).trace  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        lml = self.log_ml.tolist()
        lml_s = f"{lml:.4f}" if isinstance(lml, float) else f"[{self.log_ml.size} values]"
        T, K = self.log_emission.shape[-2:]
        return f"HMMResult(log_ml={lml_s}, T={T}, K={K})"


def hmm_arrays(log_init: Any, log_transition: Any, log_emission: Any) -> HMMResult:
    """Forward–backward on explicit arrays (the declaration API).

    Args:
        log_init: ``[K]`` log initial probabilities.
        log_transition: ``[K, K]`` (or ``[T, K, K]``): ``log p(z_t = j | z_{t−1} = i)`` at
            ``[i, j]`` (row ``0`` of a per-step array is unused).
        log_emission: ``[T, K]`` (or ``[B, T, K]``) ``log p(y_t | z_t = j)``.

    Example:
        >>> import mlx.core as mx
        >>> r = hmm_arrays(mx.log(mx.array([0.5, 0.5])), mx.log(mx.array([[0.9, 0.1], [0.1, 0.9]])),
        ...                mx.log(mx.array([[0.9, 0.2], [0.9, 0.2]])))
        >>> round(float(mx.exp(r.log_ml)), 4)   # α₀ = (.45, .1); α₁ = (.415·.9, .135·.2)
        0.4005
    """
    li = as_array(log_init).astype(mx.float32)
    le = as_array(log_emission).astype(mx.float32)
    la = as_array(log_transition).astype(mx.float32)
    T, K = int(le.shape[-2]), int(le.shape[-1])
    if la.ndim == 2:
        la = mx.broadcast_to(la, (T, K, K))
    if tuple(la.shape) != (T, K, K) or tuple(li.shape) != (K,):
        raise ValueError(
            f"hmm_arrays: expected log_init [K], log_transition [K, K] or [T, K, K] and "
            f"log_emission [T, K] with K = {K}, T = {T}; got {tuple(li.shape)}, {tuple(la.shape)}"
        )
    batch = (int(le.shape[0]),) if le.ndim == 3 else ()
    return HMMResult(li, la, le, mx.arange(K), batch, None, None)


def _is_enumerable(site: Any) -> bool:
    return bool(getattr(site.gen_fn, "is_enumerable", False)) and not getattr(
        site.gen_fn, "event_ndim", 0
    )


def hmm_forward_backward(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: Any,
) -> HMMResult:
    """Exact inference in a discrete-state sequence model (see the module docstring).

    Args:
        model: ``Unfold(kernel)``, ``Scan(kernel)`` or a ``@gen`` model around one.
        args: the model's arguments.
        observations: observed choices at ``(t, addr)``; batched for ``B`` sequences.

    Returns:
        An :class:`HMMResult`.

    Raises:
        StaticModelError: the kernel does not have one finite-support latent choice
            returned as the new state, or that choice's support changes with the state.
    """
    op = "hmm_forward_backward"
    sm, obs, batch = _prepare(model, args, observations, op)
    lat = sm.latent_sites
    if len(lat) != 1 or not _is_enumerable(lat[0]) or lat[0].shape != ():
        names = ", ".join(
            f"{format_address(s.path)} ({getattr(s.gen_fn, 'name', s.gen_fn)})" for s in lat
        )
        raise StaticModelError(
            f"{op}: the kernel must have exactly one latent choice, a scalar with a finite "
            f"support (categorical, bernoulli, ...), returned as the new state; its latent "
            f"choices are: {names or 'none'}"
        )
    state = lat[0].path
    init = sm.init
    obs0 = sm.obs_at(0)
    captured: dict[str, Any] = {}

    def provide_first(path: Path, dist: Distribution, params: tuple[Any, ...]) -> mx.array:
        sup = dist.support(*params)
        captured["support"] = sup
        return sup[0]

    sm.run(0, init, obs0, provide_first, op)
    support = captured["support"]
    if support.ndim != 1:
        raise StaticModelError(
            f"{op}: the state's support must be a list of scalars, got {tuple(support.shape)}"
        )
    K = int(support.shape[0])
    # the carry must be the state itself
    for j in (0, K - 1):

        def fixed(path: Path, dist: Distribution, params: tuple[Any, ...], j: int = j) -> mx.array:
            return support[j]

        _, new = sm.run(0, init, obs0, fixed, op)
        leaves, _ = flatten(new)
        if (
            len(leaves) != 1
            or leaves[0].shape != ()
            or not bool(mx.all(leaves[0] == support[j]).item())
        ):
            raise StaticModelError(
                f"{op}: the kernel must return its state choice {format_address(state)} as the "
                "new state (Unfold: `return z`; Scan: `return z, out`)"
            )
    il, itd = flatten(init)
    if len(il) != 1 or il[0].shape != ():
        raise StaticModelError(f"{op}: the initial state must be a scalar array")

    def row(t: Any, carry: Any, obs: ChoiceMap) -> tuple[mx.array, mx.array]:
        """log p(z_t = · | carry) and the support seen there."""
        got: dict[str, Any] = {}

        def provide(path: Path, dist: Distribution, params: tuple[Any, ...]) -> mx.array:
            got["lp"] = dist.log_prob(support, *params)
            got["sup"] = dist.support(*params) if not runtime.in_transform() else support
            return support[0]

        sm.run(t, carry, obs, provide, op)
        return got["lp"].astype(mx.float32), got["sup"]

    log_init, sup0 = row(0, init, obs0)
    carry_vals = support.astype(il[0].dtype)
    sups = [sup0] + [row(min(1, sm.T - 1), carry_vals[i], obs0)[1] for i in range(K)]
    for s in sups:
        if tuple(s.shape) != (K,) or not bool(mx.all(s == support).item()):
            raise StaticModelError(
                f"{op}: the support of the state choice {format_address(state)} changes with "
                "the incoming state; the forward algorithm needs one support for every step"
            )

    def trans_at(t: Any) -> tuple[mx.array]:
        obs = sm.obs_at(t)
        return (mx.vmap(lambda c: row(t, c, obs)[0])(carry_vals),)

    (log_A,) = stack_steps(trans_at, sm)
    values, masks = _batched_values(sm, obs, batch)

    def emit_at(t: Any, vals: dict[Path, mx.array]) -> mx.array:
        cm = ChoiceMap.from_nodes([(p, ChoiceMap(vals[p])) for p in sm.obs_paths], ())

        def one(zv: mx.array) -> mx.array:
            recs, _ = sm.run(t, init, cm, lambda p, d, pa: zv, op)
            tot = mx.array(0.0)
            for r in recs:
                if r.observed:
                    lp = mx.sum(r.dist.log_prob(r.value, *r.params))
                    tot = tot + mx.where(masks[r.path][t], lp, 0.0)
            return tot

        return mx.vmap(one)(support)

    def at(t: Any) -> tuple[mx.array]:
        if batch:
            vals_t = {p: v[:, t] for p, v in values.items()}
            return (mx.vmap(lambda vv: emit_at(t, vv))(vals_t),)
        return (emit_at(t, {p: v[t] for p, v in values.items()}),)

    log_e = stack_steps(at, sm)[0]  # [T, B?, K]
    if batch:
        log_e = mx.swapaxes(log_e, 0, 1)
    res = HMMResult(log_init, log_A, log_e, support, batch, sm, state)
    if float(sm.outer_log_prob) != 0.0:
        res.log_ml = res.log_ml + sm.outer_log_prob
    return res


del math
