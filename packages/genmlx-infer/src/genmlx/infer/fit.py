"""``fit``: from a model and data to a posterior, by the best method that applies.

:func:`fit` reads the model's graph and picks, in this order:

1. **exact** — nothing latent (the evidence is the likelihood), or every latent choice
   has a finite support: :func:`~genmlx.infer.enumerate_posterior` (variable
   elimination over tensor axes);
2. **conjugate** — every latent choice is conjugate:
   :func:`~genmlx.infer.conjugate_posterior`;
3. **state space** — an ``Unfold``/``Scan`` model with a linear-Gaussian kernel:
   :func:`~genmlx.infer.kalman_filter`; with a discrete state:
   :func:`~genmlx.infer.hmm_forward_backward`;
4. **NUTS** — a static model whose latents are continuous (discrete ones with a finite
   support are summed out inside the density) and of at most ``max_nuts_dim``
   unconstrained numbers: :func:`~genmlx.infer.mcmc`;
5. otherwise **VI** for larger static models (:func:`~genmlx.infer.advi_logdensity`),
   **SMC** (a bootstrap particle filter, step by step) for sequence models, and
   importance sampling — Rao-Blackwellised when some latents are conjugate — for the
   rest.

It says which it picked and why (``result.method``, ``result.reason``, and the
reasons the earlier candidates did not apply, ``result.considered``), and returns one
:class:`FitResult`: posterior draws in one layout (``samples(n)``), the log marginal
likelihood with its kind (``"exact"``, ``"estimate"``, ``"lower_bound"`` or
``"approximate"``; ``None`` for MCMC) and a summary table. ``method=`` overrides the
choice.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.dists import beta, bernoulli
    >>> @gen
    ... def coin():
    ...     p = beta(1.0, 1.0) @ "p"
    ...     bernoulli(mx.full((4,), p)) @ "flips"
    >>> res = fit(coin, (), {"flips": mx.array([True, True, False, True])})
    >>> res.method, res.log_ml_kind
    ('conjugate', 'exact')
    >>> print(res.reason)
    every latent choice is conjugate: p: beta–bernoulli (children: flips)
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import (
    ChoiceMap,
    DynamicGenerativeFunction,
    GenerativeFunction,
    StaticModelError,
    analyze,
    logdensity,
)
from genmlx.core.address import format_address, from_path, to_path
from genmlx.core.checks import as_args, as_choicemap
from genmlx.core.random import Key, resolve_key
from genmlx.infer._ssm import find_sequence, is_sequence_gf
from genmlx.infer.diagnostics import SummaryTable

__all__ = ["METHODS", "FitResult", "fit"]

METHODS = ("enumeration", "conjugate", "kalman", "hmm", "nuts", "vi", "smc", "importance")
"""The methods :func:`fit` can use (``method="auto"`` picks one)."""


class FitResult:
    """What :func:`fit` found.

    Attributes:
        method: the method used (one of :data:`METHODS`).
        reason: why it was chosen.
        considered: ``[(method, why not)]`` for the methods tried before it.
        exact: whether the posterior and evidence are exact.
        log_ml: ``log p(y)`` (exact, an estimate, or an ELBO lower bound; ``None``
            for MCMC).
        log_ml_kind: ``"exact"``, ``"estimate"`` (unbiased on the linear scale),
            ``"lower_bound"`` (an ELBO), ``"approximate"`` (EKF/UKF) or ``None``.
        result: the underlying method's result (an ``EnumerationResult``,
            ``ConjugateResult``, ``KalmanResult``, ``HMMResult``, ``MCMCResult``,
            ``LogDensityVIResult``, ``ISResult``/``RBISResult`` or particle filter
            state).
        marginalized: ``{address: how}`` of the choices integrated out exactly.
    """

    def __init__(
        self,
        method: str,
        reason: str,
        result: Any,
        *,
        exact: bool,
        log_ml: Any,
        log_ml_kind: str | None,
        considered: list[tuple[str, str]],
        sampler: Any,
        marginalized: dict[Any, str] | None = None,
    ) -> None:
        self.method = method
        self.reason = reason
        self.result = result
        self.exact = exact
        self.log_ml = log_ml
        self.log_ml_kind = log_ml_kind
        self.considered = considered
        self._sampler = sampler
        self.batch_shape = tuple(getattr(result, "batch_shape", ()) or ())
        got = marginalized if marginalized else getattr(result, "marginalized", None)
        if isinstance(got, dict):
            self.marginalized = dict(got)
        else:  # a tuple of addresses (enumeration)
            self.marginalized = {a: method for a in (got or ())}

    @property
    def log_ml_estimate(self) -> Any:
        """:attr:`log_ml` under the name every result uses."""
        return self.log_ml

    def samples(self, n: int = 1000, *, key: Key = None) -> dict[Any, mx.array]:
        """``n`` posterior draws ``{address: [n, *shape]}`` (for a sequence model, the
        kernel's address with ``[n, T, *shape]``; a leading ``[B]`` for batched
        observations)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"samples: n must be a positive int, got {n!r}")
        out: dict[Any, mx.array] = self._sampler(n, resolve_key(key))
        return out

    def summary(self, n: int = 4000, *, key: Key = None) -> SummaryTable:
        """Posterior mean, sd and 5/50/95% quantiles per element (exact where the method
        is; from ``n`` draws otherwise — the MCMC table adds ESS and R-hat).

        Raises:
            ValueError: a batched fit (one table per data set: fit them one by one).
        """
        if self.batch_shape:
            raise ValueError(
                f"summary: this fit holds {self.batch_shape[0]} data sets (batched "
                "observations); use samples() ([B, n, ...]) or fit one data set"
            )
        own = getattr(self.result, "summary", None)
        if callable(own) and self.method in ("enumeration", "conjugate", "nuts"):
            try:
                table: SummaryTable = own()
                return table
            except (ValueError, TypeError):
                pass
        draws = self.samples(n, key=key)
        table = SummaryTable()
        table.columns = ("mean", "sd", "q5", "q50", "q95")  # type: ignore[misc,assignment]
        for a, v in draws.items():
            x = np.asarray(v.astype(mx.float32), dtype=np.float64).reshape(v.shape[0], -1)
            name = a if isinstance(a, str) else format_address(to_path(a))
            qs = np.quantile(x, [0.05, 0.5, 0.95], axis=0)
            for j in range(x.shape[1]):
                label = name if x.shape[1] == 1 and v.ndim == 1 else f"{name}[{j}]"
                table[label] = {
                    "mean": float(x[:, j].mean()),
                    "sd": float(x[:, j].std(ddof=1)),
                    "q5": float(qs[0, j]),
                    "q50": float(qs[1, j]),
                    "q95": float(qs[2, j]),
                }
        return table

    def __repr__(self) -> str:
        if self.log_ml is None:
            lml = "no evidence"
        else:
            v = mx.array(self.log_ml).tolist()
            lml = (
                f"log_ml={v:.4f} ({self.log_ml_kind})"
                if isinstance(v, float)
                else f"log_ml [{mx.array(self.log_ml).size}] ({self.log_ml_kind})"
            )
        return f"FitResult({self.method}: {lml}; {self.reason})"


# ---------------------------------------------------------------------------- helpers
def _discrete(site: Any) -> bool:
    return bool(getattr(site.gen_fn, "is_discrete", False)) or (
        site.dtype is not None and not mx.issubdtype(site.dtype, mx.floating)
    )


def _seq_wrapper(model: GenerativeFunction, args: tuple[Any, ...], obs: ChoiceMap) -> bool:
    if is_sequence_gf(model):
        return True
    if not isinstance(model, DynamicGenerativeFunction):
        return False
    try:
        find_sequence(model, args, obs, "fit")
        return True
    except StaticModelError:
        return False


def _flatten_chains(samples: dict[Any, mx.array], n: int, key: mx.array) -> dict[Any, mx.array]:
    first = next(iter(samples.values()))
    total = int(first.shape[0] * first.shape[1])
    idx = mx.random.randint(0, total, (n,), key=key)
    return {a: v.reshape(total, *v.shape[2:])[idx] for a, v in samples.items()}


def _weighted(
    values: dict[Any, mx.array], log_w: mx.array, n: int, key: mx.array
) -> dict[Any, mx.array]:
    from genmlx.infer.smc import resample_indices

    idx = resample_indices(log_w, "multinomial", n_particles=n, key=key)
    return {a: v[idx] for a, v in values.items()}


def _latent_values(trace: Any, obs: ChoiceMap) -> dict[Any, mx.array]:
    return {from_path(p): v for p, v in trace.get_choices().leaves() if p not in obs}


# ---------------------------------------------------------------------------- methods
def _run_enumeration(
    model: Any, args: Any, obs: ChoiceMap, key: mx.array, opts: dict[str, Any]
) -> FitResult:
    from genmlx.infer.enumeration import enumerate_posterior

    r = enumerate_posterior(model, args, obs, supports=opts.get("supports"), key=key)
    return FitResult(
        "enumeration",
        "",
        r,
        exact=r.exact,
        log_ml=r.log_ml,
        log_ml_kind="exact" if r.exact else "approximate",
        considered=[],
        sampler=lambda n, k: r.sample(n, key=k),
    )


def _run_conjugate(
    model: Any, args: Any, obs: ChoiceMap, key: mx.array, opts: dict[str, Any]
) -> FitResult:
    from genmlx.infer.conjugacy import conjugate_posterior

    r = conjugate_posterior(model, args, obs, plan=opts.get("plan"))
    return FitResult(
        "conjugate",
        "",
        r,
        exact=True,
        log_ml=r.log_ml,
        log_ml_kind="exact",
        considered=[],
        sampler=lambda n, k: r.sample(n, key=k),
    )


def _seq_sampler(r: Any, sm_addr: Any) -> Any:
    def draw(n: int, k: mx.array) -> dict[Any, mx.array]:
        return {sm_addr: r.sample(n, key=k)}

    return draw


def _run_kalman(
    model: Any, args: Any, obs: ChoiceMap, key: mx.array, opts: dict[str, Any]
) -> FitResult:
    from genmlx.infer.kalman import kalman_filter

    r = kalman_filter(model, args, obs, method=opts.get("kalman_method", "kalman"))
    addr = next(iter(r.marginalized))
    return FitResult(
        "kalman",
        "",
        r,
        exact=r.exact,
        log_ml=r.log_ml,
        log_ml_kind="exact" if r.exact else "approximate",
        considered=[],
        sampler=_seq_sampler(r, addr),
    )


def _run_hmm(
    model: Any, args: Any, obs: ChoiceMap, key: mx.array, opts: dict[str, Any]
) -> FitResult:
    from genmlx.infer.hmm import hmm_forward_backward

    r = hmm_forward_backward(model, args, obs)
    addr = next(iter(r.marginalized))
    return FitResult(
        "hmm",
        "",
        r,
        exact=True,
        log_ml=r.log_ml,
        log_ml_kind="exact",
        considered=[],
        sampler=_seq_sampler(r, addr),
    )


def _run_nuts(
    model: Any, args: Any, obs: ChoiceMap, key: mx.array, opts: dict[str, Any]
) -> FitResult:
    from genmlx.infer.driver import mcmc
    from genmlx.infer.enumeration import EnumeratedLogDensity, infer_discrete

    kw = {
        k: opts[k]
        for k in (
            "n_chains",
            "n_warmup",
            "n_samples",
            "max_depth",
            "target_accept",
            "domains",
            "progress",
        )
        if k in opts
    }
    kw.setdefault("n_chains", 4)
    kw.setdefault("n_warmup", 500)
    kw.setdefault("n_samples", 500)
    k1, k2 = mx.random.split(key)
    r = mcmc(model, args, obs, kernel="nuts", key=k1, warn=opts.get("warn", False), **kw)
    samples = dict(r.samples)
    marg: dict[Any, str] = {}
    if isinstance(r.logdensity, EnumeratedLogDensity):
        samples = infer_discrete(r, key=k2)
        marg = {a: "summed out inside the NUTS density" for a in r.logdensity.marginalized}
    return FitResult(
        "nuts",
        "",
        r,
        exact=False,
        log_ml=None,
        log_ml_kind=None,
        considered=[],
        sampler=lambda n, k: _flatten_chains(samples, n, k),
        marginalized=marg,
    )


def _run_vi(
    model: Any, args: Any, obs: ChoiceMap, key: mx.array, opts: dict[str, Any]
) -> FitResult:
    from genmlx.infer.logdensity_vi import advi_logdensity

    ld = opts.get("_ld") or _vector_target(model, args, obs, opts)
    k1, k2 = mx.random.split(key)
    r = advi_logdensity(
        ld,
        n_steps=opts.get("n_steps", 2000),
        n_samples=opts.get("vi_samples", 16),
        learning_rate=opts.get("learning_rate", 0.05),
        key=k1,
    )
    bound = r.elbo(2000, key=k2)
    marg = {a: "summed out inside the VI density" for a in getattr(ld, "marginalized", ())}
    return FitResult(
        "vi",
        "",
        r,
        exact=False,
        log_ml=bound,
        log_ml_kind="lower_bound",
        considered=[],
        sampler=lambda n, k: r.sample(n, key=k),
        marginalized=marg,
    )


def _run_importance(
    model: Any, args: Any, obs: ChoiceMap, key: mx.array, opts: dict[str, Any]
) -> FitResult:
    from genmlx.infer.conjugacy import conjugate_structure, rb_importance_sampling
    from genmlx.infer.importance import importance_sampling

    n = opts.get("n_particles", 10_000)
    plan = None
    g = analyze(model, args, obs) if isinstance(model, DynamicGenerativeFunction) else None
    if g is not None and g.is_static:
        plan = conjugate_structure(model, args, obs)
    if plan is not None and plan.groups:
        r = rb_importance_sampling(model, args, obs, n, plan=plan, key=key)
        vals = _latent_values(r.traces, obs)
        return FitResult(
            "importance",
            "",
            r,
            exact=False,
            log_ml=r.log_ml_estimate,
            log_ml_kind="estimate",
            considered=[],
            sampler=lambda m, k: _weighted(vals, r.log_weights, m, k),
        )
    r2 = importance_sampling(model, args, obs, n, key=key)
    vals = _latent_values(r2.traces, obs)
    return FitResult(
        "importance",
        "",
        r2,
        exact=False,
        log_ml=r2.log_ml_estimate,
        log_ml_kind="estimate",
        considered=[],
        sampler=lambda m, k: _weighted(vals, r2.log_weights, m, k),
    )


def _run_smc(
    model: Any, args: Any, obs: ChoiceMap, key: mx.array, opts: dict[str, Any]
) -> FitResult:
    """A bootstrap particle filter through the steps of a sequence model."""
    from genmlx.infer.smc import particle_filter

    sm = find_sequence(model, args, obs, "fit")
    n = opts.get("n_particles", 2000)
    keys = mx.random.split(key, 2 * sm.T + 1)
    wrapped = not is_sequence_gf(model)
    if wrapped:
        raise StaticModelError(
            "fit(method='smc'): a @gen model around a sequence takes its length from its own "
            "arguments; pass the Unfold/Scan itself"
        )

    def args_at(t: int) -> tuple[Any, ...]:
        if sm.kind == "Unfold":
            return (t, *sm.seq_args[1:])
        from genmlx.core.tree import flatten, unflatten

        leaves, td = flatten(sm.seq_args[1])
        return (sm.seq_args[0], unflatten(td, [x[:t] for x in leaves]))

    def obs_at(t: int) -> ChoiceMap:
        nodes = [
            ((t, *p), ChoiceMap(sm.obs_values[p][t]))
            for p in sm.obs_paths
            if bool(sm.obs_mask[p][t].item())
        ]
        return ChoiceMap.from_nodes(nodes, ())

    state = particle_filter(model, args_at(1), obs_at(0), n, key=keys[0])
    for t in range(1, sm.T):
        state = state.maybe_resample(n / 2, key=keys[2 * t - 1])
        state = state.step(args_at(t + 1), obs_at(t), key=keys[2 * t])
    lw = state.log_weights
    vals = _latent_values(state.traces, obs)
    return FitResult(
        "smc",
        "",
        state,
        exact=False,
        log_ml=state.log_ml_estimate,
        log_ml_kind="estimate",
        considered=[],
        sampler=lambda m, k: _weighted(vals, lw, m, k),
    )


_RUNNERS = {
    "enumeration": _run_enumeration,
    "conjugate": _run_conjugate,
    "kalman": _run_kalman,
    "hmm": _run_hmm,
    "nuts": _run_nuts,
    "vi": _run_vi,
    "smc": _run_smc,
    "importance": _run_importance,
}


def _vector_target(model: Any, args: Any, obs: ChoiceMap, opts: dict[str, Any]) -> Any:
    g = analyze(model, args, obs)
    if any(_discrete(s) for s in g.sites if s.kind == "choice" and not s.observed):
        from genmlx.infer.enumeration import enumerated_logdensity

        return enumerated_logdensity(model, args, obs, domains=opts.get("domains"))
    return logdensity(model, args, obs, domains=opts.get("domains"))


# ---------------------------------------------------------------------------- choice
def _choose(
    model: Any, args: Any, obs: ChoiceMap, opts: dict[str, Any]
) -> tuple[str, str, list[tuple[str, str]]]:
    considered: list[tuple[str, str]] = []
    if _seq_wrapper(model, args, obs):
        from genmlx.infer.hmm import hmm_forward_backward
        from genmlx.infer.kalman import kalman_filter

        try:
            hmm_forward_backward(model, args, obs)
            return (
                "hmm",
                "a sequence model with a discrete state: the forward–backward algorithm is exact",
                considered,
            )
        except StaticModelError as e:
            considered.append(("hmm", str(e)))
        try:
            kalman_filter(model, args, obs, method="kalman")
            return (
                "kalman",
                "a linear-Gaussian sequence model: the Kalman filter and smoother are exact",
                considered,
            )
        except StaticModelError as e:
            considered.append(("kalman", str(e)))
        if is_sequence_gf(model):
            return (
                "smc",
                "a sequence model that is neither linear-Gaussian nor discrete-state: "
                "a particle filter",
                considered,
            )
    if not isinstance(model, DynamicGenerativeFunction):
        considered.append(("enumeration", "not a @gen model"))
        return "importance", "not a @gen model: importance sampling from the prior", considered
    g = analyze(model, args, obs)
    if not g.is_static:
        considered.append(("enumeration", f"the model is dynamic ({g.reason})"))
        return "importance", "a dynamic model: importance sampling from the prior", considered
    latent = [s for s in g.sites if s.kind == "choice" and not s.observed]
    latent_calls = [s for s in g.sites if s.kind == "call" and s.is_latent]
    if not latent and not latent_calls:
        return "enumeration", "no latent choices: the evidence is the likelihood", considered
    if not latent_calls and all(getattr(s.gen_fn, "is_enumerable", False) for s in latent):
        from genmlx.infer.enumeration import enumerate_posterior

        try:
            opts["_enum"] = enumerate_posterior(model, args, obs, supports=opts.get("supports"))
            return (
                "enumeration",
                "every latent choice has a finite support: exact enumeration "
                "(variable elimination over tensor axes)",
                considered,
            )
        except StaticModelError as e:
            considered.append(("enumeration", str(e)))
    else:
        cont = [
            format_address(s.path) for s in latent if not getattr(s.gen_fn, "is_enumerable", False)
        ]
        considered.append(
            (
                "enumeration",
                "continuous or unbounded latent choices: " + ", ".join(cont[:4])
                if cont
                else "latent choices inside calls",
            )
        )
    from genmlx.infer.conjugacy import conjugate_structure

    plan = conjugate_structure(model, args, obs)
    opts["plan"] = plan
    if plan.fully_conjugate:
        how = "; ".join(f"{a}: {h}" for a, h in plan.marginalized.items())
        return "conjugate", f"every latent choice is conjugate: {how}", considered
    considered.append(
        (
            "conjugate",
            "not conjugate: " + (", ".join(map(str, plan.remaining[:4])) or "latent calls"),
        )
    )
    try:
        ld = _vector_target(model, args, obs, opts)
    except StaticModelError as e:
        considered.append(("nuts", str(e)))
        if plan.groups:
            return (
                "importance",
                "importance sampling with the conjugate latents integrated out (Rao-Blackwellised)",
                considered,
            )
        return "importance", "importance sampling from the prior", considered
    opts["_ld"] = ld
    limit = opts.get("max_nuts_dim", 200)
    if ld.dim <= limit:
        summed = getattr(ld, "marginalized", ())
        extra = f", with {', '.join(map(str, summed))} summed out" if summed else ""
        return (
            "nuts",
            f"a static model with {ld.dim} continuous unconstrained dimension(s){extra}: NUTS",
            considered,
        )
    considered.append(("nuts", f"{ld.dim} dimensions (more than max_nuts_dim={limit})"))
    return (
        "vi",
        f"a static model with {ld.dim} continuous dimensions: Gaussian VI (ADVI)",
        considered,
    )


def fit(
    model: GenerativeFunction,
    args: tuple[Any, ...] = (),
    observations: Any = None,
    *,
    method: str = "auto",
    key: Key = None,
    **options: Any,
) -> FitResult:
    """Posterior inference by the best method that applies (see the module docstring).

    Args:
        model: the model.
        args: its arguments.
        observations: observed choices (ChoiceMap or dict).
        method: ``"auto"`` or one of :data:`METHODS` to override the choice.
        key: PRNG key.
        **options: passed to the method: ``n_chains``, ``n_warmup``, ``n_samples``,
            ``max_depth``, ``target_accept``, ``domains`` (NUTS); ``n_steps``,
            ``learning_rate`` (VI); ``n_particles`` (importance, SMC); ``supports``
            (enumeration); ``kalman_method`` (``"kalman"``, ``"ekf"``, ``"ukf"``);
            ``max_nuts_dim`` (default 200).

    Returns:
        A :class:`FitResult`.

    Raises:
        ValueError: an unknown method or option.
        StaticModelError: the forced method does not apply (its message says why).
    """
    allowed = {
        "n_chains",
        "n_warmup",
        "n_samples",
        "max_depth",
        "target_accept",
        "domains",
        "n_steps",
        "learning_rate",
        "vi_samples",
        "n_particles",
        "supports",
        "kalman_method",
        "max_nuts_dim",
        "progress",
        "warn",
        "plan",
    }
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"fit: unknown option(s) {sorted(unknown)}; known: {sorted(allowed)}")
    if method != "auto" and method not in METHODS:
        raise ValueError(f"fit: method must be 'auto' or one of {METHODS}, got {method!r}")
    args = as_args(args, "fit")
    obs = as_choicemap(observations, "fit", "observations")
    key = resolve_key(key)
    opts = dict(options)
    if method == "auto":
        method, reason, considered = _choose(model, args, obs, opts)
    else:
        reason, considered = "chosen by the caller (method=...)", []
    if method == "enumeration" and "_enum" in opts:
        r = opts["_enum"]
        res = FitResult(
            "enumeration",
            "",
            r,
            exact=r.exact,
            log_ml=r.log_ml,
            log_ml_kind="exact" if r.exact else "approximate",
            considered=[],
            sampler=lambda n, k: r.sample(n, key=k),
        )
    else:
        res = _RUNNERS[method](model, args, obs, key, opts)
    res.reason = reason
    res.considered = considered
    return res


del math
