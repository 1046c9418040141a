"""Deterministic generative functions and CustomGradientGF."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import (
    ConstraintError,
    CustomGradientGF,
    choice_gradients,
    choicemap,
    deterministic,
    gen,
    select,
)
from genmlx.core.testing import check_gfi_laws
from genmlx.core.testing.models import normal

affine = deterministic(lambda x, a: a * x + 1.0, name="affine")


@gen
def model(a: Any) -> Any:
    x = normal(0.0, 1.0) @ "x"
    y = affine(x, a) @ "f"
    return normal(y, 0.5) @ "y"


def test_deterministic_makes_no_choices_and_scores_zero() -> None:
    tr = affine.simulate((mx.array(2.0), mx.array(3.0)), key=mx.random.key(0))
    assert tr.get_choices().is_empty
    assert float(tr.score.item()) == 0.0
    assert float(tr.retval.item()) == 7.0


def test_traced_inside_a_model_and_batched() -> None:
    tr = model.simulate((mx.array(3.0),), key=mx.random.key(1))
    assert sorted(map(str, tr.get_choices().addresses())) == ["x", "y"]
    assert float(tr["f"].item()) == pytest.approx(3.0 * float(tr["x"].item()) + 1.0, abs=1e-6)
    vt = model.vsimulate((mx.array(3.0),), 4, key=mx.random.key(2))
    assert vt["f"].shape == (4,)
    assert mx.allclose(vt["f"], 3.0 * vt["x"] + 1.0).item()


def test_constraints_on_a_deterministic_function_are_rejected() -> None:
    with pytest.raises(ConstraintError, match="makes no random choices"):
        affine.generate((1.0, 2.0), choicemap({"z": 1.0}))


def test_update_with_new_args_recomputes() -> None:
    tr = model.simulate((mx.array(3.0),), key=mx.random.key(3))
    new, w, _, _ = model.update(tr, None, (mx.array(5.0),))
    x, y = float(tr["x"].item()), float(tr["y"].item())
    old_lp = -0.5 * ((y - (3 * x + 1)) / 0.5) ** 2
    new_lp = -0.5 * ((y - (5 * x + 1)) / 0.5) ** 2
    assert float(w.item()) == pytest.approx(new_lp - old_lp, rel=1e-5, abs=1e-5)


def test_laws() -> None:
    check_gfi_laws(model, (mx.array(2.0),), max_examples=3)


class Softplus(CustomGradientGF):
    """softplus with a gradient that is deliberately scaled by 10 (so it is visible)."""

    name = "softplus10"

    def apply(self, x: mx.array) -> mx.array:
        return mx.logaddexp(x, mx.array(0.0))

    def gradient(self, args: tuple[Any, ...], retval: Any, retgrad: Any) -> tuple[Any, ...]:
        (x,) = args
        return (10.0 * retgrad * mx.sigmoid(x),)


softplus10 = Softplus()


@gen
def uses_custom() -> Any:
    x = normal(0.0, 1.0) @ "x"
    s = softplus10(x) @ "s"
    return normal(s, 1.0) @ "y"


def test_custom_gradient_is_used_by_choice_gradients() -> None:
    tr, _ = uses_custom.generate((), choicemap({"x": 0.3, "y": 2.0}), key=mx.random.key(0))
    g = float(choice_gradients(tr, select("x"))["x"].item())
    s = math.log1p(math.exp(0.3))
    sig = 1 / (1 + math.exp(-0.3))
    # d/dx [log N(x;0,1) + log N(y; s(x), 1)] = -x + (y - s) * s'(x), with s' scaled by 10
    assert g == pytest.approx(-0.3 + (2.0 - s) * 10 * sig, rel=1e-5)


def test_custom_gradient_value_and_laws() -> None:
    tr = softplus10.simulate((mx.array(0.0),))
    assert float(tr.retval.item()) == pytest.approx(math.log(2.0), rel=1e-6)
    check_gfi_laws(uses_custom, (), max_examples=2)
