"""Tests for genmlx.dists.rejection (recursive first-accepted rejection rounds)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx.dists.rejection import first_accepted, spill_slots


def _propose(
    key: mx.array, shape: tuple[int, ...], prm: tuple[mx.array, ...]
) -> tuple[mx.array, mx.array]:
    # Uniform(0, t) by rejection from Uniform(0, 1): accepted with probability t.
    (t,) = prm
    u = mx.random.uniform(shape=shape, key=key)
    return u, u < t


def test_spill_slots_bound() -> None:
    for p in (0.05, 0.25, 0.5):
        for n in (1, 10, 1000, 10**6):
            q = spill_slots(n, p)
            assert 1 <= q <= n
            assert q == n or stats.binom(n, p).sf(q) < 1e-14


def test_shared_parameter_law() -> None:
    # t = 0.3: 70% rejected per round, so many recursive levels are exercised.
    x = np.array(
        first_accepted(
            _propose, mx.random.key(1), (200_000,), 60, mx.array(-1.0), (mx.array(0.3),), 0.7
        )
    )
    assert (x >= 0).all()
    assert stats.kstest(x, stats.uniform(0, np.float32(0.3)).cdf).pvalue > 1e-4


def test_per_element_parameters_follow_their_owner() -> None:
    t = mx.array([0.1, 0.5, 0.9], dtype=mx.float32)
    x = np.array(
        first_accepted(_propose, mx.random.key(2), (50_000, 3), 150, mx.array(-1.0), (t,), 0.9)
    )
    for j, tj in enumerate(np.array(t)):
        assert (x[:, j] >= 0).all() and (x[:, j] < tj).all()
        assert stats.kstest(x[:, j], stats.uniform(0, tj).cdf).pvalue > 1e-4


def test_fallback_when_rounds_run_out() -> None:
    # Acceptance 2**-20 with 3 rounds: essentially every element keeps the fallback.
    x = np.array(
        first_accepted(
            _propose,
            mx.random.key(3),
            (1000,),
            3,
            mx.array(-1.0),
            (mx.array(2.0**-20),),
            1.0 - 2.0**-20,
        )
    )
    assert (x == -1.0).mean() > 0.99


@pytest.mark.parametrize(
    "t", [mx.array(0.3), mx.array([[0.2], [0.6]])], ids=["shared", "per-element"]
)
def test_eager_equals_traced(t: mx.array) -> None:
    def draw(k: mx.array) -> mx.array:
        return first_accepted(_propose, k, (2, 5000), 60, mx.array(-1.0), (t,), 0.8)

    key = mx.random.key(4)
    np.testing.assert_array_equal(np.array(draw(key)), np.array(mx.compile(draw)(key)))
    keys = mx.random.split(key, 3)
    np.testing.assert_array_equal(
        np.array(mx.stack([draw(k) for k in keys])), np.array(mx.vmap(draw)(keys))
    )


def test_von_mises_eager_equals_traced_and_fits() -> None:
    from genmlx.dists import von_mises

    def draw(k: mx.array) -> mx.array:
        return von_mises.sample(
            k, mx.array([0.0, 0.0]), mx.array([[0.7], [50.0]]), shape=(3000, 2, 2)
        )

    key = mx.random.key(5)
    np.testing.assert_array_equal(np.array(draw(key)), np.array(mx.compile(draw)(key)))
    keys = mx.random.split(key, 2)
    np.testing.assert_array_equal(
        np.array(mx.stack([draw(k) for k in keys])), np.array(mx.vmap(draw)(keys))
    )
    for kappa in (0.7, 50.0):  # 1e5 draws: many spilled levels at kappa = 50
        x = np.array(von_mises.sample(mx.random.key(6), 0.0, kappa, shape=(100_000,)))
        assert stats.kstest(x.astype(np.float64), stats.vonmises(kappa).cdf).pvalue > 1e-4
