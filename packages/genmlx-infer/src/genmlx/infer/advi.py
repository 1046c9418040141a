"""Automatic differentiation variational inference (ADVI, Kucukelbir et al., 2017).

Given a model ``p(x, y)`` with observations ``y``, ADVI fits a Gaussian ``q(z)`` in an
*unconstrained* space: each continuous latent choice ``x_a`` is ``T_a(z_a)`` for the
bijector ``T_a`` from ``ℝ^{d_a}`` onto the domain its distribution declares
(:meth:`genmlx.core.Distribution.domain`, mapped by
:func:`genmlx.core.bijectors.biject_to`): the identity on the real line, ``low +
exp(z)`` / ``high - exp(z)`` on half-lines, a scaled logistic on ``(low, high)``,
stick-breaking onto simplexes, cumulative ``exp`` increments onto ordered vectors,
Cholesky constructions onto correlation and covariance matrices. The domain is
evaluated at every execution from the parameters of that execution, so a bound given by
another choice (``uniform(0.0, 1.0 - alpha) @ "beta"``) follows it.

The pushforward of ``q`` through ``T`` is the variational posterior over the latent
choices, and the ELBO is estimated by reparameterisation, ``z = μ + L ε`` with
``ε ~ N(0, I)``:

.. math::

    \\mathrm{ELBO}(μ, L) = \\mathbb{E}_ε\\big[\\log p(T(z), y) + \\log|\\det J_T(z)|
        - \\log q(z)\\big],

which equals ``log p(y) - KL(q_T || p(x | y))``. ``L`` is diagonal (*mean-field*, one
``log`` scale per coordinate) or lower triangular with a positive diagonal (*full
rank*). Each step averages ``n_samples`` draws, all in one batched ``assess`` of the
model, and moves ``(μ, L)`` with an optimiser from ``mlx.optimizers`` (Adam by
default) along ``mx.value_and_grad`` of the estimate.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.dists import gamma, poisson
    >>> @gen
    ... def model():
    ...     rate = gamma(2.0, 1.0) @ "rate"
    ...     poisson(rate) @ "count"
    >>> approx = advi(model, (), {"count": 3}, n_steps=200, key=mx.random.key(0),
    ...               learning_rate=0.05)
    >>> approx.sample(5, key=mx.random.key(1))["rate"].shape
    (5,)
    >>> bool(mx.all(approx.sample(100, key=mx.random.key(2))["rate"] > 0))
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import mlx.core as mx

from genmlx.core.address import Address, format_address, to_path
from genmlx.core.checks import as_choicemap
from genmlx.core.choicemap import ChoiceMap, as_array, choicemap
from genmlx.core.deprecation import renamed_arguments
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.params import ParamStore, use_params
from genmlx.core.random import Key, resolve_key
from genmlx.core.serialize import register_format
from genmlx.core.trace import Trace
from genmlx.infer._advi_transforms import discrete_message
from genmlx.infer._unconstrained import Space, UBlock, domain_to_spec, spec_to_domain
from genmlx.infer._vi_loop import (
    VIEstimate,
    check_positive_int,
    estimate,
    make_optimizer,
    optimize,
)
from genmlx.infer._vi_sites import find_sites

__all__ = ["SUPPORTS", "ADVIResult", "advi"]

_LOG_2PI = math.log(2.0 * math.pi)

SUPPORTS: dict[str, Any] = {
    **dict.fromkeys(
        ["normal", "laplace", "cauchy", "logistic", "gumbel", "student_t", "mv_normal"],
        "real",
    ),
    **dict.fromkeys(
        [
            "exponential",
            "gamma",
            "inv_gamma",
            "chi2",
            "half_normal",
            "half_cauchy",
            "log_normal",
            "weibull",
        ],
        "positive",
    ),
    **dict.fromkeys(["beta", "kumaraswamy", "beta_uniform"], "unit"),
    **dict.fromkeys(["von_mises", "wrapped_cauchy", "wrapped_normal"], "circle"),
    "uniform": lambda low, high: (low, high),
    "truncated_normal": lambda mu, sigma, low, high: (low, high),
    "pareto": lambda scale, alpha: (scale, None),
}
"""A deprecated fallback, the support of a distribution that does not declare
:meth:`genmlx.core.Distribution.domain`, by name (``"real"``, ``"positive"``,
``"unit"``, ``"circle"``, or a function of the parameters returning ``(low, high)`` with
``None`` for an open end). :func:`advi` uses each distribution's declared domain; this
table is only read for distributions without one. Declare ``domain`` on a third-party
distribution instead, or give the support per address with ``advi(..., supports=...)``."""


def _tril(raw: mx.array) -> mx.array:
    """Lower-triangular factor: the strict lower part of ``raw`` and ``exp`` of its diagonal."""
    d = raw.shape[0]
    return mx.tril(raw, k=-1) + mx.diag(mx.exp(mx.diag(raw))) * mx.eye(d)


def _draw(params: dict[str, mx.array], eps: mx.array) -> tuple[mx.array, mx.array]:
    """``z = μ + L ε`` and ``log q(z)`` for ``ε`` of shape ``[n, D]``."""
    loc = params["loc"]
    d = loc.shape[0]
    if "log_scale" in params:
        z = loc + eps * mx.exp(params["log_scale"])
        log_det = mx.sum(params["log_scale"])
    else:
        raw = params["scale_tril"]
        z = loc + eps @ _tril(raw).T
        log_det = mx.sum(mx.diag(raw))
    log_q = -0.5 * mx.sum(eps * eps, axis=-1) - log_det - 0.5 * d * _LOG_2PI
    return z, log_q


def _broadcast_obs(obs: ChoiceMap, n: int) -> ChoiceMap:
    if obs.is_empty:
        return obs
    return obs.map(lambda v: mx.broadcast_to(v, (n, *v.shape))).with_batch_shape((n,))


class ADVIResult:
    """A fitted ADVI approximation: a Gaussian in unconstrained space pushed through the
    constraining bijections onto the model's latent choices.

    Attributes:
        model: the model.
        args: its arguments.
        observations: the observations it was fitted to.
        guide: ``"meanfield"`` or ``"fullrank"``.
        params: the variational parameters: ``"loc"`` (``[D]``) and ``"log_scale"``
            (``[D]``, mean-field) or ``"scale_tril"`` (``[D, D]``, full rank; the factor
            is its strict lower triangle plus ``exp`` of its diagonal).
        elbo_history: the ELBO estimate of every step, shape ``[n_steps]``.
    """

    def __init__(
        self,
        model: GenerativeFunction,
        args: tuple[Any, ...],
        observations: ChoiceMap,
        guide: str,
        space: Space,
        params: dict[str, mx.array],
        elbo_history: mx.array,
        store: ParamStore | None = None,
    ) -> None:
        self.model = model
        self.args = args
        self.observations = observations
        self.guide = guide
        self._space = space
        self.params = params
        self.elbo_history = elbo_history
        self._store = store if store is not None else ParamStore()

    @property
    def history(self) -> mx.array:
        """The ELBO estimate of every step: :attr:`elbo_history` under the result
        vocabulary's name."""
        return self.elbo_history

    # ------------------------------------------------------------------ the Gaussian
    @property
    def addresses(self) -> list[Address]:
        """The latent addresses, in the model's visiting order."""
        return [b.path[0] if len(b.path) == 1 else b.path for b in self._space.blocks]

    @property
    def dim(self) -> int:
        """``D``, the number of unconstrained coordinates."""
        return int(self.params["loc"].shape[0])

    @property
    def scale_tril(self) -> mx.array:
        """The Cholesky factor ``L`` of the unconstrained covariance, ``[D, D]``."""
        if "log_scale" in self.params:
            return mx.diag(mx.exp(self.params["log_scale"]))
        return _tril(self.params["scale_tril"])

    @property
    def covariance(self) -> mx.array:
        """The unconstrained covariance ``L Lᵀ``, ``[D, D]`` (coordinates in block order)."""
        lt = self.scale_tril
        return lt @ lt.T

    def _per_address(self, flat: mx.array) -> ChoiceMap:
        items = [
            (b.path, ChoiceMap(flat[b.start : b.start + b.size].reshape(b.ushape)))
            for b in self._space.blocks
        ]
        return ChoiceMap.from_nodes(items)

    @property
    def loc(self) -> ChoiceMap:
        """The unconstrained mean ``μ``, per latent address (in the unconstrained shape:
        a ``K``-simplex has ``K - 1`` coordinates)."""
        return self._per_address(self.params["loc"])

    @property
    def scale(self) -> ChoiceMap:
        """The unconstrained marginal standard deviations, per latent address."""
        return self._per_address(mx.sqrt(mx.diag(self.covariance)))

    def median(self) -> ChoiceMap:
        """``T(μ)``: the latent values at the Gaussian's mean (the median of each
        coordinate for elementwise bijectors)."""
        with use_params(self._store):
            values = self._space.forward(self.params["loc"])
        return self._space.to_choicemap(values)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, key: Key = None) -> ChoiceMap:
        """``n`` independent draws of the latent choices, in the model's (constrained)
        space: a choice map with ``batch_shape == (n,)`` and ``[n, ...]`` leaves."""
        check_positive_int(n, "n", "ADVIResult.sample")
        eps = mx.random.normal((n, self.dim), key=resolve_key(key))
        z, _ = _draw(self.params, eps)
        with use_params(self._store):
            values = Space.batched(self._space.forward)(z)
        return self._space.to_choicemap(values, (n,))

    def traces(self, n: int, *, key: Key = None) -> Trace:
        """``n`` model traces whose latent choices are draws from the approximation and
        whose observed choices are the observations (a batched trace)."""
        k_sample, k_gen = mx.random.split(resolve_key(key), 2)
        latents = self.sample(n, key=k_sample)
        with use_params(self._store):
            tr, _ = self.model.vgenerate(
                self.args, latents.merge(_broadcast_obs(self.observations, n)), n, key=k_gen
            )
        return tr

    def log_density(self, choices: ChoiceMap | Mapping[Any, Any]) -> mx.array:
        """``log q(x)`` of latent values ``x`` (constrained space, a change of variables:
        ``log N(T⁻¹(x); μ, L Lᵀ) - log|det J_T(T⁻¹(x))|``).

        ``choices`` must hold every latent address (other addresses are ignored); a
        batched choice map gives one log density per particle.
        """
        cm = choices if isinstance(choices, ChoiceMap) else choicemap(choices)
        values = self._space.values_from(cm, "ADVIResult.log_density")
        batch = tuple(cm.batch_shape)
        if not batch:
            values = [v[None] for v in values]
        with use_params(self._store):
            z = Space.batched(lambda *vs: self._space.inverse(list(vs)))(*values)
            _, ladj = Space.batched(self._space.forward_and_ladj)(z)
        diff = z - self.params["loc"]
        if "log_scale" in self.params:
            eps = diff * mx.exp(-self.params["log_scale"])
        else:
            lt = _tril(self.params["scale_tril"])
            eps = mx.linalg.solve_triangular(lt, diff.T, upper=False, stream=mx.cpu).T
        _, log_q = _draw(self.params, eps)
        out = log_q - ladj
        return out.reshape(batch) if batch else out[0]

    def elbo(self, n_samples: int = 1000, *, key: Key = None) -> VIEstimate:
        """A fresh Monte Carlo estimate of the ELBO with ``n_samples`` draws (and its
        standard error)."""
        check_positive_int(n_samples, "n_samples", "ADVIResult.elbo")
        eps = mx.random.normal((n_samples, self.dim), key=resolve_key(key))
        with use_params(self._store):
            terms = _elbo_terms(self._space, self.params, eps)
        return estimate(terms)

    def __repr__(self) -> str:
        return (
            f"ADVIResult({self.guide}, D={self.dim}, addresses={self.addresses!r}, "
            f"final ELBO={float(self.elbo_history[-1]):.4g})"
        )


def _elbo_terms(space: Space, params: dict[str, mx.array], eps: mx.array) -> mx.array:
    """Per-draw ``log p(T(z), y) + log|J_T(z)| - log q(z)``, shape ``[n]``."""
    z, log_q = _draw(params, eps)
    log_p = Space.batched(space.logp)(z)
    return log_p - log_q


def _space(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    supports: Mapping[Any, Any],
    key: mx.array,
) -> tuple[Space, list[Any]]:
    """The latent choices' space, from two executions (to check the structure is fixed)."""
    k1, k2 = mx.random.split(key, 2)
    overrides = {to_path(a): s for a, s in supports.items()}
    first = [s for s in find_sites(model, args, obs, k1, "advi") if not s.observed]
    second = [s for s in find_sites(model, args, obs, k2, "advi") if not s.observed]
    if not first:
        raise ValueError(
            "advi: the model has no latent (unobserved) choices given these observations; "
            "there is nothing to fit"
        )
    if [s.path for s in first] != [s.path for s in second]:
        raise ValueError(
            "advi: the model's latent addresses differ between executions (random "
            "structure); ADVI needs a fixed set of continuous latent choices"
        )
    for path in overrides:
        if not any(s.path[: len(path)] == path for s in first):
            raise ValueError(
                f"advi: supports= names {format_address(path)}, which holds no latent "
                f"choice (latent addresses: {[format_address(s.path) for s in first]})"
            )
    for s in first:
        if (s.dist is not None and s.dist.is_discrete) or not mx.issubdtype(
            s.value.dtype, mx.floating
        ):
            raise TypeError(discrete_message(s))
    space = Space.from_sites(model, args, obs, first, overrides, "advi", table=SUPPORTS)
    return space, first


@renamed_arguments(compiled="compile")
def advi(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    *,
    n_steps: int = 1000,
    key: Key = None,
    guide: str = "meanfield",
    n_samples: int = 10,
    optimizer: Any = None,
    learning_rate: float = 0.01,
    init_scale: float = 0.1,
    init: ChoiceMap | Mapping[Any, Any] | None = None,
    supports: Mapping[Any, Any] | None = None,
    params: ParamStore | Mapping[str, Any] | None = None,
    compile: bool = True,
    steps_per_call: int = 1,
    progress: bool = False,
) -> ADVIResult:
    """Fit a Gaussian approximation to ``p(x | y)`` by ADVI (see the module docstring).

    Every step draws ``n_samples`` reparameterised samples ``z = μ + L ε`` in one batched
    ``assess`` of the model and takes an optimiser step along the gradient of

    .. math::

        \\widehat{\\mathrm{ELBO}} = \\frac1S \\sum_s \\log p(T(z_s), y)
            + \\log|\\det J_T(z_s)| - \\log q(z_s),

    an unbiased estimate of ``ELBO(μ, L) = log p(y) - KL(q_T || p(· | y))`` whose
    gradient is unbiased too. The latent choices and their supports are found by running
    the model's body once with the observations (twice, to check that addresses and
    supports do not change between executions).

    Args:
        model: the model (its latent choices must be continuous).
        args: the model's arguments.
        observations: observed values (ChoiceMap or dict); ``None`` fits the prior.
        n_steps: the number of optimiser steps.
        key: PRNG key (step ``t`` uses ``split(k, n_steps)[t]`` of a sub-key).
        guide: ``"meanfield"`` (diagonal covariance) or ``"fullrank"`` (dense).
        n_samples: draws per step.
        optimizer: an ``mlx.optimizers.Optimizer`` (default ``Adam(learning_rate)``).
        learning_rate: the default optimiser's learning rate.
        init_scale: initial standard deviation of every unconstrained coordinate.
        init: initial (constrained) values for some latent choices; the others start at
            a draw from the prior, mapped to the unconstrained space.
        supports: per-address domains overriding the distributions' own (needed for
            choices inside combinators and for distributions that declare no domain):
            a :mod:`genmlx.core.constraints` domain, a name (``"real"``,
            ``"positive"``, ``"unit_interval"``, ``"simplex"``, ...) or ``(low, high)``
            with ``None``/``±inf`` for an open end. An address applies to every choice
            beneath it (``{"xs": "positive"}`` covers ``("xs", 0, "z")``,
            ``("xs", 1, "z")``, ...).
        params: a ``ParamStore`` bound while the model runs (for models that read ``param`` values;
            they are not trained).
        compile: compile the gradient step with ``mx.compile`` (``False``: eager;
            ``compiled=`` is the deprecated name).
        steps_per_call: with ``compile=True``, optimiser steps per compiled call
            (unrolled; larger values save per-step host overhead on small models at
            the cost of a longer first compilation).
        progress: show a ``tqdm`` progress bar (``pip install tqdm``).

    Returns:
        An :class:`ADVIResult` with ``.sample(n, key=)``, ``.elbo_history``, ``.loc``,
        ``.scale``, ``.covariance``, ``.median()``, ``.log_density(choices)``,
        ``.traces(n, key=)`` and ``.elbo(n_samples, key=)``.

    Raises:
        TypeError: a latent choice is discrete (use black-box VI or ADEV for those).
        ValueError: unknown guide, a latent choice whose domain is unknown, or no
            latent choices.
        NonFiniteScoreError: the ELBO or its gradient became NaN/infinite at some step.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> approx = advi(model, (), {"y": 2.0}, n_steps=500, n_samples=20,
        ...               learning_rate=0.05, key=mx.random.key(0))
        >>> round(float(approx.loc["mu"]), 1)   # the posterior is N(1, 1/2)
        1.0
    """
    if not isinstance(model, GenerativeFunction):
        raise TypeError(f"advi: model must be a GenerativeFunction, got {type(model).__name__}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"advi: args must be a tuple of arguments, got {type(args).__name__}")
    args = tuple(args)
    if guide not in ("meanfield", "fullrank"):
        raise ValueError(f"advi: guide must be 'meanfield' or 'fullrank', got {guide!r}")
    check_positive_int(n_steps, "n_steps", "advi")
    check_positive_int(steps_per_call, "steps_per_call", "advi")
    check_positive_int(n_samples, "n_samples", "advi")
    if not (isinstance(init_scale, (int, float)) and init_scale > 0):
        raise ValueError(f"advi: init_scale must be a positive number, got {init_scale!r}")
    obs = as_choicemap(observations, "advi", "observations")
    if obs.batch_shape:
        raise ValueError("advi: observations must be unbatched (shared by every sample)")
    opt = make_optimizer(optimizer, learning_rate, "advi")
    store = ParamStore(params if params is not None else {})
    k_find, k_fit = mx.random.split(resolve_key(key), 2)
    with use_params(store):
        space, sites = _space(model, args, obs, supports or {}, k_find)
    start = as_choicemap(init, "advi", "init")
    latent_paths = {b.path for b in space.blocks}
    for path, _ in start.leaves():
        if path not in latent_paths:
            raise ValueError(
                f"advi: init gives a value at {format_address(path)}, which is not a latent "
                f"choice (latent addresses: {[format_address(p) for p in latent_paths]})"
            )
    values = []
    for b, site in zip(space.blocks, sites):
        value = site.value
        name = b.path if len(b.path) != 1 else b.path[0]
        if name in start:
            value = as_array(start[name])
        values.append(mx.broadcast_to(as_array(value), b.shape))
    with use_params(store):
        z0 = space.inverse(values)
    loc = mx.where(mx.isfinite(z0), z0, 0.0)
    d = loc.shape[0]
    fit: dict[str, mx.array] = {"loc": loc}
    if guide == "meanfield":
        fit["log_scale"] = mx.full((d,), math.log(init_scale))
    else:
        fit["scale_tril"] = mx.diag(mx.full((d,), math.log(init_scale)))

    def objective(
        p: dict[str, mx.array], extra: dict[str, mx.array], k: mx.array
    ) -> tuple[mx.array, mx.array, dict[str, mx.array]]:
        eps = mx.random.normal((n_samples, d), key=k)
        with use_params(store):
            elbo = mx.mean(_elbo_terms(space, p, eps))
        return -elbo, elbo, extra

    fitted, history = optimize(
        objective,
        fit,
        {},
        n_steps=n_steps,
        key=k_fit,
        optimizer=opt,
        compiled=compile,
        steps_per_call=steps_per_call,
        progress=progress,
        op="advi",
    )
    return ADVIResult(model, args, obs, guide, space, fitted, mx.array(history), store)


def _encode_advi(r: ADVIResult) -> dict[str, Any]:
    sp = r._space
    return {
        "model": r.model,
        "args": r.args,
        "observations": r.observations,
        "guide": r.guide,
        "blocks": [
            {
                "path": list(b.path),
                "shape": list(b.shape),
                "ushape": list(b.ushape),
                "start": b.start,
                "size": b.size,
                "override": domain_to_spec(b.override),
                "call": None if b.call is None else list(b.call),
            }
            for b in sp.blocks
        ],
        "params": r.params,
        "elbo_history": r.elbo_history,
        "store": r._store,
    }


def _decode_advi(d: dict[str, Any]) -> ADVIResult:
    blocks = [
        UBlock(
            tuple(b["path"]),
            tuple(b["shape"]),
            tuple(b["ushape"]),
            int(b["start"]),
            int(b["size"]),
            spec_to_domain(b["override"], "load"),
            None if b["call"] is None else tuple(b["call"]),
        )
        for b in d["blocks"]
    ]
    space = Space(d["model"], tuple(d["args"]), d["observations"], blocks, "advi")
    return ADVIResult(
        d["model"],
        tuple(d["args"]),
        d["observations"],
        d["guide"],
        space,
        d["params"],
        d["elbo_history"],
        d["store"],
    )


register_format(ADVIResult, _encode_advi, _decode_advi, name="genmlx.infer.ADVIResult")
