"""Adapters running ../shared/conformance/cross-system/{logprob,stability,gradient}_tests.json.

The specification is shared by several Gen implementations and names distributions and
parameters its own way; the adapter maps them onto genmlx.dists' public
parameterisations (DESIGN §6) and never changes the library:

* ``categorical`` takes ``logits`` in the spec → our ``categorical_logits``;
* ``lognormal`` → ``log_normal``; ``mvn`` → ``mv_normal``; ``discrete_uniform`` →
  ``uniform_discrete`` (inclusive bounds, as in the spec); ``lo``/``hi`` → ``low``/``high``;
* ``wishart``/``inv_wishart`` ``scale_matrix`` → the ``scale`` argument;
* ``bernoulli`` values ``0``/``1`` → booleans (our bernoulli's values);
* integer-valued distributions get int32 values, continuous ones float32.

Expected values: ``analytical`` where the spec gives one; otherwise (the out-of-support
cases and some stability cases) ``-inf`` for a case the spec marks out of support, and
scipy.stats' float64 log density for the rest. Located like genmlx-core's adapter:
``$GENMLX_SHARED_DIR`` or ``<repo>/../shared``; absent, each file gives one skipped case.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

import genmlx.dists as gd

REPO_ROOT = Path(__file__).resolve().parents[3]
SKIP_REASON = (
    "cross-system conformance data not found: it lives in ../shared beside the repository "
    "(the developers' checkout), not in a user's clone; set GENMLX_SHARED_DIR to run it"
)
F32_EPS = 1.2e-7


def shared_dir() -> Path | None:
    """``$GENMLX_SHARED_DIR`` or ``<repo>/../shared``, when it holds the spec."""
    env = os.environ.get("GENMLX_SHARED_DIR")
    for c in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared"]:
        if (c / "conformance" / "cross-system").is_dir():
            return c
    return None


def spec(name: str) -> dict[str, Any]:
    d = shared_dir()
    if d is None:
        return {}
    data: dict[str, Any] = json.loads((d / "conformance" / "cross-system" / name).read_text())
    return data


LOGPROB = spec("logprob_tests.json")
STABILITY = spec("stability_tests.json")
GRADIENT = spec("gradient_tests.json")


def cases(data: dict[str, Any], key: str) -> list[Any]:
    """Parametrize values for ``data[key]`` (comment rows dropped), or one skipped case."""
    if not data:
        return [pytest.param({"id": "missing"}, marks=pytest.mark.skip(reason=SKIP_REASON))]
    return [pytest.param(c, id=c["id"]) for c in data[key] if "dist" in c]


# --------------------------------------------------------------------------- the mapping
# spec name -> (our distribution, the spec's parameter names in our argument order,
#               value kind: "float" | "int" | "bool")
MAPPING: dict[str, tuple[str, tuple[str, ...], str]] = {
    "normal": ("normal", ("mu", "sigma"), "float"),
    "uniform": ("uniform", ("lo", "hi"), "float"),
    "bernoulli": ("bernoulli", ("p",), "bool"),
    "beta": ("beta", ("alpha", "beta"), "float"),
    "gamma": ("gamma", ("shape", "rate"), "float"),
    "exponential": ("exponential", ("rate",), "float"),
    "laplace": ("laplace", ("loc", "scale"), "float"),
    "cauchy": ("cauchy", ("loc", "scale"), "float"),
    "poisson": ("poisson", ("rate",), "int"),
    "binomial": ("binomial", ("n", "p"), "int"),
    "geometric": ("geometric", ("p",), "int"),
    "lognormal": ("log_normal", ("mu", "sigma"), "float"),
    "inv_gamma": ("inv_gamma", ("shape", "scale"), "float"),
    "student_t": ("student_t", ("df", "loc", "scale"), "float"),
    "categorical": ("categorical_logits", ("logits",), "int"),
    "dirichlet": ("dirichlet", ("alpha",), "float"),
    "mvn": ("mv_normal", ("mu", "cov"), "float"),
    "neg_binomial": ("neg_binomial", ("r", "p"), "int"),
    "discrete_uniform": ("uniform_discrete", ("lo", "hi"), "int"),
    "truncated_normal": ("truncated_normal", ("mu", "sigma", "lo", "hi"), "float"),
    "von_mises": ("von_mises", ("mu", "kappa"), "float"),
    "wrapped_cauchy": ("wrapped_cauchy", ("mu", "rho"), "float"),
    "wrapped_normal": ("wrapped_normal", ("mu", "sigma"), "float"),
    "wishart": ("wishart", ("df", "scale_matrix"), "float"),
    "inv_wishart": ("inv_wishart", ("df", "scale_matrix"), "float"),
}


def dist_of(case: dict[str, Any]) -> Any:
    return getattr(gd, MAPPING[case["dist"]][0])


def value_of(case: dict[str, Any]) -> mx.array:
    kind = MAPPING[case["dist"]][2]
    v = case["value"]
    if kind == "bool":
        return mx.array(bool(v))
    if kind == "int":
        return mx.array(v, dtype=mx.int32)
    return mx.array(v, dtype=mx.float32)


def params_of(case: dict[str, Any]) -> list[Any]:
    """The spec's parameters as arrays in our argument order (float32; ints stay ints).

    Arrays, not Python numbers, so that ``mx.grad`` can differentiate any of them; the
    library treats array and plain-number parameters alike apart from eager validation.
    """
    ours, names, _ = MAPPING[case["dist"]]
    # uniform_discrete's bounds are integers; every other parameter is real-valued
    dtype = mx.int32 if ours == "uniform_discrete" else mx.float32
    return [mx.array(case["params"][n], dtype=dtype) for n in names]


# --------------------------------------------------------------------------- references
def scipy_logpdf(case: dict[str, Any]) -> float:
    """float64 reference log density for a spec case without an ``analytical`` value."""
    d, v, p = case["dist"], case["value"], case["params"]
    if d == "normal":
        return float(stats.norm.logpdf(v, p["mu"], p["sigma"]))
    if d == "beta":
        return float(stats.beta.logpdf(v, p["alpha"], p["beta"]))
    if d == "gamma":
        return float(stats.gamma.logpdf(v, p["shape"], scale=1.0 / p["rate"]))
    if d == "poisson":
        return float(stats.poisson.logpmf(v, p["rate"]))
    if d == "categorical":
        logits = np.asarray(p["logits"], dtype=np.float64)
        return float(logits[v] - np.logaddexp.reduce(logits))
    if d == "exponential":
        return float(stats.expon.logpdf(v, scale=1.0 / p["rate"]))
    if d == "neg_binomial":
        return float(stats.nbinom.logpmf(v, p["r"], p["p"]))
    if d == "truncated_normal":
        a, b = (p["lo"] - p["mu"]) / p["sigma"], (p["hi"] - p["mu"]) / p["sigma"]
        return float(stats.truncnorm.logpdf(v, a, b, loc=p["mu"], scale=p["sigma"]))
    if d == "von_mises":
        return float(stats.vonmises.logpdf(v, p["kappa"], loc=p["mu"]))
    if d == "wishart":
        return float(stats.wishart.logpdf(np.asarray(v), p["df"], np.asarray(p["scale_matrix"])))
    if d == "inv_wishart":
        return float(stats.invwishart.logpdf(np.asarray(v), p["df"], np.asarray(p["scale_matrix"])))
    if d == "discrete_uniform":
        return -math.log(p["hi"] - p["lo"] + 1)
    if d == "lognormal":
        return float(stats.lognorm.logpdf(v, p["sigma"], scale=math.exp(p["mu"])))
    if d == "inv_gamma":
        return float(stats.invgamma.logpdf(v, p["shape"], scale=p["scale"]))
    raise KeyError(d)


def expected_of(case: dict[str, Any]) -> float:
    if "analytical" in case:
        return float(case["analytical"])
    if "out of support" in case.get("note", ""):
        return -math.inf
    return scipy_logpdf(case)


LGAMMA_HEAVY = {
    "beta",
    "gamma",
    "inv_gamma",
    "student_t",
    "poisson",
    "binomial",
    "neg_binomial",
    "dirichlet",
    "von_mises",
}


def logprob_tolerance(case: dict[str, Any], base: float) -> float:
    """The spec's tolerance rule (``tolerance_note``): 1e-5 by default, 1e-4 for
    lgamma-heavy densities (and von Mises, whose ``log I0`` is float32), 1e-3 for the
    matrix distributions."""
    if case["dist"] in ("wishart", "inv_wishart"):
        return max(base, 1e-3)
    if case["dist"] in LGAMMA_HEAVY:
        return max(base, 1e-4)
    return base


def check_close(actual: mx.array, expected: float, tol: float, what: str) -> None:
    """``|actual − expected| ≤ tol + 8 ε₃₂ |expected|`` (−inf must be −inf exactly).

    The spec's tolerances are absolute, but a float32 result of magnitude |e| cannot be
    closer than about ε₃₂·|e| to the float64 truth (one ulp of 1e6 is 0.06, while the
    stability case ``stab-invgamma-tiny`` expects −999958.6 within 0.01), so the bound
    grows by 8 float32 epsilons of the magnitude: 1e-6 relative, far below any
    modelling error, and irrelevant for the O(1) log densities of most cases.
    """
    a = float(actual.item())
    if expected == -math.inf:
        assert a == -math.inf, f"{what}: expected -inf (out of support), got {a}"
        return
    assert math.isfinite(a), f"{what}: got non-finite {a}, expected {expected}"
    bound = tol + 8 * F32_EPS * abs(expected)
    assert abs(a - expected) <= bound, f"{what}: got {a!r}, expected {expected!r} (tol {bound:.3g})"


# --------------------------------------------------------------------------- log_prob
@pytest.mark.parametrize("case", cases(LOGPROB, "tests"))
def test_logprob(case: dict[str, Any]) -> None:
    d = dist_of(case)
    lp = d.log_prob(value_of(case), *params_of(case))
    assert lp.shape == (), f"one event must give one log density, got shape {lp.shape}"
    tol = logprob_tolerance(case, float(LOGPROB["tolerance"]))
    check_close(lp, expected_of(case), tol, case["id"])


@pytest.mark.parametrize("case", cases(STABILITY, "tests"))
def test_stability(case: dict[str, Any]) -> None:
    d = dist_of(case)
    lp = d.log_prob(value_of(case), *params_of(case))
    check_close(lp, expected_of(case), float(STABILITY["tolerance"]), case["id"])


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("case", cases(GRADIENT, "gradient_tests"))
def test_gradient(case: dict[str, Any]) -> None:
    d = dist_of(case)
    names = MAPPING[case["dist"]][1]
    value = value_of(case)
    params = params_of(case)
    wrt = case["grad_wrt"]

    if wrt == "value":
        g = mx.grad(lambda v: d.log_prob(v, *params))(value)
    else:
        i = names.index(wrt)

        def f(p: mx.array) -> mx.array:
            ps = list(params)
            ps[i] = p
            out: mx.array = d.log_prob(value, *ps)
            return out

        g = mx.grad(f)(params[i])
    tol = float(case.get("tolerance", GRADIENT["tolerance"]))
    got = float(g.item())
    assert math.isfinite(got), f"{case['id']}: gradient is {got}"
    assert abs(got - case["expected"]) <= tol, (
        f"{case['id']}: d log p / d {wrt} = {got!r}, expected {case['expected']!r} (tol {tol})"
    )


def test_every_spec_distribution_is_mapped() -> None:
    if not LOGPROB:
        pytest.skip(SKIP_REASON)
    seen = {c["dist"] for data, k in ((LOGPROB, "tests"), (STABILITY, "tests")) for c in data[k]}
    seen |= {c["dist"] for c in GRADIENT["gradient_tests"] if "dist" in c}
    assert seen <= set(MAPPING)
