"""The -inf contract for invalid parameters, for every registered distribution, in
eager and compiled mode: invalid (NaN, ±inf, negative, zero) array parameters give a
log density of -inf (never NaN, never a crash), and a value drawn with them scores
-inf. Also: messages for unusable parameters name the distribution and the address."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import DistributionArgumentError, compile, config, gen
from genmlx.core import registry as core_registry
from genmlx.dists import categorical, categorical_logits, normal, uniform
from genmlx.dists.examples import examples

FILLS = [float("nan"), float("inf"), -float("inf"), -1.0, 0.0]


def _registered() -> list[tuple[str, Any]]:
    reg = core_registry()
    out = []
    for e in sorted(reg.distributions.entries(), key=lambda e: e.name):
        if e.plugin == "dists" and examples(e.obj):
            out.append((e.name, e.obj))
    return out


DISTS = _registered()


def _arrays(params: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        p if isinstance(p, mx.array) else mx.array(p) if isinstance(p, (float, list)) else p
        for p in params
    )


def _fill(params: tuple[Any, ...], value: float) -> tuple[Any, ...]:
    return tuple(
        mx.full(p.shape, value)
        if isinstance(p, mx.array) and mx.issubdtype(p.dtype, mx.floating)
        else p
        for p in params
    )


def test_the_registry_has_the_first_party_distributions() -> None:
    names = {n for n, _ in DISTS}
    assert {"normal", "uniform", "gamma", "beta", "categorical", "zipf"} <= names


@pytest.mark.parametrize("name, dist", DISTS, ids=[n for n, _ in DISTS])
def test_invalid_parameters_never_give_nan(name: str, dist: Any) -> None:
    checked = 0
    for params in examples(dist):
        ps = _arrays(params)
        v = dist.sample(mx.random.key(0), *ps)
        for fill in FILLS:
            bad = _fill(ps, fill)
            if all(a is b for a, b in zip(ps, bad)):
                continue  # no floating parameter to spoil
            eager = dist.log_prob(v, *bad)
            lifted = [b if isinstance(b, mx.array) else mx.array(b) for b in bad]
            compiled = compile(lambda v, *a: dist.log_prob(v, *a))(v, *lifted)
            drawn = dist.sample(mx.random.key(1), *bad)  # must not crash
            scored = dist.log_prob(drawn, *bad)
            for what, lp in (("eager", eager), ("compiled", compiled), ("draw", scored)):
                assert not bool(mx.any(mx.isnan(lp)).item()), (name, fill, what)
                assert not bool(mx.any(lp == mx.inf).item()), (name, fill, what)
            checked += 1
    has_float = any(
        isinstance(p, mx.array) and mx.issubdtype(p.dtype, mx.floating)
        for params in examples(dist)
        for p in _arrays(params)
    )
    assert checked > 0 or not has_float, name


@pytest.mark.parametrize("dist, params", [(normal, (0.0, -1.0)), (uniform, (1.0, 0.0))])
def test_normal_and_uniform_follow_the_contract_in_models(dist: Any, params: tuple) -> None:
    @gen
    def model(a, b):
        return dist(a, b) @ "x"

    arr = tuple(mx.array(p) for p in params)
    with config.score_checks(False):
        tr = compile(lambda k, a, b: model.simulate((a, b), key=k))(mx.random.key(0), *arr)
        _, w = model.generate(arr, {"x": 0.5}, key=mx.random.key(0))
    assert float(tr.score) == -float("inf") and float(w) == -float("inf")
    # an invalid array sigma gives -inf whatever the mean; a NaN value gives NaN
    assert float(normal.log_prob(1.0, mx.array(float("nan")), mx.array(-1.0))) == -float("inf")
    assert mx.isnan(normal.log_prob(float("nan"), 0.0, 1.0)).item()


def test_empty_and_unusable_parameters_are_named() -> None:
    for d, empty in ((categorical, mx.zeros((0,))), (categorical_logits, mx.zeros((2, 0)))):
        with pytest.raises(ValueError, match=f"{d.name}: .* no categories"):
            d.sample(mx.random.key(0), empty)

        @gen
        def model(p, d=d):
            return d(p) @ ("c", 1)

        with pytest.raises(DistributionArgumentError, match=r"at address \('c', 1\)"):
            model.simulate((empty,), key=mx.random.key(0))
    with pytest.raises(ValueError, match="at least one entry"):
        categorical.sample(mx.random.key(0), [])
