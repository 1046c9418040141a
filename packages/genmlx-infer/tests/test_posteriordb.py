"""The six posteriordb examples (``examples/posteriordb/``) sampled by ``mcmc``.

* default run: each model's log density against an independent NumPy/SciPy transcription
  of the Stan program (differences between points, so constants cancel), the vectorised
  pieces against their loops, and a few NUTS transitions of every model so they keep
  running;
* ``slow``: 4 chains x 1000 warm-up + 1000 draws per model against posteriordb's
  reference summaries (Stan, 10 x 1000 thinned draws): every parameter's
  ``|z| = |mean - ref_mean| / (ref_sd / sqrt(ESS)) <= 5`` (ESS: the run's bulk ESS) and
  ``|sd / ref_sd - 1| <= 0.15``.

The data are not in the repository: the tests skip, saying so, unless they are found
(``GENMLX_POSTERIORDB``, ``$GENMLX_SHARED_DIR/posteriordb`` or ``../shared/posteriordb``).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx.core import choicemap

ROOT = Path(__file__).resolve().parents[3] / "examples" / "posteriordb"
_PKG = "genmlx_posteriordb_examples"


def _package() -> ModuleType:
    if _PKG in sys.modules:
        return sys.modules[_PKG]
    spec = importlib.util.spec_from_file_location(
        _PKG, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    assert spec is not None and spec.loader is not None
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[_PKG] = pkg
    spec.loader.exec_module(pkg)
    return pkg


def _module(name: str) -> ModuleType:
    _package()
    return importlib.import_module(f"{_PKG}.{name}")


COMMON = _module("_common")
MODULES: tuple[str, ...] = _package().MODULES


def _data_or_skip() -> Path:
    try:
        return COMMON.data_dir()
    except COMMON.DataNotFoundError as e:
        pytest.skip(f"posteriordb data not available: {e}")


# ----------------------------------------------------------------- log densities
def _assess(m: ModuleType, data: dict[str, Any], values: dict[str, Any]) -> float:
    args, obs = m.inputs(data)
    cm = choicemap({k: mx.array(np.asarray(v, dtype=np.float32)) for k, v in values.items()})
    lp, _ = m.model.assess(args, cm.merge(obs))
    return float(lp)


def _garch_stan(data: dict[str, Any], mu: float, a0: float, a1: float, b1: float) -> float:
    y = np.asarray(data["y"], dtype=np.float64)
    s = np.empty_like(y)
    s[0] = data["sigma1"]
    for t in range(1, y.size):
        s[t] = math.sqrt(a0 + a1 * (y[t - 1] - mu) ** 2 + b1 * s[t - 1] ** 2)
    return float(stats.norm(mu, s).logpdf(y).sum())  # flat priors on the ranges


def _mix_stan(data: dict[str, Any], mu: list[float], sg: list[float], th: float) -> float:
    y = np.asarray(data["y"], dtype=np.float64)
    lp = stats.norm(0, 2).logpdf(sg).sum() + stats.norm(0, 2).logpdf(mu).sum()
    lp += stats.beta(5, 5).logpdf(th)
    comp = np.logaddexp(np.log(th) + stats.norm(mu[0], sg[0]).logpdf(y),
                        np.log1p(-th) + stats.norm(mu[1], sg[1]).logpdf(y))
    return float(lp + comp.sum())


def _kidiq_stan(data: dict[str, Any], b: list[float], sigma: float) -> float:
    x = np.asarray(data["mom_iq"], dtype=np.float64)
    y = np.asarray(data["kid_score"], dtype=np.float64)
    lik = stats.norm(b[0] + b[1] * x, sigma).logpdf(y).sum()
    return float(stats.cauchy(0, 2.5).logpdf(sigma) + lik)


def _ark_stan(data: dict[str, Any], alpha: float, beta: list[float], sigma: float) -> float:
    y = np.asarray(data["y"], dtype=np.float64)
    k = int(data["K"])
    lp = stats.norm(0, 10).logpdf(alpha) + stats.norm(0, 10).logpdf(beta).sum()
    lp += stats.cauchy(0, 2.5).logpdf(sigma)
    for t in range(k, y.size):
        mu = alpha + sum(beta[j] * y[t - j - 1] for j in range(k))
        lp += stats.norm(mu, sigma).logpdf(y[t])
    return float(lp)


def _gp_stan(data: dict[str, Any], rho: float, alpha: float, ft: np.ndarray) -> float:
    gp = _module("gp_pois_regr")
    x = np.asarray(data["x"], dtype=np.float64)
    f = gp.f_numpy(x, np.array(alpha), np.array(rho), ft)
    lp = stats.gamma(25, scale=1 / 4).logpdf(rho) + stats.norm(0, 2).logpdf(alpha)
    lp += stats.norm(0, 1).logpdf(ft).sum() + stats.poisson(np.exp(f)).logpmf(data["k"]).sum()
    return float(lp)


def _es_stan(data: dict[str, Any], tt: np.ndarray, mu: float, tau: float) -> float:
    y, sg = np.asarray(data["y"], float), np.asarray(data["sigma"], float)
    lp = stats.norm(0, 1).logpdf(tt).sum() + stats.norm(0, 5).logpdf(mu)
    lp += stats.cauchy(0, 5).logpdf(tau) + stats.norm(tt * tau + mu, sg).logpdf(y).sum()
    return float(lp)


RNG = np.random.default_rng(0)
POINTS: dict[str, Any] = {
    "garch": (
        lambda d, p: _garch_stan(d, *p),
        [(5.0, 1.4, 0.55, 0.3), (4.9, 1.0, 0.7, 0.2), (5.2, 2.0, 0.4, 0.5)],
        lambda p: {"mu": p[0], "alpha0": p[1], "alpha1": p[2], "beta1": p[3]},
    ),
    "low_dim_gauss_mix": (
        lambda d, p: _mix_stan(d, *p),
        [([-2.7, 2.9], [1.0, 1.05], 0.62), ([-2.6, 2.8], [1.1, 0.95], 0.6)],
        lambda p: {"mu": p[0], "sigma": p[1], "theta": p[2]},
    ),
    "kidiq": (
        lambda d, p: _kidiq_stan(d, *p),
        [([26.0, 0.6], 18.3), ([20.0, 0.65], 18.0)],
        lambda p: {"beta": p[0], "sigma": p[1]},
    ),
    "arK": (
        lambda d, p: _ark_stan(d, *p),
        [(0.0, [0.7, 0.44, 0.1, -0.03, -0.3], 0.15), (0.01, [0.6, 0.4, 0.2, 0.0, -0.2], 0.16)],
        lambda p: {"alpha": p[0], "beta": p[1], "sigma": p[2]},
    ),
    "gp_pois_regr": (
        lambda d, p: _gp_stan(d, *p),
        [(5.6, 2.9, RNG.normal(size=11)), (4.5, 2.0, RNG.normal(size=11)),
         (9.0, 3.5, RNG.normal(size=11))],
        lambda p: {"rho": p[0], "alpha": p[1], "f_tilde": p[2]},
    ),
    "eight_schools": (
        lambda d, p: _es_stan(d, *p),
        [(RNG.normal(size=8), 4.4, 3.6), (RNG.normal(size=8), 0.0, 0.5)],
        lambda p: {"theta_trans": p[0], "mu": p[1], "tau": p[2]},
    ),
}


@pytest.mark.parametrize("name", MODULES)
def test_log_density_matches_the_stan_program(name: str) -> None:
    _data_or_skip()
    m = _module(name)
    data = COMMON.load_data(m.DATA)
    stan, points, as_values = POINTS[name]
    ours = [_assess(m, data, as_values(p)) for p in points]
    ref = [stan(data, p) for p in points]
    for i in range(1, len(points)):
        # constants (normalisers Stan drops) cancel in differences
        assert ours[i] - ours[0] == pytest.approx(ref[i] - ref[0], rel=2e-4, abs=2e-2), name


def test_vectorised_pieces_match_their_loops() -> None:
    garch, ark = _module("garch"), _module("arK")
    y = RNG.normal(5.0, 2.0, size=40)
    s = garch.volatility(mx.array(y.astype(np.float32)), mx.array(0.5), mx.array(5.0),
                         mx.array(1.3), mx.array(0.5), mx.array(0.35))
    ref = np.empty_like(y)
    ref[0] = 0.5
    for t in range(1, y.size):
        ref[t] = math.sqrt(1.3 + 0.5 * (y[t - 1] - 5.0) ** 2 + 0.35 * ref[t - 1] ** 2)
    np.testing.assert_allclose(np.array(s), ref, rtol=2e-5)
    lags = ark.lag_matrix(y, 3)
    assert lags.shape == (37, 3)
    for t in range(3, y.size):
        np.testing.assert_array_equal(lags[t - 3], [y[t - 1], y[t - 2], y[t - 3]])
    gp = _module("gp_pois_regr")
    x = np.arange(-10.0, 11.0, 2.0)
    ft = RNG.normal(size=11)
    f = gp.latent_f(mx.array(x.astype(np.float32)), mx.array(2.5), mx.array(7.0),
                    mx.array(ft.astype(np.float32)))
    np.testing.assert_allclose(np.array(f), gp.f_numpy(x, np.array(2.5), np.array(7.0), ft),
                               rtol=1e-5, atol=1e-5)


def test_ordered_normal_is_normalised_on_increasing_vectors() -> None:
    mix = _module("low_dim_gauss_mix")
    on = mix.ordered_normal
    # 2D: ∫_{x1 < x2} 2 N(x1) N(x2) = 1; check by a grid
    g = np.linspace(-6, 6, 241)
    x1, x2 = np.meshgrid(g, g, indexing="ij")
    v = mx.array(np.stack([x1, x2], -1).astype(np.float32))
    p = np.exp(np.array(on.log_prob(v, mx.zeros(2), 1.0)))
    h = g[1] - g[0]
    # the grid's diagonal points lie on the boundary (density -inf there): count them
    # half, with the density's limit 2 N(x)² (trapezoidal rule)
    diag = 2 * stats.norm.pdf(g) ** 2
    assert float(p.sum() * h * h + 0.5 * diag.sum() * h * h) == pytest.approx(1.0, abs=2e-3)
    draws = on.sample(mx.random.key(0), mx.zeros(3), 1.0, shape=(100,))
    assert bool(mx.all(draws[:, 1:] > draws[:, :-1]))


def test_data_not_found_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENMLX_POSTERIORDB", str(tmp_path))
    monkeypatch.delenv("GENMLX_SHARED_DIR", raising=False)
    monkeypatch.setattr(COMMON, "_REPO", tmp_path / "repo")
    with pytest.raises(COMMON.DataNotFoundError, match="Set GENMLX_POSTERIORDB"):
        COMMON.load_data("eight_schools")


# ----------------------------------------------------------------- sampling
@pytest.mark.parametrize("name", MODULES)
def test_each_model_runs_a_few_transitions(name: str) -> None:
    _data_or_skip()
    m = _module(name)
    res, draws = COMMON.run(m, n_chains=2, n_warmup=4, n_samples=4, key=1, warn=False,
                            max_depth=5)
    ref = COMMON.reference(m.POSTERIOR)
    assert set(draws) == set(ref["params"])
    for name_, a in draws.items():
        assert a.shape == (2, 4) and np.all(np.isfinite(a)), name_


@pytest.mark.slow
@pytest.mark.parametrize("name", MODULES)
def test_posterior_matches_the_reference(name: str) -> None:
    _data_or_skip()
    m = _module(name)
    res, draws = COMMON.run(m, n_chains=4, n_warmup=1000, n_samples=1000, key=0, warn=False)
    checks = COMMON.check(draws, COMMON.reference(m.POSTERIOR))
    report = "\n".join(str(c) for c in checks)
    assert all(c.ok(z_max=5.0, sd_tol=0.15) for c in checks), f"{name}:\n{report}"
