"""Metropolis–Hastings kernels: resimulation and custom-proposal MH, involutive MCMC.

Every kernel maps a trace to ``(new_trace, info)`` with ``info`` an
:class:`~genmlx.infer.kernel_info.MHInfo` (``accepted``, ``accept_prob``). A *batched* trace
(``batch_shape == (n,)``) is ``n`` independent chains: each is accepted or rejected on
its own, and all of them run through one vectorised computation. Kernels are defined
per chain: the batched kernel runs the single-chain kernel once under ``mx.vmap``
(:func:`genmlx.core.vmap_traces`) with chain ``i`` using key
``mx.random.split(key, n)[i]``, so chain ``i`` of a batched call equals the single-trace
call with that key.

Kernels use no ``.item()`` on their hot path, so a whole chain of ``K`` steps can be
wrapped in :func:`genmlx.core.compile`. Exceptions (documented where they occur): a
single-trace move whose address structure changes picks the accepted trace in Python,
and ``involutive_mh(..., check=True)`` evaluates its round-trip check.

Acceptance ratio of the three kernels:

* resimulation MH (``mh(trace, selection)``): ``log α = w`` with ``w`` the
  ``regenerate`` weight;
* custom-proposal MH (``mh(trace, proposal, args)``): ``c ~ q(·; t, args)``,
  ``(t', w, _, d) = update(t, c)``,
  ``log α = w + log q(d; t', args) − log q(c; t, args)``;
* involutive MH: ``u ~ q(·; t)``, ``(t', u') = f(t, u)`` with ``f`` an involution,
  ``log α = w + log q(u'; t') − log q(u; t) + log |det ∂f/∂(t, u)|``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Selection, Trace
from genmlx.core.address import Path, format_address
from genmlx.core.batching import vmap_traces
from genmlx.core.random import Key
from genmlx.infer import _checks as checks
from genmlx.infer._traces import accept_reject
from genmlx.infer.kernel_info import MHInfo

__all__ = ["Involution", "involutive_mh", "mh"]

_Pairs = list[tuple[Path, mx.array]]

Involution = Callable[[ChoiceMap, ChoiceMap, tuple[Any, ...]], tuple[ChoiceMap, ChoiceMap]]


# ---------------------------------------------------------------------- MH
def _mh_selection_body(key: mx.array, trace: Trace, sel: Selection) -> tuple[Trace, MHInfo]:
    k_move, k_acc = mx.random.split(key, 2)
    new, w, _ = trace.gen_fn.regenerate(trace, sel, key=k_move)
    return accept_reject(k_acc, w, new, trace)


def _mh_proposal_body(
    key: mx.array, trace: Trace, proposal: GenerativeFunction, pargs: tuple[Any, ...]
) -> tuple[Trace, MHInfo]:
    k_prop, k_upd, k_acc = mx.random.split(key, 3)
    choices, log_q_fwd, _ = proposal.propose((trace, *pargs), key=k_prop)
    new, w, _, discard = trace.gen_fn.update(trace, choices, key=k_upd)
    log_q_bwd, _ = proposal.assess((new, *pargs), discard)
    return accept_reject(k_acc, w + log_q_bwd - log_q_fwd, new, trace)


def mh(
    trace: Trace,
    selection_or_proposal: Selection | GenerativeFunction,
    proposal_args: tuple[Any, ...] = (),
    *,
    key: Key = None,
) -> tuple[Trace, MHInfo]:
    """One Metropolis–Hastings step: resimulation MH or custom-proposal MH.

    * ``mh(trace, selection)``: the selected choices are resampled from the model
      (``regenerate``); the acceptance log ratio is the regenerate weight
      ``log α = Σ_{unselected} [log p(t'_a) − log p(t_a)]``.
    * ``mh(trace, proposal, proposal_args)``: ``proposal`` is a generative function
      called as ``proposal(trace, *proposal_args)`` whose choices are new values for
      addresses of the model. With ``c ~ q(·; t)``, ``(t', w, _, d) = update(t, c)``
      (``d`` the overwritten old values),

      .. math:: \\log α = w + \\log q(d; t') − \\log q(c; t).

    Args:
        trace: the current state, single or batched (``n`` independent chains).
        selection_or_proposal: a :class:`~genmlx.core.Selection` or a proposal.
        proposal_args: extra arguments of the proposal (after the trace).
        key: PRNG key.

    Returns:
        ``(new_trace, info)``: an :class:`~genmlx.infer.kernel_info.MHInfo` whose
        ``accepted`` and ``accept_prob`` have shape ``trace.batch_shape``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> tr, _ = model.vgenerate((), {"y": 1.0}, 100, key=mx.random.key(0))
        >>> tr, info = mh(tr, select("mu"), key=mx.random.key(1))
        >>> info.accepted.shape
        (100,)
    """
    checks.trace(trace, "mh")
    key = checks.key(key, "mh")
    if isinstance(selection_or_proposal, Selection):
        if proposal_args:
            raise ValueError("mh: proposal_args given with a selection (resimulation MH)")
        return vmap_traces(_mh_selection_body, trace, (selection_or_proposal,), key=key)
    if isinstance(selection_or_proposal, GenerativeFunction):
        if not isinstance(proposal_args, (tuple, list)):
            raise TypeError("mh: proposal_args must be a tuple")
        return vmap_traces(
            _mh_proposal_body, trace, (selection_or_proposal, tuple(proposal_args)), key=key
        )
    raise TypeError(
        "mh: the second argument must be a Selection (resimulation MH) or a generative "
        f"function (custom proposal), got {type(selection_or_proposal).__name__}"
    )


# ---------------------------------------------------------------------- involutive MH
def _is_continuous(x: mx.array) -> bool:
    return mx.issubdtype(x.dtype, mx.floating)


def _lu_log_abs_det(a: mx.array) -> mx.array:
    """``log |det a|`` by Gaussian elimination with partial pivoting.

    MLX's ``linalg.lu``/``qr`` have no ``vmap`` rule, so this uses plain array ops
    (a Python loop over the ``d`` columns, fine for the small ``d`` of a move).
    """
    d = a.shape[-1]
    total = mx.array(0.0)
    rows = mx.arange(d)
    for j in range(d):
        col = mx.where(rows >= j, mx.abs(a[:, j]), -1.0)
        p = mx.argmax(col)
        # swap rows j and p
        perm = mx.where(rows == j, p, mx.where(rows == p, j, rows))
        a = mx.take(a, perm, axis=0)
        piv = a[j, j]
        total = total + mx.log(mx.abs(piv))
        factors = mx.where(rows > j, a[:, j] / piv, 0.0)
        a = a - factors[:, None] * a[j][None, :]
    return total


def _flat_continuous(cm: ChoiceMap) -> tuple[_Pairs, _Pairs]:
    cont: _Pairs = []
    disc: _Pairs = []
    for path, v in cm.leaves():
        (cont if _is_continuous(v) else disc).append((path, v))
    return cont, disc


def _build(pairs: _Pairs) -> ChoiceMap:
    out = ChoiceMap.empty()
    for p, v in pairs:
        out = out.set_submap(p, ChoiceMap(v))
    return out


def _involution_jacobian(
    involution: Involution,
    t_choices: ChoiceMap,
    u: ChoiceMap,
    pargs: tuple[Any, ...],
) -> tuple[ChoiceMap, ChoiceMap, mx.array]:
    """Apply the involution and return ``log |det J|`` of its continuous part.

    The input vector is the continuous leaves of the trace choices that the involution
    writes (the addresses in its first output) followed by the continuous leaves of
    ``u``; the output vector is the continuous leaves of ``(t', u')`` in the same layout.
    Discrete leaves and unwritten trace choices are held fixed.
    """
    new_t, new_u = involution(t_choices, u, pargs)
    written = {p for p, _ in new_t.leaves()}
    t_in: _Pairs = []
    t_fixed: _Pairs = []
    for p, v in t_choices.leaves():
        (t_in if p in written and _is_continuous(v) else t_fixed).append((p, v))
    u_cont, u_disc = _flat_continuous(u)
    x_pairs = t_in + u_cont
    if not x_pairs:
        return new_t, new_u, mx.array(0.0)
    shapes = [v.shape for _, v in x_pairs]
    sizes = [v.size for _, v in x_pairs]
    n_t = len(t_in)
    x0 = mx.concatenate([v.reshape(-1) for _, v in x_pairs])

    def f(x: mx.array) -> mx.array:
        parts, off = [], 0
        for s, sz in zip(shapes, sizes):
            parts.append(x[off : off + sz].reshape(s))
            off += sz
        tc = _build(t_fixed + [(p, v) for (p, _), v in zip(t_in, parts[:n_t])])
        uc = _build(u_disc + [(p, v) for (p, _), v in zip(u_cont, parts[n_t:])])
        nt, nu = involution(tc, uc, pargs)
        outs = [v for _, v in nt.leaves() if _is_continuous(v)]
        outs += [v for _, v in nu.leaves() if _is_continuous(v)]
        if not outs:
            return mx.zeros((0,))
        return mx.concatenate([o.reshape(-1) for o in outs])

    dim = x0.size
    cols = []
    for j in range(dim):
        e = (mx.arange(dim) == j).astype(x0.dtype)
        _, (col,) = mx.jvp(f, [x0], [e])
        cols.append(col)
    jac = mx.stack(cols, axis=1)
    if jac.shape[0] != dim:
        raise ValueError(
            "involutive_mh: the involution's continuous part maps "
            f"{dim} numbers to {jac.shape[0]}; it must be a bijection of equal dimension "
            "(write every trace address it changes and return u' with u's layout)"
        )
    return new_t, new_u, _lu_log_abs_det(jac)


def _roundtrip_error(
    key: mx.array,
    trace: Trace,
    proposal: GenerativeFunction,
    pargs: tuple[Any, ...],
    involution: Involution,
) -> mx.array:
    """max |f(f(t, u)) − (t, u)| over the written trace choices and ``u`` (``u`` drawn
    with the same key as the kernel's move)."""
    k_prop = mx.random.split(key, 3)[0]
    u, _, _ = proposal.propose((trace, *pargs), key=k_prop)
    t_choices = trace.get_choices()
    new_t, new_u = involution(t_choices, u, pargs)
    merged = t_choices
    for p, v in new_t.leaves():
        merged = merged.set_submap(p, ChoiceMap(v))
    back_t, back_u = involution(merged, new_u, pargs)
    orig = {p: v for p, v in t_choices.leaves()}
    u_orig = dict(u.leaves())
    back_u_d = dict(back_u.leaves())
    if back_u_d.keys() != u_orig.keys() or any(p not in orig for p, _ in back_t.leaves()):
        raise ValueError(
            "involutive_mh(check=True): applying the involution twice changed the "
            "addresses of the choices (trace: "
            + ", ".join(format_address(p) for p, _ in back_t.leaves())
            + ")"
        )
    err = mx.array(0.0)
    pairs = [(v, orig[p]) for p, v in back_t.leaves()] + [
        (back_u_d[p], v) for p, v in u_orig.items()
    ]
    for x, y in pairs:
        d = mx.abs(x.astype(mx.float32) - y.astype(mx.float32))
        err = mx.maximum(err, mx.max(d) if d.size else mx.array(0.0))
    return err


def _involutive_body(
    key: mx.array,
    trace: Trace,
    proposal: GenerativeFunction,
    pargs: tuple[Any, ...],
    involution: Involution,
) -> tuple[Trace, MHInfo]:
    k_prop, k_upd, k_acc = mx.random.split(key, 3)
    u, log_q_fwd, _ = proposal.propose((trace, *pargs), key=k_prop)
    t_choices = trace.get_choices()
    new_t, new_u, log_det = _involution_jacobian(involution, t_choices, u, pargs)
    new, w, _, _ = trace.gen_fn.update(trace, new_t, key=k_upd)
    log_q_bwd, _ = proposal.assess((new, *pargs), new_u)
    log_alpha = w + log_q_bwd - log_q_fwd + log_det
    return accept_reject(k_acc, log_alpha, new, trace)


def involutive_mh(
    trace: Trace,
    proposal: GenerativeFunction,
    proposal_args: tuple[Any, ...],
    involution: Involution,
    *,
    key: Key = None,
    check: bool = False,
) -> tuple[Trace, MHInfo]:
    """Involutive MCMC (Neklyudov et al. 2020; Cusumano-Towner et al.'s Gen version).

    Auxiliary choices ``u ~ q(·; t, *proposal_args)`` are drawn by ``proposal`` (called
    as ``proposal(trace, *proposal_args)``); the involution, a plain function
    ``involution(trace_choices, u_choices, proposal_args) -> (new_trace_choices,
    new_u_choices)`` with ``f(f(t, u)) = (t, u)``, returns the trace choices it changes
    and the backward auxiliary choices. The trace moves by ``update(t, new_trace_choices)``
    (weight ``w``) and

    .. math::

        \\log α = w + \\log q(u'; t') − \\log q(u; t) + \\log |\\det J_f(t, u)|.

    The Jacobian is computed automatically with ``mx.jvp`` (one column per input
    number) over the continuous (floating) leaves of the written trace choices and of
    ``u``; discrete leaves are held fixed (they contribute a permutation, det 1). Its
    ``log |det|`` comes from an LU factorisation with partial pivoting in plain MLX
    ops (``mx.linalg.lu`` has no ``vmap`` rule).

    Args:
        trace: the current state, single or batched.
        proposal: generative function of ``(trace, *proposal_args)`` drawing ``u``.
        proposal_args: extra proposal arguments (also passed to the involution).
        involution: the involution on choice maps (pure MLX, differentiable in its
            continuous inputs).
        key: PRNG key.
        check: apply the involution twice and raise ``ValueError`` unless it returns its
            input (evaluates arrays: a debugging aid, not for compiled chains).

    Returns:
        ``(new_trace, info)`` with ``info`` an :class:`~genmlx.infer.kernel_info.MHInfo`.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> @gen
        ... def aux(tr):
        ...     normal(0.0, 0.3) @ "u"
        >>> def scale(t, u, _):   # (mu, u) -> (mu * e^u, -u)
        ...     return (choicemap({"mu": t["mu"] * mx.exp(u["u"])}),
        ...             choicemap({"u": -u["u"]}))
        >>> tr, _ = model.generate((), {"y": 1.0}, key=mx.random.key(0))
        >>> tr, info = involutive_mh(tr, aux, (), scale, key=mx.random.key(1))
    """
    checks.trace(trace, "involutive_mh")
    if not isinstance(proposal, GenerativeFunction):
        raise TypeError(
            f"involutive_mh: proposal must be a GenerativeFunction, got {type(proposal).__name__}"
        )
    if not callable(involution):
        raise TypeError("involutive_mh: involution must be a function")
    if not isinstance(proposal_args, (tuple, list)):
        raise TypeError("involutive_mh: proposal_args must be a tuple")
    key = checks.key(key, "involutive_mh")
    pargs = tuple(proposal_args)
    if check:
        # evaluated in Python (a debugging aid): not for compiled chains
        err = vmap_traces(_roundtrip_error, trace, (proposal, pargs, involution), key=key)
        worst = float(mx.max(err).astype(mx.float32).item())  # type: ignore[arg-type]
        if not worst <= 1e-4:
            raise ValueError(
                "involutive_mh(check=True): applying the involution twice did not return "
                f"its input (max abs difference {worst:.3g})"
            )
    return vmap_traces(_involutive_body, trace, (proposal, pargs, involution), key=key)
