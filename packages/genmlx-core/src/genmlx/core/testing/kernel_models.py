"""Test models with exact posteriors, on which the kernel kit runs MCMC kernels.

Each :class:`KernelTestModel` is a small ``@gen`` model (written with the reference
distributions of :mod:`genmlx.core.testing.models`, so core needs no distribution
library), its observations, the addresses of its latent choices, and an **exact**
posterior sampler in NumPy, for the model's own observations or for any observations
per chain (simulation-based calibration draws a data set per chain). A kernel factory
reads the rest (``discrete``, ``gaussian_prior``, ``support``, ``scales``, ``tags``)
to decide whether and how its kernel applies.

The models (:data:`KERNEL_TEST_MODELS`):

* ``conjugate_gaussian`` — ``mu ~ N(0, 2²)``, ``("y", i) ~ N(mu, 1)`` for three
  observations: a normal posterior;
* ``correlated_gaussian`` — one vector choice ``x ~ N([0, 0.5], I)`` (shape ``[2]``)
  and ``y ~ N(x[0] + x[1], 0.5²)``: a bivariate normal posterior with correlation −0.8;
* ``discrete`` — three coins ``a, b, c ~ Bernoulli(0.3 / 0.6 / 0.5)`` and
  ``y ~ N(a + 2b − c, 0.7²)``: eight states, posterior by enumeration;
* ``bimodal`` — a mixture: ``x ~ 0.5·N(−2, 0.7²) + 0.5·N(2, 0.7²)``, ``y ~ N(x, 1.5²)``
  with ``y = 0.8``: the posterior is a two-component normal mixture, modes five
  standard deviations apart;
* ``constrained`` — ``p ~ Beta(2, 3)`` and six coin flips ``("x", i) ~ Bernoulli(p)``:
  a Beta posterior on ``(0, 1)``; moves outside the support must be rejected.

Example:
    >>> import numpy as np
    >>> from genmlx.core.testing.kernel_models import KERNEL_TEST_MODELS
    >>> m = KERNEL_TEST_MODELS["conjugate_gaussian"]
    >>> draws = m.posterior(np.random.default_rng(0), 4)
    >>> draws["mu"].shape
    (4,)
    >>> tr = m.trace(draws)
    >>> tr.batch_shape, bool((tr["y", 0] == 0.9).all())
    ((4,), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np
import numpy.typing as npt

from genmlx.core.address import Address, format_address
from genmlx.core.choicemap import choicemap
from genmlx.core.distribution import Distribution
from genmlx.core.dsl import gen
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.selection import Selection, select
from genmlx.core.testing.models import bernoulli, beta, normal
from genmlx.core.trace import Trace

__all__ = [
    "KERNEL_TEST_MODELS",
    "KernelTestModel",
    "NormalMixture",
    "bimodal",
    "conjugate_gaussian",
    "constrained",
    "correlated_gaussian",
    "discrete",
    "normal_mixture",
]

Draws = dict[Address, npt.NDArray[Any]]
PosteriorFn = Callable[[np.random.Generator, Draws, int], Draws]


@dataclass(frozen=True)
class KernelTestModel:
    """A model with an exact posterior sampler, for testing MCMC kernels.

    Attributes:
        name: the model's name in reports.
        model: the generative function.
        args: its arguments.
        observations: the observed choices (address → value), the same for every chain
            unless a check passes its own.
        latents: the latent addresses (every other choice of a trace is observed).
        event_shapes: each latent's value shape (``()`` for scalars).
        discrete: every latent is discrete (bool or integer); otherwise every latent is
            continuous (float).
        support: for continuous latents, the open interval ``(low, high)`` of each
            (``±inf`` for unbounded).
        gaussian_prior: ``address → (mean, variance)`` when every latent has an
            independent normal prior (elementwise for a vector choice), else ``None``
            (elliptical slice sampling needs it).
        scales: a typical posterior standard deviation of each latent (its smallest
            component), for choosing step sizes.
        tags: labels such as ``"gaussian"``, ``"correlated"``, ``"multimodal"``,
            ``"constrained"``.
        sbc: whether simulation-based calibration may use this model (its posterior
            sampler accepts any observations).
    """

    name: str
    model: GenerativeFunction
    args: tuple[Any, ...]
    observations: Mapping[Address, Any]
    latents: tuple[Address, ...]
    event_shapes: Mapping[Address, tuple[int, ...]]
    discrete: bool
    posterior_fn: PosteriorFn = field(repr=False)
    support: Mapping[Address, tuple[float, float]] = field(default_factory=dict)
    gaussian_prior: Mapping[Address, tuple[Any, Any]] | None = None
    scales: Mapping[Address, float] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    sbc: bool = True

    @property
    def selection(self) -> Selection:
        """The selection of every latent address."""
        return select(*self.latents)

    @property
    def continuous(self) -> bool:
        """Every latent is continuous."""
        return not self.discrete

    @property
    def observed(self) -> tuple[Address, ...]:
        """The observed addresses."""
        return tuple(self.observations)

    def observation_arrays(self, n: int) -> Draws:
        """The model's observations, repeated for ``n`` chains (``[n, *shape]`` each)."""
        out: Draws = {}
        for a, v in self.observations.items():
            arr = np.asarray(v)
            out[a] = np.broadcast_to(arr, (n, *arr.shape)).copy()
        return out

    def posterior(
        self, rng: np.random.Generator, n: int, observations: Draws | None = None
    ) -> Draws:
        """``n`` independent exact posterior draws of the latents, ``address → [n, ...]``.

        Args:
            rng: NumPy generator (a fixed seed makes the draws reproducible).
            n: number of draws.
            observations: per-draw observations ``address → [n, ...]`` (default: the
                model's own, for every draw).
        """
        obs = self.observation_arrays(n) if observations is None else observations
        return self.posterior_fn(rng, obs, n)

    def trace(self, latents: Draws, observations: Draws | None = None) -> Trace:
        """A batched trace (one chain per draw) holding ``latents`` and the observations.

        ``latents`` maps every latent address to an ``[n, ...]`` array; ``observations``
        (default: the model's own) may give each chain its own data.
        """
        n = _batch_size(latents, self.latents)
        obs = self.observation_arrays(n) if observations is None else observations
        values: dict[Address, Any] = {}
        for a in self.latents:
            values[a] = _to_mx(latents[a])
        for a in self.observed:
            values[a] = _to_mx(obs[a])
        cons = choicemap(values).with_batch_shape((n,))
        tr, _ = self.model.vgenerate(self.args, cons, n, key=mx.random.key(0))
        return tr

    def single_trace(self, latents: Mapping[Address, Any]) -> Trace:
        """An unbatched trace with the given latent values and the model's observations."""
        values = {a: _to_mx(np.asarray(latents[a])) for a in self.latents}
        values.update({a: _to_mx(np.asarray(v)) for a, v in self.observations.items()})
        tr, _ = self.model.generate(self.args, choicemap(values), key=mx.random.key(0))
        return tr

    def latent_values(self, trace: Trace) -> Draws:
        """The latent values of a batched trace as NumPy arrays ``[n, ...]``."""
        return {a: np.array(_float32_or_keep(trace[a])) for a in self.latents}

    def coordinates(self, draws: Draws) -> list[tuple[str, npt.NDArray[Any]]]:
        """Every scalar coordinate of the latents: ``[(label, values [n])]``."""
        out = []
        for a in self.latents:
            v = np.asarray(draws[a])
            n = v.shape[0]
            flat = v.reshape(n, -1)
            shape = v.shape[1:]
            for j, idx in enumerate(np.ndindex(*shape) if shape else [()]):
                name = a if isinstance(a, str) else format_address(a)
                label = name + (f"[{','.join(map(str, idx))}]" if idx else "")
                out.append((label, flat[:, j]))
        return out


def _batch_size(draws: Mapping[Address, Any], latents: tuple[Address, ...]) -> int:
    missing = [a for a in latents if a not in draws]
    if missing:
        raise KeyError(f"KernelTestModel.trace: no values for latents {missing}")
    sizes = {np.asarray(draws[a]).shape[0] for a in latents}
    if len(sizes) != 1:
        raise ValueError(f"KernelTestModel.trace: latents have different numbers of draws {sizes}")
    return int(sizes.pop())


def _to_mx(v: npt.NDArray[Any]) -> mx.array:
    arr = np.asarray(v)
    if arr.dtype == np.bool_:
        return mx.array(arr)
    if np.issubdtype(arr.dtype, np.integer):
        return mx.array(arr.astype(np.int32))
    return mx.array(arr.astype(np.float32))


def _float32_or_keep(x: mx.array) -> mx.array:
    return x.astype(mx.float32) if x.dtype == mx.bfloat16 else x


def _scalar_obs(obs: Draws, addrs: list[Address]) -> npt.NDArray[np.float64]:
    """Observations as ``[n, k]`` float64 (bools as 0/1)."""
    return np.stack([np.asarray(obs[a]).astype(np.float64) for a in addrs], axis=1)


# --------------------------------------------------------------------------- linear-Gaussian
def _gaussian_posterior(
    rng: np.random.Generator,
    y: npt.NDArray[np.float64],
    prior_mean: npt.NDArray[np.float64],
    prior_var: npt.NDArray[np.float64],
    design: npt.NDArray[np.float64],
    noise_var: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Draws of ``θ | y`` for ``θ ~ N(m0, diag v0)``, ``y = A θ + N(0, diag s2)``, per row."""
    prec = np.diag(1.0 / prior_var) + design.T @ np.diag(1.0 / noise_var) @ design
    cov = np.linalg.inv(prec)
    rhs = prior_mean / prior_var + (y / noise_var) @ design  # [n, d]
    mean = rhs @ cov
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal(mean.shape)
    out: npt.NDArray[np.float64] = mean + z @ chol.T
    return out


# --------------------------------------------------------------------------- models
_Y = (0.9, 2.1, 1.5)


@gen
def _conjugate(n_obs: int) -> Any:
    mu = normal(0.0, 2.0) @ "mu"
    for i in range(n_obs):
        normal(mu, 1.0) @ ("y", i)
    return mu


def _conjugate_posterior(rng: np.random.Generator, obs: Draws, n: int) -> Draws:
    addrs: list[Address] = [("y", i) for i in range(len(_Y))]
    y = _scalar_obs(obs, addrs)
    theta = _gaussian_posterior(
        rng, y, np.array([0.0]), np.array([4.0]), np.ones((len(_Y), 1)), np.ones(len(_Y))
    )
    return {"mu": theta[:, 0]}


conjugate_gaussian = KernelTestModel(
    name="conjugate_gaussian",
    model=_conjugate,
    args=(len(_Y),),
    observations={("y", i): v for i, v in enumerate(_Y)},
    latents=("mu",),
    event_shapes={"mu": ()},
    discrete=False,
    posterior_fn=_conjugate_posterior,
    support={"mu": (-math.inf, math.inf)},
    gaussian_prior={"mu": (0.0, 4.0)},
    scales={"mu": 1.0 / math.sqrt(0.25 + len(_Y))},
    tags=frozenset({"gaussian"}),
)
"""``mu ~ N(0, 2²)``, ``("y", i) ~ N(mu, 1)``, ``y = (0.9, 2.1, 1.5)``."""

_X_MEAN = (0.0, 0.5)


@gen
def _correlated() -> Any:
    x = normal(mx.array(_X_MEAN), 1.0) @ "x"
    normal(x[0] + x[1], 0.5) @ "y"
    return x


def _correlated_posterior(rng: np.random.Generator, obs: Draws, n: int) -> Draws:
    y = _scalar_obs(obs, ["y"])
    theta = _gaussian_posterior(
        rng, y, np.array(_X_MEAN), np.ones(2), np.ones((1, 2)), np.array([0.25])
    )
    return {"x": theta}


correlated_gaussian = KernelTestModel(
    name="correlated_gaussian",
    model=_correlated,
    args=(),
    observations={"y": 1.0},
    latents=("x",),
    event_shapes={"x": (2,)},
    discrete=False,
    posterior_fn=_correlated_posterior,
    support={"x": (-math.inf, math.inf)},
    gaussian_prior={"x": (np.array(_X_MEAN, dtype=np.float32), np.ones(2, dtype=np.float32))},
    scales={"x": math.sqrt(1.0 / 9.0)},  # posterior precision [[5, 4], [4, 5]]
    tags=frozenset({"gaussian", "correlated", "vector"}),
)
"""``x ~ N([0, 0.5], I)`` (one choice of shape ``[2]``), ``y ~ N(x₀ + x₁, 0.5²)``, ``y = 1``."""

_COIN_P = (0.3, 0.6, 0.5)
_COIN_W = (1.0, 2.0, -1.0)
_COIN_SD = 0.7


@gen
def _coins() -> Any:
    a = bernoulli(_COIN_P[0]) @ "a"
    b = bernoulli(_COIN_P[1]) @ "b"
    c = bernoulli(_COIN_P[2]) @ "c"
    mean = (
        _COIN_W[0] * a.astype(mx.float32)
        + _COIN_W[1] * b.astype(mx.float32)
        + _COIN_W[2] * c.astype(mx.float32)
    )
    return normal(mean, _COIN_SD) @ "y"


_STATES = np.array([[(s >> k) & 1 for k in range(3)] for s in range(8)], dtype=bool)


def _coins_posterior(rng: np.random.Generator, obs: Draws, n: int) -> Draws:
    y = _scalar_obs(obs, ["y"])[:, 0]  # [n]
    p = np.array(_COIN_P)
    log_prior = np.sum(np.where(_STATES, np.log(p), np.log1p(-p)), axis=1)  # [8]
    mean = _STATES.astype(np.float64) @ np.array(_COIN_W)  # [8]
    log_lik = -0.5 * ((y[:, None] - mean[None, :]) / _COIN_SD) ** 2  # [n, 8]
    logits = log_prior[None, :] + log_lik
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    u = rng.random(n)
    idx = np.minimum((probs.cumsum(axis=1) < u[:, None]).sum(axis=1), 7)
    s = _STATES[idx]
    return {"a": s[:, 0], "b": s[:, 1], "c": s[:, 2]}


discrete = KernelTestModel(
    name="discrete",
    model=_coins,
    args=(),
    observations={"y": 1.1},
    latents=("a", "b", "c"),
    event_shapes={"a": (), "b": (), "c": ()},
    discrete=True,
    posterior_fn=_coins_posterior,
    tags=frozenset({"discrete", "enumerable"}),
)
"""Three coins ``a, b, c ~ Bernoulli(0.3, 0.6, 0.5)``, ``y ~ N(a + 2b − c, 0.7²)``, ``y = 1.1``."""


class NormalMixture(Distribution):
    """``w·N(m₁, s²) + (1 − w)·N(m₂, s²)``: a two-component normal mixture (reference).

    The prior of the ``bimodal`` test model; ``sample`` picks the component with a
    uniform and shifts a standard normal, ``log_prob`` is the ``logaddexp`` of the two
    weighted component densities.
    """

    name = "normal_mixture"

    def sample(
        self, key: mx.array, w: Any, m1: Any, m2: Any, s: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        k1, k2 = mx.random.split(key)
        full = (*tuple(shape), *mx.broadcast_shapes(*(mx.array(p).shape for p in (w, m1, m2, s))))
        first = mx.random.uniform(shape=full, key=k1) < w
        out: mx.array = mx.where(first, m1, m2) + s * mx.random.normal(full, key=k2)
        return out

    def log_prob(self, value: Any, w: Any, m1: Any, m2: Any, s: Any) -> mx.array:
        x = value if isinstance(value, mx.array) else mx.array(value, dtype=mx.float32)
        c = -mx.log(mx.array(s, dtype=mx.float32)) - 0.5 * math.log(2.0 * math.pi)
        a = mx.log(mx.array(w, dtype=mx.float32)) + c - 0.5 * mx.square((x - m1) / s)
        b = mx.log1p(-mx.array(w, dtype=mx.float32)) + c - 0.5 * mx.square((x - m2) / s)
        out: mx.array = mx.logaddexp(a, b)
        return out


normal_mixture = NormalMixture()

_MIX = (0.5, -2.0, 2.0, 0.7)  # weight, means, component sd of the prior
_MIX_NOISE = 1.5
_MIX_Y = 0.8


@gen
def _bimodal() -> Any:
    x = normal_mixture(*_MIX) @ "x"
    normal(x, _MIX_NOISE) @ "y"
    return x


def _bimodal_posterior(rng: np.random.Generator, obs: Draws, n: int) -> Draws:
    """Exact: each prior component updated by the normal likelihood, reweighted by its
    marginal likelihood ``N(y; m_k, s² + σ²)``."""
    y = _scalar_obs(obs, ["y"])[:, 0]
    w, m1, m2, s = _MIX
    s2, n2 = s * s, _MIX_NOISE * _MIX_NOISE
    var = 1.0 / (1.0 / s2 + 1.0 / n2)
    mu1, mu2 = var * (m1 / s2 + y / n2), var * (m2 / s2 + y / n2)
    l1 = math.log(w) - 0.5 * (y - m1) ** 2 / (s2 + n2)
    l2 = math.log1p(-w) - 0.5 * (y - m2) ** 2 / (s2 + n2)
    p1 = 1.0 / (1.0 + np.exp(l2 - l1))
    first = rng.random(n) < p1
    return {"x": np.where(first, mu1, mu2) + math.sqrt(var) * rng.standard_normal(n)}


bimodal = KernelTestModel(
    name="bimodal",
    model=_bimodal,
    args=(),
    observations={"y": _MIX_Y},
    latents=("x",),
    event_shapes={"x": ()},
    discrete=False,
    posterior_fn=_bimodal_posterior,
    support={"x": (-math.inf, math.inf)},
    scales={"x": math.sqrt(1.0 / (1.0 / _MIX[3] ** 2 + 1.0 / _MIX_NOISE**2))},
    tags=frozenset({"multimodal", "mixture"}),
)
"""``x ~ 0.5·N(−2, 0.7²) + 0.5·N(2, 0.7²)``, ``y ~ N(x, 1.5²)``, ``y = 0.8``: the
posterior is a two-component normal mixture with modes at −1.50 and +1.79 (weights
0.24 / 0.76), five component standard deviations apart."""

_FLIPS = (True, False, True, True, False, True)
_BETA_PRIOR = (2.0, 3.0)


@gen
def _beta_coins(n_flips: int) -> Any:
    p = beta(_BETA_PRIOR[0], _BETA_PRIOR[1]) @ "p"
    for i in range(n_flips):
        bernoulli(p) @ ("x", i)
    return p


def _beta_posterior(rng: np.random.Generator, obs: Draws, n: int) -> Draws:
    x = _scalar_obs(obs, [("x", i) for i in range(len(_FLIPS))])
    k = x.sum(axis=1)
    a = _BETA_PRIOR[0] + k
    b = _BETA_PRIOR[1] + len(_FLIPS) - k
    return {"p": rng.beta(a, b)}


constrained = KernelTestModel(
    name="constrained",
    model=_beta_coins,
    args=(len(_FLIPS),),
    observations={("x", i): v for i, v in enumerate(_FLIPS)},
    latents=("p",),
    event_shapes={"p": ()},
    discrete=False,
    posterior_fn=_beta_posterior,
    support={"p": (0.0, 1.0)},
    scales={"p": math.sqrt(6.0 * 5.0 / (11.0**2 * 12.0))},  # Beta(6, 5)
    tags=frozenset({"constrained"}),
)
"""``p ~ Beta(2, 3)``, six flips ``("x", i) ~ Bernoulli(p)`` (four heads): ``Beta(6, 5)``."""

KERNEL_TEST_MODELS: dict[str, KernelTestModel] = {
    m.name: m for m in (conjugate_gaussian, correlated_gaussian, discrete, bimodal, constrained)
}
"""The kernel kit's models by name, in the order the kit runs them."""
