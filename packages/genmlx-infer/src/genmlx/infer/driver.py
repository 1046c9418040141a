"""From a model to posterior draws in one call: the MCMC driver.

:func:`mcmc` picks the latent choices of a model given its observations, initialises
the chains, adapts the kernel (step size and mass, per chain by default), samples,
and returns an :class:`MCMCResult` with the draws in ArviZ's ``[chain, draw, ...]``
layout, a summary table and convergence warnings::

    result = mcmc(model, args, observations, n_chains=4, n_warmup=500, n_samples=1000)
    print(result.summary())

On a **static** model (:func:`genmlx.core.analyze`) with a gradient kernel (``"nuts"``,
``"hmc"``, ``"mala"``) the chains run on one flat unconstrained vector per chain —
every continuous latent mapped from its domain by its bijector, the log-Jacobian
included (:func:`genmlx.core.logdensity`) — and no trace is built until the end, so a
positive, bounded, simplex or ordered parameter needs no hand-written transform. Any
other kernel (``"mh"``, or a callable ``kernel(trace, *, key) -> (trace, info)``), or a
dynamic model, runs on batched traces.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.dists import normal, half_normal
    >>> @gen
    ... def model(ys):
    ...     mu = normal(0.0, 5.0) @ "mu"
    ...     sigma = half_normal(2.0) @ "sigma"
    ...     normal(mu, sigma) @ "ys"
    >>> ys = mx.array([1.2, 0.8, 1.9, 1.1, 0.4, 1.5])
    >>> res = mcmc(model, (ys,), choicemap({"ys": ys}), n_chains=2, n_warmup=200,
    ...            n_samples=200, key=mx.random.key(0), warn=False)
    >>> res.samples["mu"].shape, res.samples["sigma"].shape
    ((2, 200), (2, 200))
    >>> bool(mx.all(res.samples["sigma"] > 0))
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from genmlx.core import (
    ChoiceMap,
    GenerativeFunction,
    ImproperPriorError,
    LogDensity,
    Selection,
    StaticModelError,
    Trace,
    analyze,
    logdensity,
    runtime,
)
from genmlx.core.address import format_address, from_path
from genmlx.core.checks import as_args, as_choicemap
from genmlx.core.compile import compile_function
from genmlx.core.random import resolve_key
from genmlx.infer.adaptation import DualAveraging, estimate_mass, find_step_size, windows
from genmlx.infer.diagnostics import SummaryTable, ess_bulk, ess_mean, ess_tail, rhat
from genmlx.infer.integrators import Metric, leapfrog
from genmlx.infer.nuts_tree import NUTSState, chain_normal, chain_uniform, nuts_transition

__all__ = ["MCMCResult", "MCMCWarning", "mcmc"]


class MCMCWarning(UserWarning):
    """A convergence problem found after sampling (R-hat, ESS, divergences)."""


class MCMCResult:
    """Posterior draws and what the sampler saw.

    Attributes:
        samples: ``{address: array [chain, draw, *shape]}`` (constrained values).
        stats: ``{name: array [chain, draw]}`` per-draw sampler statistics
            (``accept_prob``, and for NUTS ``n_leapfrog``, ``depth``, ``diverging``).
        step_size: adapted step size per chain (gradient kernels).
        mass: adapted mass matrix (per chain ``[C, d]`` / ``[C, d, d]`` or pooled).
        kernel: the kernel's name.
        warnings: convergence warnings (also emitted as :class:`MCMCWarning`).
        positions: unconstrained draws ``[chain, draw, d]`` (vector kernels).
        logdensity: the :class:`~genmlx.core.LogDensity` sampled (vector kernels).
        n_chains: number of chains; ``n_samples``: kept draws per chain.
        layout: ``"chain_draw"`` — the diagnostics (:func:`~genmlx.infer.ess_bulk`,
            :func:`~genmlx.infer.rhat`, :func:`~genmlx.infer.summary`) read the result
            directly.
    """

    layout = "chain_draw"

    def __init__(
        self,
        samples: dict[Any, mx.array],
        stats: dict[str, mx.array],
        *,
        kernel: str,
        step_size: mx.array | None = None,
        mass: mx.array | None = None,
        positions: mx.array | None = None,
        logdensity: LogDensity | None = None,
        model: GenerativeFunction | None = None,
        args: tuple[Any, ...] = (),
        observations: ChoiceMap | None = None,
        timing: dict[str, float] | None = None,
    ) -> None:
        self.samples = samples
        self.stats = stats
        self.kernel = kernel
        self.step_size = step_size
        self.mass = mass
        self.positions = positions
        self.logdensity = logdensity
        self.model = model
        self.args = args
        self.observations = observations if observations is not None else ChoiceMap.empty()
        self.timing = timing or {}
        self.warnings: list[str] = []
        first = next(iter(samples.values()))
        self.n_chains = int(first.shape[0])
        self.n_samples = int(first.shape[1])

    # ------------------------------------------------------------------ diagnostics
    def _named(self) -> dict[str, mx.array]:
        out = {}
        for addr, v in self.samples.items():
            name = (
                addr
                if isinstance(addr, str)
                else format_address(addr if isinstance(addr, tuple) else (addr,))
            )
            if (
                mx.issubdtype(v.dtype, mx.floating)
                or v.dtype == mx.bool_
                or mx.issubdtype(v.dtype, mx.integer)
            ):
                out[name] = v.astype(mx.float32)
        return out

    def summary(self, prob: float = 0.9) -> SummaryTable:
        """ArviZ-style table: mean, sd, the central ``prob`` interval's quantiles,
        ``ess_bulk``, ``ess_tail``, ``r_hat`` and the Monte Carlo standard error of the
        mean (``mcse_mean = sd / √ESS_mean``)."""
        table = SummaryTable()
        lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
        cols = (
            "mean",
            "sd",
            f"q{100 * lo:g}",
            "q50",
            f"q{100 * hi:g}",
            "mcse_mean",
            "ess_bulk",
            "ess_tail",
            "r_hat",
        )
        table.columns = cols  # type: ignore[misc, assignment]
        for name, v in self._named().items():
            x = v.reshape(v.shape[0], v.shape[1], -1)
            flat = np.asarray(x.reshape(-1, x.shape[2]), dtype=np.float64)
            eb, et, em, rh = (
                np.asarray(f(x, layout="chain_draw")).reshape(-1)
                for f in (ess_bulk, ess_tail, ess_mean, rhat)
            )
            sd = flat.std(axis=0, ddof=1)
            qs = np.quantile(flat, [lo, 0.5, hi], axis=0)
            for i in range(x.shape[2]):
                label = (
                    name
                    if x.shape[2] == 1 and v.ndim == 2
                    else f"{name}[{_idx(i, tuple(v.shape[2:]))}]"
                )
                table[label] = {
                    "mean": float(flat[:, i].mean()),
                    "sd": float(sd[i]),
                    cols[2]: float(qs[0, i]),
                    "q50": float(qs[1, i]),
                    cols[4]: float(qs[2, i]),
                    "mcse_mean": float(sd[i] / math.sqrt(max(em[i], 1.0))),
                    "ess_bulk": float(eb[i]),
                    "ess_tail": float(et[i]),
                    "r_hat": float(rh[i]),
                }
        return table

    def print_summary(self, prob: float = 0.9) -> None:
        """Print :meth:`summary` and the number of divergent transitions."""
        print(self.summary(prob))
        if "diverging" in self.stats:
            n = int(mx.sum(self.stats["diverging"]).item())  # type: ignore[arg-type]
            print(f"\nNumber of divergences: {n}")

    def check(self, *, rhat_max: float = 1.01, ess_min: float = 100.0) -> list[str]:
        """Convergence checks: R-hat above ``rhat_max``, bulk or tail ESS below
        ``ess_min``, divergent transitions. Returns the messages."""
        msgs = []
        table = self.summary()
        bad_r = [k for k, r in table.items() if self.n_chains > 1 and r["r_hat"] > rhat_max]
        if bad_r:
            msgs.append(
                f"R-hat above {rhat_max} for {_some(bad_r)}: the chains disagree; run longer, "
                "reparameterise, or check the model"
            )
        low = [k for k, r in table.items() if min(r["ess_bulk"], r["ess_tail"]) < ess_min]
        if low:
            msgs.append(
                f"effective sample size below {ess_min:g} for {_some(low)}: estimates are "
                "unreliable; run more draws or more chains"
            )
        if "diverging" in self.stats:
            n = int(mx.sum(self.stats["diverging"]).item())  # type: ignore[arg-type]
            if n:
                total = self.n_chains * self.n_samples
                msgs.append(
                    f"{n} of {total} transitions after warm-up diverged: the posterior has "
                    "regions the step size cannot resolve (try target_accept=0.95 or a "
                    "non-centred parameterisation)"
                )
        return msgs

    def to_inference_data(self) -> Any:
        """ArviZ ``InferenceData`` (needs ``arviz``) with the draws as ``posterior`` and
        the sampler statistics as ``sample_stats``."""
        try:
            import arviz
        except ImportError as e:
            raise ImportError("to_inference_data needs ArviZ: pip install arviz") from e
        post = {
            (
                k if isinstance(k, str) else ".".join(map(str, k if isinstance(k, tuple) else (k,)))
            ): np.asarray(v)
            for k, v in self.samples.items()
        }
        stats = {k: np.asarray(v) for k, v in self.stats.items()}
        return arviz.from_dict(posterior=post, sample_stats=stats)

    def traces(self, draw: int = -1) -> Trace:
        """The chains' traces at one kept draw (a batched trace, one row per chain)."""
        if self.model is None:
            raise ValueError("traces: this result does not know its model")
        cm = ChoiceMap.from_nodes(
            (
                ((a,) if not isinstance(a, tuple) else a, ChoiceMap(v[:, draw]))
                for a, v in self.samples.items()
            ),
            (self.n_chains,),
        )
        if not self.observations.is_empty:
            n = self.n_chains
            obs = self.observations.map(lambda v: mx.broadcast_to(v, (n, *v.shape)))
            cm = cm.merge(obs.with_batch_shape((n,)))
        return self.model.vgenerate(self.args, cm, self.n_chains, key=0).trace

    def __repr__(self) -> str:
        names = ", ".join(map(str, self.samples))
        return (
            f"MCMCResult({self.kernel}, {self.n_chains} chains x {self.n_samples} draws: {names})"
        )


def _idx(i: int, shape: tuple[int, ...]) -> str:
    out = []
    for dim in reversed(shape):
        out.append(i % dim)
        i //= dim
    return ", ".join(str(j) for j in reversed(out))


def _some(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# ---------------------------------------------------------------------------- kernels
class _VecKernel(NamedTuple):
    """A vector kernel: ``step(state, key, eps, metric) -> (state, accept_prob, extras)``."""

    name: str
    step: Callable[..., Any]


def _compiled_fn(fn: Callable[..., Any]) -> Callable[..., Any]:
    return compile_function(fn)


def _hmc_program(vg: Callable[..., Any], metric: Metric, n_leapfrog: int) -> Callable[..., Any]:
    def step(
        key: mx.array,
        x0: mx.array,
        ld0: mx.array,
        g0: mx.array,
        eps: mx.array,
        marr: tuple[mx.array, ...],
        inputs: tuple[mx.array, ...],
    ) -> Any:
        ks = mx.vmap(lambda k: mx.random.split(k, 2))(mx.random.split(key, x0.shape[0]))
        k_mom, k_acc = ks[:, 0], ks[:, 1]
        p0 = metric.momentum(chain_normal(k_mom, x0.shape[1]), marr)
        x, p, ld, g = x0, p0, ld0, g0
        for _ in range(n_leapfrog):
            x, p, ld, g = leapfrog(vg, inputs, metric, marr, x, p, g, eps)
        log_alpha = ld - ld0 - metric.kinetic(p, marr) + metric.kinetic(p0, marr)
        log_alpha = mx.where(mx.isnan(log_alpha), -mx.inf, log_alpha)
        acc = mx.log(chain_uniform(k_acc)) < log_alpha
        am = acc[:, None]
        return (
            mx.where(am, x, x0),
            mx.where(acc, ld, ld0),
            mx.where(am, g, g0),
            mx.exp(mx.minimum(log_alpha, 0.0)),
        )

    return _compiled_fn(step)


def _mala_program(vg: Callable[..., Any]) -> Callable[..., Any]:
    def step(
        key: mx.array,
        x0: mx.array,
        ld0: mx.array,
        g0: mx.array,
        eps: mx.array,
        marr: tuple[mx.array, ...],
        inputs: tuple[mx.array, ...],
    ) -> Any:
        del marr
        ks = mx.vmap(lambda k: mx.random.split(k, 2))(mx.random.split(key, x0.shape[0]))
        k_n, k_acc = ks[:, 0], ks[:, 1]
        e = eps[:, None]
        x = x0 + 0.5 * e * e * g0 + e * chain_normal(k_n, x0.shape[1])
        ld, g = vg(x, *inputs)
        fwd = mx.sum(mx.square(x - x0 - 0.5 * e * e * g0), axis=-1)
        bwd = mx.sum(mx.square(x0 - x - 0.5 * e * e * g), axis=-1)
        log_alpha = ld - ld0 + (fwd - bwd) / (2.0 * eps * eps)
        log_alpha = mx.where(mx.isnan(log_alpha), -mx.inf, log_alpha)
        acc = mx.log(chain_uniform(k_acc)) < log_alpha
        am = acc[:, None]
        return (
            mx.where(am, x, x0),
            mx.where(acc, ld, ld0),
            mx.where(am, g, g0),
            mx.exp(mx.minimum(log_alpha, 0.0)),
        )

    return _compiled_fn(step)


def _one_step_accept(vg: Callable[..., Any], metric_kind: str) -> Callable[..., Any]:
    """Compiled ``(eps, key, x, ld, g, marr, inputs) -> accept`` of one leapfrog step
    with a fresh momentum (Stan's step-size heuristic)."""

    def f(eps: mx.array, key: mx.array, x: mx.array, ld: mx.array, g: mx.array,
          marr: tuple[mx.array, ...], inputs: tuple[mx.array, ...]) -> mx.array:
        metric = Metric(metric_kind, ())
        p = metric.momentum(mx.random.normal(x.shape, key=key), marr)
        h0 = -ld + metric.kinetic(p, marr)
        _, p1, ld1, _ = leapfrog(vg, inputs, metric, marr, x, p, g, eps)
        d = h0 - (-ld1 + metric.kinetic(p1, marr))
        return mx.exp(mx.minimum(mx.where(mx.isnan(d), -mx.inf, d), 0.0))

    return _compiled_fn(f)


def _cached(
    key: tuple[Any, ...], vg: Callable[..., Any], build: Callable[[], Callable[..., Any]]
) -> Callable[..., Any]:
    prog = _PROGRAMS.get(key)
    if prog is None or prog[0] is not vg:
        if len(_PROGRAMS) > 64:
            _PROGRAMS.clear()
        prog = _PROGRAMS[key] = (vg, build())
    return prog[1]


# compiled HMC / MALA steps, per target function (kept across calls: a second run of
# the same model and argument shapes compiles nothing)
_PROGRAMS: dict[Any, tuple[Callable[..., Any], Callable[..., Any]]] = {}


# ---------------------------------------------------------------------------- init
def _initial_positions(
    ld: LogDensity,
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    n_chains: int,
    init: Any,
    key: mx.array,
    radius: float,
) -> mx.array:
    if isinstance(init, str) and init == "uniform":
        return mx.random.uniform(-radius, radius, (n_chains, ld.dim), key=key)
    if isinstance(init, str) and init == "prior":
        # draws from the prior (given the observations); chains whose log density is
        # not finite are drawn again
        y: mx.array | None = None
        ok_all: mx.array | None = None
        for _ in range(20):
            key, k = mx.random.split(key)
            try:
                tr, _ = model.vgenerate(args, obs, n_chains, key=k)
            except ImproperPriorError:  # nothing to draw from: Stan's default
                return mx.random.uniform(-radius, radius, (n_chains, ld.dim), key=key)
            cand = ld.from_choicemap(tr.get_choices())
            ok = mx.isfinite(ld(cand))
            if y is None or ok_all is None:
                y, ok_all = cand, ok
            else:
                y = mx.where(ok_all[:, None], y, cand)
                ok_all = mx.logical_or(ok_all, ok)
            if bool(mx.all(ok_all).item()):
                return y
        raise ValueError(
            "mcmc: could not find initial values with a finite log density from the prior "
            "in 20 tries; pass init= a choice map of starting values or init='uniform'"
        )
    if isinstance(init, str):
        raise ValueError(f"mcmc: init must be 'prior', 'uniform' or a choice map, got {init!r}")
    cm = as_choicemap(init, "mcmc", "init")
    if not cm.batch_shape:
        cm = cm.map(lambda v: mx.broadcast_to(v, (n_chains, *v.shape))).with_batch_shape(
            (n_chains,)
        )
    if cm.batch_shape != (n_chains,):
        raise ValueError(
            f"mcmc: init has batch shape {cm.batch_shape}; give one value per chain "
            f"({n_chains},) or one value for all"
        )
    return ld.from_choicemap(cm)


# ---------------------------------------------------------------------------- driver
_KERNELS = ("nuts", "hmc", "mala", "mh")


def mcmc(
    model: GenerativeFunction,
    args: tuple[Any, ...] = (),
    observations: Any = None,
    *,
    kernel: str | Callable[..., Any] = "nuts",
    n_chains: int = 4,
    n_warmup: int = 1000,
    n_samples: int = 1000,
    thin: int = 1,
    init: Any = "prior",
    key: Any = None,
    progress: bool = False,
    latents: Selection | None = None,
    domains: Mapping[Any, Any] | None = None,
    target_accept: float | None = None,
    step_size: float | None = None,
    max_depth: int = 10,
    n_leapfrog: int = 10,
    dense_mass: bool = False,
    adapt: str = "per_chain",
    init_radius: float = 2.0,
    warn: bool = True,
    target: Any = None,
) -> MCMCResult:
    """Sample a model's posterior with MCMC: adapt, sample, diagnose.

    Args:
        model: a ``@gen`` model.
        args: its arguments.
        observations: observed choices (ChoiceMap or dict).
        kernel: ``"nuts"`` (default), ``"hmc"``, ``"mala"``, ``"mh"`` (a sweep of
            single-site resimulation Metropolis–Hastings over every latent address, on
            batched traces: for discrete latents and dynamic models), or a trace kernel
            ``kernel(trace, *, key) -> (trace, info)`` run on batched traces.
        n_chains: number of independent chains (run together, batched).
        n_warmup: warm-up (adaptation) transitions, discarded.
        n_samples: kept draws per chain (after thinning).
        thin: keep every ``thin``-th transition.
        init: ``"prior"`` (draws from the prior, with the observations; for a model
            with an improper prior, which cannot be sampled, ``"uniform"``),
            ``"uniform"`` (Stan's ``U(−2, 2)`` on the unconstrained scale, gradient
            kernels only) or a choice map of starting values (one for all chains or
            batched ``(n_chains,)``; for gradient kernels it must hold every latent
            choice, for trace kernels the others are drawn from the prior).
        key: PRNG key (``None``: a fresh one).
        progress: show a progress bar (needs ``tqdm``).
        latents: a selection of the latent choices to sample (default: every
            unobserved choice).
        domains: per-address domain overrides (:func:`genmlx.core.logdensity`).
        target_accept: target acceptance statistic (default 0.8; 0.574 for MALA).
        step_size: initial step size (default: found by Stan's heuristic).
        max_depth: NUTS maximum tree depth (default 10).
        n_leapfrog: HMC leapfrog steps per transition.
        dense_mass: adapt a dense mass matrix (default diagonal).
        adapt: ``"per_chain"`` (default: every chain its own step size and mass),
            ``"pooled"`` (shared, averaged over chains) or ``"none"``.
        init_radius: the radius of ``init="uniform"``.
        warn: emit :class:`MCMCWarning` for convergence problems (R-hat > 1.01, ESS
            below 100, divergences).
        target: a prebuilt log density to sample (a :class:`~genmlx.core.LogDensity`
            or anything with its interface, such as
            :class:`~genmlx.infer.EnumeratedLogDensity`); default: built from the model.

    Discrete latent choices with a finite support are summed out exactly inside the
    log density (:func:`~genmlx.infer.enumerated_logdensity`), so the gradient kernels
    sample the continuous ones; :func:`~genmlx.infer.infer_discrete` then draws the
    discrete choices for every kept draw.

    Returns:
        An :class:`MCMCResult`.

    Raises:
        ValueError: a bad argument (named in the message).
        StaticModelError: a gradient kernel on a model whose latent choices cannot be
            put in one vector (a discrete latent without a finite support, a dynamic
            structure); use ``kernel="mh"`` or a trace kernel.
    """
    args = as_args(args, "mcmc")
    obs = as_choicemap(observations, "mcmc", "observations")
    for name, v, lo in (
        ("n_chains", n_chains, 1),
        ("n_samples", n_samples, 1),
        ("n_warmup", n_warmup, 0),
        ("thin", thin, 1),
        ("max_depth", max_depth, 1),
        ("n_leapfrog", n_leapfrog, 1),
    ):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"mcmc: {name} must be an int of at least {lo}, got {v!r}")
    if adapt not in ("per_chain", "pooled", "none"):
        raise ValueError(f"mcmc: adapt must be 'per_chain', 'pooled' or 'none', got {adapt!r}")
    if step_size is not None and not (
        isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0
    ):
        raise ValueError(f"mcmc: step_size must be finite and positive, got {step_size!r}")
    if runtime.in_transform():
        raise ValueError("mcmc runs its own loop; call it outside vmap/compile/grad")
    key = resolve_key(key)
    if callable(kernel) and not isinstance(kernel, str):
        return _trace_mcmc(model, args, obs, lambda tr, ob: kernel,
                           getattr(kernel, "__name__", "kernel"), n_chains, n_warmup,
                           n_samples, thin, init, key, progress, warn)
    if kernel not in _KERNELS:
        raise ValueError(
            f"mcmc: kernel must be one of {_KERNELS} or a trace kernel callable, got {kernel!r}"
        )
    if kernel == "mh":
        return _trace_mcmc(model, args, obs, _mh_sweep, "mh", n_chains, n_warmup, n_samples,
                           thin, init, key, progress, warn)
    if target_accept is None:
        target_accept = 0.574 if kernel == "mala" else 0.8
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"mcmc: target_accept must be in (0, 1), got {target_accept}")
    g = analyze(model, args, obs)
    if not g.is_static:
        raise StaticModelError(
            f"mcmc(kernel={kernel!r}) needs a static model; {model!r} is dynamic: {g.reason}. "
            "Use a trace kernel (kernel=lambda tr, key: ...) instead"
        )
    ld = target if target is not None else _vector_target(model, args, obs, g, latents, domains)
    k_init, k_warm, k_run = mx.random.split(key, 3)
    import time

    t0 = time.perf_counter()
    y0 = _initial_positions(ld, model, args, obs, n_chains, init, k_init, init_radius)
    vg, input_list = ld.pure("vg", batched=True)
    inputs = tuple(input_list)
    cvg = _cached((id(vg), "vg"), vg, lambda: _compiled_fn(vg))
    lp, gr = cvg(y0, *inputs)
    state = NUTSState(y0, lp, gr)
    mx.eval(state)
    per_chain = adapt == "per_chain"
    d = ld.dim
    metric = Metric("identity", ())
    eps = mx.full((n_chains,), 0.1 if step_size is None else float(step_size), dtype=mx.float32)
    bar = _progress(progress, n_warmup + n_samples * thin, kernel)

    def transition(
        st: NUTSState, k: mx.array, e: mx.array, m: Metric
    ) -> tuple[NUTSState, dict[str, mx.array]]:
        if kernel == "nuts":
            new, info = nuts_transition(
                st, vg, inputs, key=k, step_size=e, metric=m, max_depth=max_depth
            )
            return new, {
                "accept_prob": info.accept_prob,
                "n_leapfrog": info.n_leapfrog,
                "depth": info.depth,
                "diverging": info.diverging,
            }
        prog = _cached(
            (id(vg), kernel, m.kind, n_leapfrog if kernel == "hmc" else 0), vg,
            lambda: _hmc_program(vg, Metric(m.kind, ()), n_leapfrog) if kernel == "hmc"
            else _mala_program(vg),
        )
        x, lpn, gn, acc = prog(k, st.position, st.logdensity, st.grad, e, tuple(m.arrays), inputs)
        return NUTSState(x, lpn, gn), {"accept_prob": acc}

    def heuristic(e: mx.array, k: mx.array) -> mx.array:
        kind = metric.kind
        fn = _cached((id(vg), "one_step", kind), vg, lambda: _one_step_accept(vg, kind))
        return find_step_size(
            lambda ee, kk: fn(ee, kk, state.position, state.logdensity, state.grad,
                              tuple(metric.arrays), inputs),
            e, k, per_chain=per_chain,
        )

    # ---------------------------------------------------------------- warm-up
    if n_warmup > 0 and adapt != "none":
        if step_size is None:
            k_warm, sub = mx.random.split(k_warm)
            eps = heuristic(eps, sub)
        da = DualAveraging.start(eps if per_chain else mx.mean(eps))
        first_slow, ends = windows(n_warmup)
        window: list[mx.array] = []
        for t in range(n_warmup):
            k_warm, sub = mx.random.split(k_warm)
            cur = da.step_size if per_chain else mx.broadcast_to(da.step_size, (n_chains,))
            state, info = transition(state, sub, cur, metric)
            acc = info["accept_prob"]
            da = da.update(acc if per_chain else mx.mean(acc), target_accept)
            if t >= first_slow:
                window.append(state.position)
            if t + 1 in ends:
                m = estimate_mass(mx.stack(window, axis=1), dense=dense_mass, per_chain=per_chain)
                metric = Metric.create(m, d, "mcmc", n_chains=n_chains if per_chain else None)
                window = []
                cur = da.step_size if per_chain else mx.broadcast_to(da.step_size, (n_chains,))
                k_warm, sub = mx.random.split(k_warm)
                eps_now = heuristic(cur, sub)
                da = DualAveraging.start(eps_now if per_chain else mx.mean(eps_now))
            mx.eval(state.position, da.log_eps_bar)
            bar(1)
        fin = da.final_step_size
        eps = (fin if per_chain else mx.broadcast_to(fin, (n_chains,))).astype(mx.float32)
    elif n_warmup > 0:
        for _ in range(n_warmup):
            k_warm, sub = mx.random.split(k_warm)
            state, _ = transition(state, sub, eps, metric)
            mx.eval(state.position)
            bar(1)
    t1 = time.perf_counter()
    # ---------------------------------------------------------------- sampling
    draws: list[mx.array] = []
    stats: dict[str, list[mx.array]] = {}
    for t in range(n_samples * thin):
        k_run, sub = mx.random.split(k_run)
        state, info = transition(state, sub, eps, metric)
        if (t + 1) % thin == 0:
            draws.append(state.position)
            for stat, value in info.items():
                stats.setdefault(stat, []).append(value)
        if kernel != "nuts" and (t + 1) % 50 == 0:
            mx.eval(state.position)
        bar(1)
    positions = mx.stack(draws, axis=1)  # [C, n, d]
    mx.eval(positions)
    t2 = time.perf_counter()
    bar(None)
    flat = positions.reshape(-1, d)
    values = ld.constrain(flat)
    samples = {a: v.reshape(n_chains, n_samples, *v.shape[1:]) for a, v in values.items()}
    st = {k: mx.stack(v, axis=1) for k, v in stats.items()}
    mass = None
    if metric.kind == "diag":
        mass = metric.arrays[0] * metric.arrays[0]
    elif metric.kind == "dense":
        mass = metric.arrays[0] @ mx.swapaxes(metric.arrays[0], -1, -2)
    res = MCMCResult(
        samples,
        st,
        kernel=kernel,
        step_size=eps,
        mass=mass,
        positions=positions,
        logdensity=ld,
        model=model,
        args=args,
        observations=obs,
        timing={"warmup_s": t1 - t0, "sampling_s": t2 - t1},
    )
    _finish_warnings(res, warn)
    return res


def _vector_target(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    g: Any,
    latents: Selection | None,
    domains: Mapping[Any, Any] | None,
) -> Any:
    """The log density the vector kernels sample: discrete latents summed out, if any."""
    discrete = [
        s for s in g.sites
        if s.kind == "choice" and not s.observed
        and (getattr(s.gen_fn, "is_discrete", False) or not mx.issubdtype(s.dtype, mx.floating))
    ]
    if discrete and latents is None:
        from genmlx.infer.enumeration import enumerated_logdensity

        return enumerated_logdensity(model, args, obs, domains=domains)
    return logdensity(model, args, obs, latents=latents, domains=domains)


def _finish_warnings(res: MCMCResult, warn: bool) -> None:
    res.warnings = res.check()
    if warn:
        for msg in res.warnings:
            warnings.warn(f"mcmc: {msg}", MCMCWarning, stacklevel=3)


def _progress(on: bool, total: int, name: str) -> Callable[[int | None], None]:
    if not on:
        return lambda n: None
    try:
        from tqdm.auto import tqdm
    except ImportError as e:
        raise ImportError("mcmc(progress=True) needs tqdm: pip install tqdm") from e
    bar = tqdm(total=total, desc=f"mcmc ({name})")

    def update(n: int | None) -> None:
        if n is None:
            bar.close()
        else:
            bar.update(n)

    return update


def _mh_sweep(trace: Trace, obs: ChoiceMap) -> Callable[..., Any]:
    """One sweep of single-site resimulation MH over the trace's latent leaves."""
    from functools import partial

    from genmlx.core import select
    from genmlx.infer.kernel_combinators import cycle
    from genmlx.infer.metropolis import mh

    paths = [p for p, _ in trace.get_choices().leaves() if p not in obs]
    if not paths:
        raise ValueError("mcmc(kernel='mh'): the model has no latent choices to move")
    moves = [partial(mh, selection_or_proposal=select(from_path(p))) for p in paths]
    return cycle(*moves)


def _trace_init(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    n_chains: int,
    init: Any,
    key: mx.array,
) -> Trace:
    if isinstance(init, str) and init == "prior":
        cons = obs
    elif isinstance(init, str):
        raise ValueError(
            f"mcmc: init={init!r} is for gradient kernels on static models; a trace kernel "
            "starts from 'prior' or a choice map of starting values"
        )
    else:
        cm = as_choicemap(init, "mcmc", "init")
        if not cm.batch_shape:
            cm = cm.map(lambda v: mx.broadcast_to(v, (n_chains, *v.shape))).with_batch_shape(
                (n_chains,)
            )
        if cm.batch_shape != (n_chains,):
            raise ValueError(
                f"mcmc: init has batch shape {cm.batch_shape}; give one value per chain "
                f"({n_chains},) or one value for all"
            )
        cons = cm
        if not obs.is_empty:
            o = obs.map(lambda v: mx.broadcast_to(v, (n_chains, *v.shape)))
            cons = cm.merge(o.with_batch_shape((n_chains,)))
    trace, _ = model.vgenerate(args, cons, n_chains, key=key)
    return trace


def _trace_mcmc(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    make_kernel: Callable[[Trace, ChoiceMap], Callable[..., Any]],
    name: str,
    n_chains: int,
    n_warmup: int,
    n_samples: int,
    thin: int,
    init: Any,
    key: mx.array,
    progress: bool,
    warn: bool,
) -> MCMCResult:
    """A trace kernel on ``n_chains`` batched chains (no adaptation)."""
    import time

    t0 = time.perf_counter()
    k_init, key = mx.random.split(key)
    trace = _trace_init(model, args, obs, n_chains, init, k_init)
    kernel = make_kernel(trace, obs)
    bar = _progress(progress, n_warmup + n_samples * thin, name)
    latent_paths = [p for p, _ in trace.get_choices().leaves() if p not in obs]
    rows: dict[Any, list[mx.array]] = {from_path(p): [] for p in latent_paths}
    accepts: list[mx.array] = []
    t1 = t0
    for t in range(n_warmup + n_samples * thin):
        if t == n_warmup:
            t1 = time.perf_counter()
        key, sub = mx.random.split(key)
        trace, info = kernel(trace, key=sub)
        if t >= n_warmup and (t - n_warmup + 1) % thin == 0:
            for p in latent_paths:
                rows[from_path(p)].append(trace[from_path(p)])
            acc = getattr(info, "accepted", info)
            if isinstance(acc, mx.array):
                accepts.append(acc.astype(mx.float32))
        mx.eval(trace.score)
        bar(1)
    bar(None)
    t2 = time.perf_counter()
    samples = {a: mx.stack(v, axis=1) for a, v in rows.items()}
    stats = {"accept_prob": mx.stack(accepts, axis=1)} if accepts else {}
    res = MCMCResult(samples, stats, kernel=name, model=model, args=args, observations=obs,
                     timing={"warmup_s": t1 - t0, "sampling_s": t2 - t1})
    _finish_warnings(res, warn)
    return res
