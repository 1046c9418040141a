"""Runs examples/outlier_regression.py (the inference tutorial's code) at fast settings.

Bound: given which points are inliers, the posterior of ``(slope, intercept)`` is
(up to the negligible shrinkage of the ``N(0, 2²)`` prior) the least-squares
sampling distribution, with standard deviations ``sd_slope = σ/√Sxx`` and
``sd_intercept = σ·√(1/n + x̄²/Sxx)`` over the ``n`` inliers. The posterior mean lies
within a few of those of the truth (the data are one draw around the true line), so
the test asserts ``|estimate − truth| < 5·sd_post + 5·SE`` with ``SE`` the Monte-Carlo
standard error of the chain average (spread of the per-chain means over √chains).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import mlx.core as mx
import numpy as np

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "outlier_regression.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("outlier_regression", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_outlier_regression_recovers_the_line() -> None:
    ex = _load()
    xs, ys = ex.simulate_data()
    inliers = np.array([i not in ex.OUTLIERS for i in range(xs.shape[0])])
    x_in = np.array(xs)[inliers]
    sxx = float(((x_in - x_in.mean()) ** 2).sum())
    sd_slope = ex.NOISE / math.sqrt(sxx)
    sd_intercept = ex.NOISE * math.sqrt(1.0 / x_in.size + x_in.mean() ** 2 / sxx)

    mc = ex.run_mcmc(xs, ys, n_chains=20, n_steps=15, burn_in=5, key=mx.random.key(2))
    assert abs(mc["slope"] - ex.TRUE_SLOPE) < 5 * sd_slope + 5 * mc["slope_se"], mc
    assert abs(mc["intercept"] - ex.TRUE_INTERCEPT) < 5 * sd_intercept + 5 * mc["intercept_se"]
    # the bound is informative: far tighter than the prior's sd of 2
    assert 5 * sd_slope < 0.25 and 5 * sd_intercept < 0.75
    # the three planted outliers are the points flagged with probability > 1/2
    flagged = {i for i, p in enumerate(mc["p_outlier"]) if p > 0.5}
    assert flagged == set(ex.OUTLIERS)
    assert 0.2 < mc["acceptance"] <= 1.0


def test_importance_sampling_runs() -> None:
    ex = _load()
    xs, ys = ex.simulate_data()
    res = ex.run_importance(xs, ys, 2000, mx.random.key(1))
    # the prior is a poor proposal for 20 points: the ESS is small but valid
    assert 1.0 <= res["ess"] <= 2000.0
    assert math.isfinite(res["slope"]) and math.isfinite(res["intercept"])
