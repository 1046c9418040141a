"""Adapter for ../shared/conformance/cross-system/combinator_tests.json (Map, Unfold, Switch).

The expected numbers are recomputed here in plain Python from the spec's model
definitions (``math``), independently of GenMLX. Hierarchical choices ``{"0": {"y": 1.5}}``
are element 0, address ``"y"`` (0-based, as the spec says).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

from genmlx.combinators.map import Map
from genmlx.combinators.switch import Switch
from genmlx.combinators.unfold import Unfold
from genmlx.core import ChoiceMap, choicemap, gen
from genmlx.core.testing.models import normal

REPO_ROOT = Path(__file__).resolve().parents[3]
SKIP_REASON = (
    "cross-system conformance data not found: it lives in ../shared beside the repository "
    "(the developers' checkout), not in a user's clone; set GENMLX_SHARED_DIR to run it"
)


def _spec() -> dict[str, Any]:
    env = os.environ.get("GENMLX_SHARED_DIR")
    for c in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared"]:
        f = c / "conformance" / "cross-system" / "combinator_tests.json"
        if f.is_file():
            data: dict[str, Any] = json.loads(f.read_text())
            return data
    return {}


SPEC = _spec()
CASES = (
    [pytest.param(c, id=c["id"]) for c in SPEC["combinator_tests"]]
    if SPEC
    else [pytest.param({}, id="missing", marks=pytest.mark.skip(reason=SKIP_REASON))]
)
TOL = float(SPEC.get("tolerance", 1e-4)) if SPEC else 1e-4


def lp(x: float, mu: float, sigma: float = 1.0) -> float:
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


# --------------------------------------------------------------------------- models
@gen
def map_kernel(x):
    return normal(x, 1.0) @ "y"


@gen
def unfold_kernel(t, state):
    return normal(state, 1.0) @ "x"


@gen
def branch_a():
    return normal(0.0, 1.0) @ "x"


@gen
def branch_b():
    return normal(10.0, 1.0) @ "x"


def build(case: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    kind, args = case["combinator_type"], case["args"]
    if kind == "map":
        return Map(map_kernel), (mx.array(args[0], dtype=mx.float32),)
    if kind == "unfold":
        return Unfold(unfold_kernel), (int(args[0]), float(args[1]))
    return Switch(branch_a, branch_b), (int(args[0]),)


def to_cm(d: dict[str, Any]) -> ChoiceMap:
    """Spec choices: string digits are element/step indices."""
    out: dict[Any, Any] = {}
    for k, v in d.items():
        key: Any = int(k) if k.isdigit() else k
        out[key] = to_cm(v) if isinstance(v, dict) else v
    return choicemap(out)


# --------------------------------------------------------------------------- reference
def ref_logp(kind: str, args: list[Any], choices: dict[str, Any]) -> float:
    """log p of complete choices, from the spec's model definitions."""
    if kind == "map":
        return sum(lp(choices[str(i)]["y"], x) for i, x in enumerate(args[0]))
    if kind == "unfold":
        state, total = float(args[1]), 0.0
        for t in range(int(args[0])):
            x = choices[str(t)]["x"]
            total += lp(x, state)
            state = x
        return total
    mu = 0.0 if int(args[0]) == 0 else 10.0
    return lp(choices["x"], mu)


def ref_generate_weight(kind: str, args: list[Any], cons: dict[str, Any]) -> float:
    """Σ log p of the constrained choices whose parents are known from args (the spec's cases)."""
    if kind == "map":
        return sum(lp(v["y"], args[0][int(i)]) for i, v in cons.items())
    if kind == "unfold":
        assert list(cons) == ["0"], "the spec constrains only step 0, whose parent is init"
        return lp(cons["0"]["x"], float(args[1]))
    return ref_logp(kind, args, cons)


@pytest.mark.parametrize("case", CASES)
def test_combinator_case(case: dict[str, Any]) -> None:
    gf, args = build(case)
    kind, op = case["combinator_type"], case["operation"]
    if op == "assess":
        ld, _ = gf.assess(args, to_cm(case["choices"]))
        assert abs(float(ld) - ref_logp(kind, case["args"], case["choices"])) < TOL
    elif op == "score_decomposition":
        ld, _ = gf.assess(args, to_cm(case["choices"]))
        comps = case["expected_components"]
        parts = [lp(c["value"], c["params"]["mu"], c["params"]["sigma"]) for c in comps]
        assert abs(float(ld) - sum(parts)) < TOL
        tr, _ = gf.generate(args, to_cm(case["choices"]), key=mx.random.key(0))
        for c in comps:  # each component is one element/step's choice at its address
            assert float(tr[(c["index"], c["addr"])]) == pytest.approx(c["value"])
        assert abs(float(tr.score) - sum(parts)) < TOL
    elif op == "generate":
        tr, w = gf.generate(args, to_cm(case["constraints"]), key=mx.random.key(1))
        assert abs(float(w) - ref_generate_weight(kind, case["args"], case["constraints"])) < TOL
        # the unconstrained choices were sampled: the score is the full joint
        full = {
            str(i): {a: float(tr[(i, a)]) for a in ("y", "x") if (i, a) in tr.get_choices()}
            for i in range(len(case["args"][0]) if kind == "map" else int(case["args"][0]))
        }
        assert abs(float(tr.score) - ref_logp(kind, case["args"], full)) < TOL
    elif op == "update":
        init = case["initial_choices"]
        tr, _ = gf.generate(args, to_cm(init), key=mx.random.key(2))
        new, w, _, discard = gf.update(tr, to_cm(case["update_choices"]), key=mx.random.key(3))
        merged = {k: dict(v) for k, v in init.items()}
        for k, v in case["update_choices"].items():
            merged[k].update(v)
        expected = ref_logp(kind, case["args"], merged) - ref_logp(kind, case["args"], init)
        assert abs(float(w) - expected) < TOL
        assert abs(float(new.score) - ref_logp(kind, case["args"], merged)) < TOL
        for k, v in case["update_choices"].items():  # the discard holds the old values
            for a in v:
                assert float(discard[(int(k), a)]) == pytest.approx(init[k][a])
    else:  # pragma: no cover - a new operation in the spec must be adapted here
        pytest.fail(f"unknown operation {op!r} in the cross-system spec")
