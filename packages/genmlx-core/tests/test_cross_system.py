"""Adapters running ../shared/conformance/cross-system/{gfi,update,project_regen}_tests.json.

The specification names models and gives choices; expected log densities are computed
here in plain Python (``math``), independently of GenMLX, from each model's definition
or from the spec's ``expected_components``. Indices are 0-based; the spec's
``y0, y1, ...`` observations are the models' ``"y0"``, ``"y1"`` addresses.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import Selection, choicemap, select
from genmlx.core.testing.models import MODELS

REPO_ROOT = Path(__file__).resolve().parents[3]
SKIP_REASON = (
    "cross-system conformance data not found: it lives in ../shared beside the repository "
    "(the developers' checkout), not in a user's clone; set GENMLX_SHARED_DIR to run it"
)


def shared_dir() -> Path | None:
    """``$GENMLX_SHARED_DIR`` or ``<repo>/../shared``, when it holds the spec."""
    env = os.environ.get("GENMLX_SHARED_DIR")
    for c in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared"]:
        if (c / "conformance" / "cross-system").is_dir():
            return c
    return None


def cross_cases(name: str) -> dict[str, Any]:
    """The spec file's content, or ``{}`` when ../shared is absent."""
    d = shared_dir()
    if d is None:
        return {}
    data: dict[str, Any] = json.loads((d / "conformance" / "cross-system" / name).read_text())
    return data


def cases(spec: dict[str, Any], key: str) -> list[Any]:
    """Parametrize values for ``spec[key]``, or one skipped case saying why."""
    if not spec:
        return [pytest.param({"id": "missing"}, marks=pytest.mark.skip(reason=SKIP_REASON))]
    return [pytest.param(c, id=c["id"]) for c in spec[key]]


# --------------------------------------------------------------------------- reference
def logpdf_normal(x: float, mu: float, sigma: float) -> float:
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def logpdf_beta(x: float, a: float, b: float) -> float:
    log_b = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return (a - 1) * math.log(x) + (b - 1) * math.log1p(-x) - log_b


def logpdf_bernoulli(x: float, p: float) -> float:
    return math.log(p) if x else math.log1p(-p)


def components(model: str, args: list[Any], ch: dict[str, float]) -> dict[str, float]:
    """Per-address log densities of ``model`` at choices ``ch`` (pure Python)."""
    if model in ("single_gaussian", "single_normal"):
        return {"x": logpdf_normal(ch["x"], 0.0, 1.0)}
    if model == "two_normals":
        return {
            "mu": logpdf_normal(ch["mu"], 0.0, 10.0),
            "x": logpdf_normal(ch["x"], ch["mu"], 1.0),
        }
    if model == "beta_bernoulli":
        return {"p": logpdf_beta(ch["p"], 2.0, 2.0), "x": logpdf_bernoulli(ch["x"], ch["p"])}
    if model in ("linear_regression", "linear_regression_5"):
        xs = args[0]
        out = {
            "slope": logpdf_normal(ch["slope"], 0.0, 10.0),
            "intercept": logpdf_normal(ch["intercept"], 0.0, 10.0),
        }
        for i, x in enumerate(xs):
            out[f"y{i}"] = logpdf_normal(ch[f"y{i}"], ch["slope"] * x + ch["intercept"], 1.0)
        return out
    if model == "many_addresses":
        out = {"mu": logpdf_normal(ch["mu"], 0.0, 10.0)}
        for i in range(10):
            out[f"y{i}"] = logpdf_normal(ch[f"y{i}"], ch["mu"], 1.0)
        return out
    if model == "mixed":
        mu = 10.0 if ch["coin"] else 0.0
        return {"coin": logpdf_bernoulli(ch["coin"], 0.5), "x": logpdf_normal(ch["x"], mu, 1.0)}
    raise KeyError(model)


def model_args(args: list[Any]) -> tuple[Any, ...]:
    return tuple(mx.array(a, dtype=mx.float32) if isinstance(a, list) else a for a in args)


def trace_values(tr: Any) -> dict[str, float]:
    return {str(a): float(v.item()) for a, v in tr.get_choices()}


def close(actual: Any, expected: float, tol: float, what: str) -> None:
    """|actual − expected| ≤ tol, widened only by float32 rounding for huge magnitudes.

    The spec's tolerance (1e-4) is absolute. Cases that sample latents (generate,
    regenerate) can produce log densities of order 1e3, where one float32 ulp is
    already 1.2e-4; there the bound grows by 8 float32 epsilons of the magnitude
    (~1e-6 relative), far below any modelling error.
    """
    a = float(actual.item() if isinstance(actual, mx.array) else actual)
    assert math.isfinite(a), f"{what}: got non-finite {a}"
    bound = tol + 8 * 1.2e-7 * abs(expected)
    assert abs(a - expected) <= bound, f"{what}: got {a}, expected {expected} (tol {bound})"


def selection_of(spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "all":
        return Selection.all()
    if kind == "none":
        return Selection.none()
    assert kind == "addrs"
    return select(*spec["addrs"])


# --------------------------------------------------------------------------- gfi_tests.json
GFI = cross_cases("gfi_tests.json")


@pytest.mark.parametrize("case", cases(GFI, "assess_tests"))
def test_assess(case: dict[str, Any]) -> None:
    model = MODELS[case["model"]]
    ld, _ = model.assess(model_args(case["args"]), choicemap(case["choices"]))
    expected = sum(components(case["model"], case["args"], case["choices"]).values())
    close(ld, expected, GFI["tolerance"], case["id"])


@pytest.mark.parametrize("case", cases(GFI, "generate_tests"))
def test_generate(case: dict[str, Any]) -> None:
    # check "weight_equals_score": the weight equals the score of the constrained part
    # (Gen's semantics: unconstrained choices come from the prior and add nothing), and
    # the trace score is the full joint; both are recomputed in Python from the trace.
    model = MODELS[case["model"]]
    for seed in range(5):
        tr, w = model.generate(
            model_args(case["args"]), choicemap(case["constraints"]), key=mx.random.key(seed)
        )
        vals = trace_values(tr)
        for addr, v in case["constraints"].items():
            assert vals[addr] == pytest.approx(v, abs=1e-6)
        comps = components(case["model"], case["args"], vals)
        expected_w = sum(comps[a] for a in case["constraints"])
        close(w, expected_w, GFI["tolerance"], f"{case['id']} weight")
        close(tr.score, sum(comps.values()), GFI["tolerance"], f"{case['id']} score")


@pytest.mark.parametrize("case", cases(GFI, "score_decomposition_tests"))
def test_score_decomposition(case: dict[str, Any]) -> None:
    ref = {"normal": logpdf_normal, "beta": logpdf_beta, "bernoulli": logpdf_bernoulli}
    expected = {
        addr: ref[c["dist"]](c["value"], *c["params"].values())
        for addr, c in case["expected_components"].items()
    }
    model = MODELS[case["model"]]
    args = case.get("args")
    if args is None:  # the decomposition cases leave out the linear regression's xs
        args = [[1.0, 2.0, 3.0]] if case["model"].startswith("linear_regression") else []
    tr, w = model.generate(model_args(args), choicemap(case["choices"]), key=mx.random.key(0))
    tol = GFI["tolerance"]
    close(tr.score, sum(expected.values()), tol, f"{case['id']} total")
    close(w, sum(expected.values()), tol, f"{case['id']} weight")
    # each component separately, via project onto the single address
    for addr, lp in expected.items():
        close(tr.project(select(addr)), lp, tol, f"{case['id']} component {addr}")
    # no other address contributes (the negative checks of the branch cases)
    assert sorted(str(a) for a, _ in tr.get_choices()) == sorted(expected)


# --------------------------------------------------------------------------- update_tests.json
UPD = cross_cases("update_tests.json")


@pytest.mark.parametrize("case", cases(UPD, "tests"))
def test_update(case: dict[str, Any]) -> None:
    model = MODELS[case["model"]]
    args = model_args(case["args"])
    tr, _ = model.generate(args, choicemap(case["initial_choices"]), key=mx.random.key(0))
    new, w, _, discard = model.update(
        tr, choicemap(case["update_constraints"]), key=mx.random.key(1)
    )
    merged = {**case["initial_choices"], **case["update_constraints"]}
    old_score = sum(components(case["model"], case["args"], case["initial_choices"]).values())
    new_score = sum(components(case["model"], case["args"], merged).values())
    tol = UPD["tolerance"]
    close(w, new_score - old_score, tol, f"{case['id']} weight")
    close(new.score, new_score, tol, f"{case['id']} new score")
    close(w, float(new.score.item()) - float(tr.score.item()), tol, f"{case['id']} invariant")
    if case["initial_choices"] == merged:  # the same-value negative test: exactly zero
        assert float(w.item()) == 0.0
    # the discard holds exactly the overwritten old values
    assert {str(a): float(v.item()) for a, v in discard} == pytest.approx(
        {a: case["initial_choices"][a] for a in case["update_constraints"]}
    )


# --------------------------------------------------------------------------- project_regen
PR = cross_cases("project_regen_tests.json")


@pytest.mark.parametrize("case", cases(PR, "project_tests"))
def test_project(case: dict[str, Any]) -> None:
    model = MODELS[case["model"]]
    tr, _ = model.generate(
        model_args(case["args"]), choicemap(case["choices"]), key=mx.random.key(0)
    )
    comps = components(case["model"], case["args"], case["choices"])
    sel = case["selection"]
    addrs = list(comps) if sel["type"] == "all" else sel.get("addrs", [])
    close(tr.project(selection_of(sel)), sum(comps[a] for a in addrs), PR["tolerance"], case["id"])


@pytest.mark.parametrize("case", cases(PR, "regenerate_tests"))
def test_regenerate(case: dict[str, Any]) -> None:
    model = MODELS[case["model"]]
    args = model_args(case["args"])
    tr, _ = model.generate(args, choicemap(case["choices"]), key=mx.random.key(0))
    sel = case["selection"]
    tol = PR["tolerance"]
    for seed in range(5):
        new, w, _ = model.regenerate(tr, selection_of(sel), key=mx.random.key(seed))
        old_c = components(case["model"], case["args"], case["choices"])
        new_vals = trace_values(new)
        new_c = components(case["model"], case["args"], new_vals)
        if sel["type"] == "none":
            assert float(w.item()) == 0.0
            assert new_vals == pytest.approx(case["choices"])
            continue
        selected = list(old_c) if sel["type"] == "all" else sel["addrs"]
        # weight = new_score - old_score + old_selected_logpdf - new_selected_logpdf
        expected = (
            sum(new_c.values())
            - sum(old_c.values())
            + sum(old_c[a] for a in selected)
            - sum(new_c[a] for a in selected)
        )
        close(w, expected, tol, f"{case['id']} weight (seed {seed})")
        close(new.score, sum(new_c.values()), tol, f"{case['id']} new score (seed {seed})")
        for a in old_c:  # unselected choices are kept
            if a not in selected:
                assert new_vals[a] == pytest.approx(case["choices"][a])
        if sel["type"] == "all" or (
            len(selected) == len(old_c)
        ):  # everything from the prior: the invariant says weight 0
            assert abs(float(w.item())) <= tol
