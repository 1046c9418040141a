"""The distribution conformance kit: it passes correct distributions, catches broken ones.

The reference distributions of :mod:`genmlx.core.testing.models` must pass every check;
each deliberately broken distribution below must fail the check that targets its flaw
(and the report must say why).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import Distribution
from genmlx.core.testing import (
    DISTRIBUTION_CHECKS,
    check_distribution,
    check_log_prob_gradients,
    check_sampler_density,
)
from genmlx.core.testing.distributions import (
    chi2_sf,
    kolmogorov_sf,
    ks_2samp_pvalue,
    ks_pvalue,
)
from genmlx.core.testing.models import bernoulli, beta, normal

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _a(x: Any) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)


# --------------------------------------------------------------------------- statistics
def test_p_value_functions_match_tables() -> None:
    # chi-square upper quantiles (Abramowitz & Stegun table 26.8)
    assert chi2_sf(3.841459, 1) == pytest.approx(0.05, rel=1e-5)
    assert chi2_sf(18.307038, 10) == pytest.approx(0.05, rel=1e-5)
    assert chi2_sf(63.690740, 40) == pytest.approx(0.01, rel=1e-5)
    assert chi2_sf(0.0, 3) == 1.0
    # Kolmogorov distribution: P(K > 1.3581) = 0.05, P(K > 1.6276) = 0.01
    assert kolmogorov_sf(1.358099) == pytest.approx(0.05, rel=1e-4)
    assert kolmogorov_sf(1.627624) == pytest.approx(0.01, rel=1e-4)
    assert ks_pvalue(0.0, 100) == 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=2000), rng.normal(size=3000)
    assert ks_2samp_pvalue(a, b) > 1e-3
    assert ks_2samp_pvalue(a, b + 0.3) < 1e-6


# --------------------------------------------------------------------------- references pass
@pytest.mark.parametrize(
    ("dist", "params"),
    [
        (normal, (0.5, 2.0)),
        (normal, (mx.array([0.0, 1.0, -2.0]), mx.array([1.0, 0.1, 3.0]))),
        (normal, (mx.array([[0.0], [5.0]]), mx.array([1.0, 2.0]))),
        (bernoulli, (0.3,)),
        (bernoulli, (mx.array([0.1, 0.5, 0.97]),)),
        (beta, (2.0, 3.0)),
    ],
    ids=["normal", "normal-batched", "normal-broadcast", "bernoulli", "bernoulli-batched", "beta"],
)
def test_reference_distributions_pass(dist: Distribution, params: tuple[Any, ...]) -> None:
    report = check_distribution(dist, params, max_examples=2)
    assert report.passed
    names = {r.name for r in report.results}
    expected = set(DISTRIBUTION_CHECKS)
    if not dist.has_reparam:
        expected.discard("reparam_sample")
    if not dist.is_enumerable:
        expected.discard("support_sums_to_one")
    assert names == expected, str(report)


def test_checks_can_be_selected_and_unknown_ones_rejected() -> None:
    report = check_distribution(normal, (0.0, 1.0), checks=["shapes"], max_examples=1)
    assert [r.name for r in report.results] == ["shapes"]
    with pytest.raises(ValueError, match="unknown checks"):
        check_distribution(normal, (0.0, 1.0), checks=["shape"])


# --------------------------------------------------------------------------- broken ones
class ShiftedNormal(Distribution):
    """Samples N(mu, sigma) but states the density of N(mu + 0.1 sigma, sigma)."""

    name = "shifted_normal"
    has_reparam = True

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: tuple[int, ...] = ()) -> Any:
        return normal.sample(key, mu, sigma, shape=shape)

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> Any:
        return normal.log_prob(value, _a(mu) + 0.1 * _a(sigma), sigma)


class UnnormalizedNormal(Distribution):
    """Right shape, but the density forgets ``−log σ`` (integrates to σ)."""

    name = "unnormalized_normal"

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: tuple[int, ...] = ()) -> Any:
        return normal.sample(key, mu, sigma, shape=shape)

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> Any:
        z = (_a(value) - _a(mu)) / _a(sigma)
        return -0.5 * z * z - HALF_LOG_2PI


class WrongScaleNormal(Distribution):
    """Samples with standard deviation 1.1 σ; the density says σ."""

    name = "wrong_scale_normal"

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: tuple[int, ...] = ()) -> Any:
        return normal.sample(key, mu, 1.1 * _a(sigma), shape=shape)

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> Any:
        return normal.log_prob(value, mu, sigma)


def test_sampler_density_disagreement_is_caught() -> None:
    fit, norm = check_sampler_density(ShiftedNormal(), (0.0, 1.0))
    assert not fit.passed and "KS test" in fit.detail
    assert norm.passed  # the shifted density is still normalised
    with pytest.raises(AssertionError, match="FAIL sampler_density"):
        check_distribution(ShiftedNormal(), (0.0, 1.0), max_examples=1)


def test_a_ten_percent_scale_error_is_caught() -> None:
    fit, _ = check_sampler_density(WrongScaleNormal(), (mx.array([1.0, 3.0]), 2.0))
    assert not fit.passed, fit.detail


def test_an_unnormalised_density_is_caught() -> None:
    fit, norm = check_sampler_density(UnnormalizedNormal(), (0.0, 2.0))
    assert not norm.passed and "integrates to 2" in norm.detail
    assert not fit.passed  # the CDF ends at 2, far from the empirical one


class NaNOutsideSupport(Distribution):
    """Exponential whose log density is NaN (not -inf) for negative values."""

    name = "nan_exponential"

    def sample(self, key: mx.array, rate: Any, *, shape: tuple[int, ...] = ()) -> Any:
        u = mx.random.uniform(shape=tuple(shape) + _a(rate).shape, key=key)
        return -mx.log1p(-u) / _a(rate)

    def log_prob(self, value: Any, rate: Any) -> Any:
        x = _a(value)
        return mx.log(_a(rate)) - _a(rate) * x + 0.0 * mx.log(x)  # NaN for x < 0


def test_nan_outside_the_support_is_caught() -> None:
    fit, _ = check_sampler_density(NaNOutsideSupport(), (1.5,))
    assert not fit.passed and "NaN" in fit.detail and "-inf outside the support" in fit.detail


class FlippedBernoulli(Distribution):
    """Samples Bernoulli(1 − p) but states the mass of Bernoulli(p)."""

    name = "flipped_bernoulli"
    is_discrete = True
    is_enumerable = True

    def sample(self, key: mx.array, p: Any, *, shape: tuple[int, ...] = ()) -> Any:
        return bernoulli.sample(key, 1.0 - _a(p), shape=shape)

    def log_prob(self, value: Any, p: Any) -> Any:
        return bernoulli.log_prob(value, p)

    def support(self, *params: Any) -> mx.array:
        return mx.array([False, True])


class HalfMassGeometric(Distribution):
    """Geometric sampler (failures before the first success) whose pmf sums to 1/2."""

    name = "half_geometric"
    is_discrete = True

    def sample(self, key: mx.array, p: Any, *, shape: tuple[int, ...] = ()) -> Any:
        u = mx.random.uniform(shape=tuple(shape) + _a(p).shape, key=key)
        return mx.floor(mx.log1p(-u) / mx.log1p(-_a(p))).astype(mx.int32)

    def log_prob(self, value: Any, p: Any) -> Any:
        k = _a(value).astype(mx.float32)
        lp = k * mx.log1p(-_a(p)) + mx.log(_a(p)) - math.log(2.0)
        return mx.where(k >= 0, lp, -mx.inf)


class DoubleMassGeometric(HalfMassGeometric):
    name = "double_geometric"

    def log_prob(self, value: Any, p: Any) -> Any:
        return super().log_prob(value, p) + 2 * math.log(2.0)


class Geometric(HalfMassGeometric):
    name = "geometric"

    def log_prob(self, value: Any, p: Any) -> Any:
        return super().log_prob(value, p) + math.log(2.0)


def test_discrete_disagreement_is_caught() -> None:
    fit, norm = check_sampler_density(FlippedBernoulli(), (0.3,))
    assert not fit.passed and "chi-square" in fit.detail
    assert norm.passed


def test_correct_infinite_support_discrete_passes() -> None:
    report = check_distribution(Geometric(), (mx.array([0.2, 0.7]),), max_examples=1)
    assert report.passed


def test_unnormalised_infinite_support_pmf_is_caught() -> None:
    fit, _ = check_sampler_density(HalfMassGeometric(), (0.3,))
    assert not fit.passed  # half of the samples fall in the "everything else" cell
    _, norm = check_sampler_density(DoubleMassGeometric(), (0.3,))
    assert not norm.passed and "> 1" in norm.detail


class BadGradientNormal(Distribution):
    """Correct values, but the gradient w.r.t. sigma is dropped (stop_gradient)."""

    name = "bad_gradient_normal"

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: tuple[int, ...] = ()) -> Any:
        return normal.sample(key, mu, sigma, shape=shape)

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> Any:
        s = _a(sigma)
        z = (_a(value) - _a(mu)) / s
        return -0.5 * z * z - mx.log(mx.stop_gradient(s)) - HALF_LOG_2PI


def test_wrong_gradients_are_caught() -> None:
    res = check_log_prob_gradients(BadGradientNormal(), (0.0, 1.5), mx.random.key(1))
    assert not res.passed and "param[1]" in res.detail
    assert check_log_prob_gradients(normal, (0.0, 1.5), mx.random.key(1)).passed


class GlobalStateNormal(Distribution):
    """Ignores its key (draws from MLX's global generator): vmap over keys breaks."""

    name = "global_state_normal"

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: tuple[int, ...] = ()) -> Any:
        m, s = _a(mu), _a(sigma)
        return m + s * mx.random.normal(tuple(shape) + m.shape)

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> Any:
        return normal.log_prob(value, mu, sigma)


def test_sampling_that_ignores_its_key_is_caught() -> None:
    report = check_distribution(
        GlobalStateNormal(), (0.0, 1.0), checks=["batched_sampling"], raise_on_failure=False
    )
    assert not report.passed and "vmap over keys" in report.failures[0].detail


class IgnoresShape(Distribution):
    """Forgets the ``shape`` argument."""

    name = "ignores_shape"

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: tuple[int, ...] = ()) -> Any:
        return normal.sample(key, mu, sigma)

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> Any:
        return normal.log_prob(value, mu, sigma)


def test_shape_contract_violations_are_caught() -> None:
    report = check_distribution(
        IgnoresShape(), (mx.zeros(2), 1.0), checks=["shapes"], raise_on_failure=False
    )
    assert not report.passed
    assert "sample(shape=(3,)) has shape (2,), expected (3, 2)" in report.failures[0].detail


class MVNormal(Distribution):
    """A two-dimensional normal with a fixed correlation ``rho`` (event_ndim = 1).

    ``lie`` makes the density claim correlation ``rho + lie`` while sampling ``rho``.
    """

    name = "mvn2"
    event_ndim = 1
    example_params: ClassVar[list[tuple[Any, ...]]] = [(0.5,)]

    def __init__(self, lie: float = 0.0) -> None:
        self.lie = lie

    def sample(self, key: mx.array, rho: Any, *, shape: tuple[int, ...] = ()) -> Any:
        r = _a(rho)
        e = mx.random.normal((*tuple(shape), *r.shape, 2), key=key)
        x1 = e[..., 0]
        x2 = r * e[..., 0] + mx.sqrt(1 - r * r) * e[..., 1]
        return mx.stack([x1, x2], axis=-1)

    def log_prob(self, value: Any, rho: Any) -> Any:
        v = _a(value)
        r = _a(rho) + self.lie
        x1, x2 = v[..., 0], v[..., 1]
        q = (x1 * x1 - 2 * r * x1 * x2 + x2 * x2) / (1 - r * r)
        return -0.5 * q - 0.5 * mx.log(1 - r * r) - 2 * HALF_LOG_2PI


def test_multivariate_reference_passes_and_disagreement_is_caught() -> None:
    assert check_distribution(MVNormal(), (mx.array([0.5, -0.8]),), max_examples=1).passed
    fit, norm = check_sampler_density(MVNormal(lie=0.2), (0.5,))
    assert not fit.passed and "full conditional" in fit.detail
    assert norm.passed  # still a normalised density


class Dirichlet3(Distribution):
    """Dirichlet(1, 2, 3) by normalised exponentials/gammas of integer shape (event_ndim 1)."""

    name = "dirichlet123"
    event_ndim = 1

    def sample(self, key: mx.array, *, shape: tuple[int, ...] = ()) -> Any:
        u = mx.random.uniform(shape=(*tuple(shape), 6), key=key)
        e = -mx.log1p(-u)
        g = mx.stack([e[..., 0], e[..., 1] + e[..., 2], e[..., 3] + e[..., 4] + e[..., 5]], -1)
        return g / mx.sum(g, axis=-1, keepdims=True)

    def log_prob(self, value: Any) -> Any:
        v = _a(value)
        ok = mx.all(v > 0, axis=-1) & (mx.abs(mx.sum(v, axis=-1) - 1) < 1e-4)
        safe = mx.where(v > 0, v, 1.0)
        lp = math.log(120.0) + mx.log(safe[..., 1]) + 2 * mx.log(safe[..., 2])
        return mx.where(ok, lp, -mx.inf)


def test_simplex_valued_distribution_is_tested_on_its_affine_hull() -> None:
    report = check_distribution(Dirichlet3(), (), max_examples=1)
    sd = next(r for r in report.results if r.name == "sampler_density")
    assert "hull dims [2] of 3" in sd.detail


class LyingDirichlet3(Dirichlet3):
    """Samples Dirichlet(1, 2, 3) but states the density of Dirichlet(1, 2, 3.4)."""

    name = "lying_dirichlet"

    def log_prob(self, value: Any) -> Any:
        v = _a(value)
        ok = mx.all(v > 0, axis=-1) & (mx.abs(mx.sum(v, axis=-1) - 1) < 1e-4)
        safe = mx.where(v > 0, v, 1.0)
        a = (1.0, 2.0, 3.4)
        log_norm = math.lgamma(sum(a)) - sum(math.lgamma(ai) for ai in a)
        lp = log_norm + sum((a[i] - 1) * mx.log(safe[..., i]) for i in range(3))
        return mx.where(ok, lp, -mx.inf)


def test_constrained_multivariate_disagreement_is_caught() -> None:
    fit, _ = check_sampler_density(LyingDirichlet3(), ())
    assert not fit.passed and "full conditional" in fit.detail
