"""Helpers shared by the guide-based variational methods (:mod:`genmlx.infer.bbvi`,
:mod:`genmlx.infer.vimco`): argument checks, the guide's parameter store, and the
batched log importance weights ``log p(x, y) - log q(x; θ)`` of guide draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlx.core as mx

from genmlx.core import constraints as C
from genmlx.core import runtime
from genmlx.core.address import format_address, from_path
from genmlx.core.choicemap import ChoiceMap, choicemap
from genmlx.core.errors import AddressError, ConstraintError
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.params import ParamStore, use_params
from genmlx.core.random import Key, resolve_key
from genmlx.infer._vi_sites import find_sites

__all__ = [
    "Values",
    "as_obs",
    "broadcast",
    "check_baseline",
    "check_call",
    "check_domains",
    "check_estimator",
    "check_guide",
    "init_store",
    "log_weights",
    "loo_mean",
    "prepare",
]

Values = dict[str, mx.array]


def as_obs(observations: Any, op: str) -> ChoiceMap:
    """Observations as an unbatched ChoiceMap (``None``: empty)."""
    if observations is None:
        return ChoiceMap.empty()
    if isinstance(observations, ChoiceMap):
        obs = observations
    elif isinstance(observations, Mapping):
        obs = choicemap(observations)
    else:
        raise TypeError(
            f"{op}: observations must be a ChoiceMap (or a dict), got {type(observations).__name__}"
        )
    if obs.batch_shape:
        raise ValueError(f"{op}: observations must be unbatched (shared by every sample)")
    return obs


def check_call(
    model: Any, args: Any, guide: Any, guide_args: Any, op: str
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Model and guide are generative functions; both argument lists are tuples."""
    if not isinstance(model, GenerativeFunction):
        raise TypeError(f"{op}: model must be a GenerativeFunction, got {type(model).__name__}")
    if not isinstance(guide, GenerativeFunction):
        raise TypeError(
            f"{op}: guide must be a GenerativeFunction (a @gen function with param(...)s), "
            f"got {type(guide).__name__}"
        )
    for name, a in (("args", args), ("guide_args", guide_args)):
        if not isinstance(a, (tuple, list)):
            raise TypeError(f"{op}: {name} must be a tuple of arguments, got {type(a).__name__}")
    return tuple(args), tuple(guide_args)


def check_estimator(estimator: Any, allowed: tuple[str, ...], op: str) -> str:
    """``estimator`` if it is one of ``allowed``."""
    if estimator not in allowed:
        raise ValueError(
            f"{op}: unknown estimator {estimator!r}; choose one of {', '.join(map(repr, allowed))}"
        )
    return str(estimator)


def check_baseline(baseline: Any, allowed: tuple[str, ...], n_samples: int, op: str) -> str:
    """``baseline`` if it is one of ``allowed`` (leave-one-out needs two samples)."""
    if baseline not in allowed:
        raise ValueError(
            f"{op}: unknown baseline {baseline!r}; choose one of {', '.join(map(repr, allowed))}"
        )
    if baseline == "leave_one_out" and n_samples < 2:
        raise ValueError(f"{op}: baseline='leave_one_out' needs n_samples >= 2")
    return str(baseline)


def init_store(
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...],
    params: Any,
    key: mx.array,
    op: str,
    require: bool = True,
) -> ParamStore:
    """Every parameter the guide reads, at ``params``' value where given, else at its
    ``param(name, init)`` init (found by running the guide once)."""
    given = params if isinstance(params, ParamStore) else ParamStore(params or {})
    inits = ParamStore.initialize(guide, guide_args, key)
    store = inits.update(given.values_dict) if len(given) else inits
    if require and not len(store):
        raise ValueError(
            f"{op}: the guide reads no parameters, so there is nothing to fit; read them "
            "with param('name', init) in its body"
        )
    return store


def check_guide(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...],
    store: ParamStore,
    reparam: bool,
    key: mx.array,
    op: str,
) -> None:
    """One eager run: guide choices + observations are exactly the model's choices, and
    (for reparameterised gradients) every guide choice has a differentiable sampler."""
    k_sites, k_sim = mx.random.split(key, 2)
    with use_params(store):
        sites = find_sites(guide, guide_args, ChoiceMap.empty(), k_sites, op)
        tr = guide.simulate(guide_args, key=k_sim)
    if reparam:
        for s in sites:
            bad = s.dist is not None and (s.dist.is_discrete or not s.dist.has_reparam)
            if bad or not mx.issubdtype(s.value.dtype, mx.floating):
                what = s.dist.name if s.dist is not None else f"dtype {s.value.dtype}"
                raise ValueError(
                    f"{op}: estimator='reparam' differentiates through the guide's samples, "
                    f"but the guide's choice at {format_address(s.path)} ({what}) has no "
                    "reparameterised sampler; use estimator='reinforce' (score-function "
                    "gradients), or a reparameterisable distribution for that choice"
                )
    try:
        cons = tr.get_choices().merge(obs)
    except AddressError as e:
        raise AddressError(
            f"{op}: the guide samples an observed address ({e}); the guide must sample "
            "only the model's latent choices"
        ) from e
    try:
        model.assess(args, cons)
    except (ConstraintError, AddressError) as e:
        raise type(e)(
            f"{op}: the guide's choices together with the observations must be exactly "
            f"the model's random choices: {e}"
        ) from e
    check_domains(model, args, cons, sites, key, op)


def check_domains(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    cons: ChoiceMap,
    guide_sites: list[Any],
    key: mx.array,
    op: str,
) -> None:
    """Refuse a guide choice that ranges over the whole real line where the model's
    choice lives on a bounded domain (its draws outside would have zero density):
    the common mistake of a ``normal`` guide for a positive or bounded latent."""
    by_path = {s.path: s for s in guide_sites if s.dist is not None}
    try:
        model_sites = find_sites(model, args, cons, key, op)
    except Exception:
        return
    for ms in model_sites:
        gs = by_path.get(ms.path)
        if gs is None or ms.dist is None or ms.dist.is_discrete:
            continue
        m_dom = ms.dist.domain(*(ms.params or ()))
        g_dom = gs.dist.domain(*(gs.params or ()))
        if m_dom is None or g_dom is None or m_dom.is_discrete:
            continue
        if isinstance(g_dom, type(C.real)) and not isinstance(m_dom, type(C.real)):
            raise ValueError(
                f"{op}: the guide's choice at {format_address(ms.path)} ({gs.dist.name}) "
                f"ranges over the whole real line, but the model's choice there "
                f"({ms.dist.name}) lives on {m_dom!r}, so guide draws outside it have zero "
                "density (an ELBO of -inf). Give the guide a choice on the same domain, "
                f"e.g. transformed(normal, constraints.{_domain_hint(m_dom)})(m, s) @ "
                f"{from_path(ms.path)!r} (genmlx.dists.transformed with a "
                "genmlx.core.constraints domain), or use advi, which maps every domain "
                "automatically"
            )


def _domain_hint(dom: Any) -> str:
    name = repr(dom)
    return name if "(" in name or name in ("positive", "unit_interval", "simplex") else "positive"


def broadcast(obs: ChoiceMap, n: int) -> ChoiceMap:
    """Shared observations given a particle axis, to merge with batched choices."""
    if obs.is_empty:
        return obs
    return obs.map(lambda v: mx.broadcast_to(v, (n, *v.shape))).with_batch_shape((n,))


def log_weights(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...],
    values: Values,
    n: int,
    key: mx.array,
    reparam: bool,
) -> tuple[mx.array, mx.array]:
    """``(log w, log q)`` of ``n`` guide draws, each of shape ``[n]``.

    Reparameterised: the draws are differentiable functions of ``values``. Otherwise the
    draws are held fixed (``stop_gradient``) and ``log q`` is re-scored by ``assess`` so
    that only its explicit dependence on ``values`` is differentiated.
    """
    store = ParamStore(values)
    with runtime.transforming():
        with use_params(store):
            tr = guide.vsimulate(guide_args, n, key=key)
        choices = tr.get_choices()
        if reparam:
            log_q = tr.score
        else:
            choices = choices.map(mx.stop_gradient)
            with use_params(store):
                log_q, _ = guide.assess(guide_args, choices)
        log_p, _ = model.assess(args, choices.merge(broadcast(obs, n)))
    return log_p - log_q, log_q


def loo_mean(f: mx.array) -> mx.array:
    """Leave-one-out means along the last axis: ``(Σ_j f_j - f_i) / (K - 1)``."""
    k = f.shape[-1]
    return (mx.sum(f, axis=-1, keepdims=True) - f) / (k - 1)


def prepare(
    model: Any,
    args: Any,
    observations: Any,
    guide: Any,
    guide_args: Any,
    params: Any,
    key: Key,
    op: str,
) -> tuple[tuple[Any, ...], tuple[Any, ...], ChoiceMap, ParamStore, mx.array]:
    """Checked arguments, observations, parameter store and a key, for the estimators."""
    args, guide_args = check_call(model, args, guide, guide_args, op)
    obs = as_obs(observations, op)
    k_init, k_run = mx.random.split(resolve_key(key), 2)
    store = init_store(guide, guide_args, params, k_init, op, require=False)
    return args, guide_args, obs, store, k_run
