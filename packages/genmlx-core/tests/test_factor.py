"""``factor(log_weight) @ addr``: a score term without a choice, in every GFI weight.

Expected numbers are closed forms computed with ``math`` from the traces' values.
"""

from __future__ import annotations

import math

import mlx.core as mx
import pytest

from genmlx.core import (
    ConstraintError,
    Selection,
    analyze,
    choicemap,
    factor,
    gen,
    logdensity,
    select,
)
from genmlx.core.testing.models import normal

TOL = {"rel": 1e-5, "abs": 1e-5}


def ln(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2 * math.pi)


@gen
def soft(y):
    x = normal(0.0, 1.0) @ "x"
    factor(-0.5 * (y - x) ** 2) @ "lik"
    return x


def fw(x: float, y: float) -> float:
    return -0.5 * (y - x) ** 2


def test_generate_assess_and_score_include_the_term() -> None:
    tr, w = soft.generate((1.0,), choicemap({"x": 0.5}), key=mx.random.key(0))
    expect = ln(0.5, 0.0, 1.0) + fw(0.5, 1.0)
    assert float(tr.score) == pytest.approx(expect, **TOL)
    assert float(w) == pytest.approx(expect, **TOL)
    lp, ret = soft.assess((1.0,), choicemap({"x": 0.5}))
    assert float(lp) == pytest.approx(expect, **TOL)
    assert float(ret) == 0.5
    assert tr.get_choices().addresses() == ["x"]  # the factor makes no choice


def test_generate_without_constraints_weight_is_the_factor() -> None:
    # nothing constrained: weight = log p / q = the factor's term alone
    tr, w = soft.generate((2.0,), None, key=mx.random.key(3))
    assert float(w) == pytest.approx(fw(float(tr["x"]), 2.0), **TOL)


def test_update_and_regenerate_weights() -> None:
    tr, _ = soft.generate((1.0,), choicemap({"x": 0.5}), key=mx.random.key(0))
    u = tr.update(choicemap({"x": 0.0}))
    assert float(u.weight) == pytest.approx(
        ln(0.0, 0, 1) + fw(0.0, 1.0) - ln(0.5, 0, 1) - fw(0.5, 1.0), **TOL
    )
    # an argument change moves only the factor's term
    u2 = tr.update(None, (3.0,))
    assert float(u2.weight) == pytest.approx(fw(0.5, 3.0) - fw(0.5, 1.0), **TOL)
    assert float(u2.trace.score) == pytest.approx(ln(0.5, 0, 1) + fw(0.5, 3.0), **TOL)
    # regenerate x: the factor is never selected, so its new - old counts
    r = tr.regenerate(select("x"), key=mx.random.key(1))
    x1 = float(r.trace["x"])
    assert float(r.weight) == pytest.approx(fw(x1, 1.0) - fw(0.5, 1.0), **TOL)


def test_project_counts_the_term_under_every_selection() -> None:
    tr, _ = soft.generate((1.0,), choicemap({"x": 0.5}), key=mx.random.key(0))
    assert float(soft.project(tr, Selection.none())) == pytest.approx(fw(0.5, 1.0), **TOL)
    assert float(soft.project(tr, select("x"))) == pytest.approx(
        ln(0.5, 0, 1) + fw(0.5, 1.0), **TOL
    )
    assert float(soft.project(tr, Selection.all())) == pytest.approx(float(tr.score), **TOL)


def test_batched_generate_weights_per_particle() -> None:
    xs = mx.array([0.1, -0.4, 1.3])
    for _ in range(2):  # the second call may run the compiled static path
        tr, w = soft.vgenerate((1.0,), choicemap({"x": xs}).with_batch_shape((3,)), 3,
                               key=mx.random.key(0))
        for i, x in enumerate(xs.tolist()):
            assert float(w[i]) == pytest.approx(ln(x, 0, 1) + fw(x, 1.0), **TOL)
            assert float(tr.score[i]) == pytest.approx(float(w[i]), **TOL)


def test_array_weights_are_summed_and_keyword_form() -> None:
    @gen
    def m():
        x = normal(0.0, 1.0) @ "x"
        factor(log_weight=mx.array([x, 2.0 * x])) @ "f"

    lp, _ = m.assess((), choicemap({"x": 0.25}))
    assert float(lp) == pytest.approx(ln(0.25, 0, 1) + 0.75, **TOL)


def test_bad_uses_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="factor takes one argument"):
        factor(1.0, 2.0)
    with pytest.raises(TypeError, match="factor takes one argument"):
        factor(weight=1.0)

    @gen
    def m():
        factor(0.0) @ "f"

    with pytest.raises(ConstraintError):
        m.generate((), choicemap({("f", "z"): 1.0}), key=mx.random.key(0))


def test_static_graph_and_logdensity_include_the_term() -> None:
    g = analyze(soft, (mx.array(1.0),), choicemap({}))
    assert g.is_static
    site = g.site("lik")
    assert site.kind == "call" and site.call_choices == ()
    assert not site.is_latent
    ld = logdensity(soft, (mx.array(1.0),))
    assert ld.addresses == ["x"]
    v, gr = ld.value_and_grad(mx.array([[0.5], [0.0]]))
    assert float(v[0]) == pytest.approx(ln(0.5, 0, 1) + fw(0.5, 1.0), **TOL)
    # d/dx [-x²/2 - (1 - x)²/2] = -x + (1 - x)
    assert float(gr[0, 0]) == pytest.approx(-0.5 + 0.5, abs=1e-5)
    assert float(gr[1, 0]) == pytest.approx(1.0, **TOL)


def test_minus_infinity_is_a_hard_constraint() -> None:
    @gen
    def m():
        x = normal(0.0, 1.0) @ "x"
        factor(mx.where(x > 0, 0.0, -mx.inf)) @ "positive"

    lp, _ = m.assess((), choicemap({"x": -1.0}))
    assert float(lp) == -math.inf
    tr, w = m.generate((), choicemap({"x": 1.0}), key=mx.random.key(0))
    assert float(w) == pytest.approx(ln(1.0, 0, 1), **TOL)
