"""Parallel tempering on a bimodal posterior.

Model: ``x ~ N(1, 2)``, ``y ~ N(x², 0.1)`` with ``y = 4``: two narrow modes near ±2
(width ≈ 0.025) separated by a barrier of ≈ 800 nats, with exact weight
``P(x > 0 | y) ≈ 0.73`` (computed here by quadrature). A random-walk chain at β = 1
never crosses; parallel tempering with a geometric ladder down to β = 10⁻³ does.
"""

from __future__ import annotations

import math

import mlx.core as mx
import pytest

from genmlx.core import choicemap, compile, gen, select
from genmlx.dists import normal
from genmlx.infer.tempering import parallel_tempering, tempered_rw_mh, tempered_swap

Y, NOISE, PRIOR_MU, PRIOR_SD = 4.0, 0.1, 1.0, 2.0


@gen
def bimodal() -> None:
    x = normal(PRIOR_MU, PRIOR_SD) @ "x"
    normal(x * x, NOISE) @ "y"


OBS = choicemap({"y": Y})
BETAS = [10.0 ** (-3.0 * k / 7) for k in range(8)]
STEPS = [min(0.05 / math.sqrt(b), 3.0) for b in BETAS]


def exact_positive_weight() -> float:
    """``P(x > 0 | y)`` by the midpoint rule on a fine grid over [-4, 4]."""

    def logp(x: float) -> float:
        return -0.5 * ((x - PRIOR_MU) / PRIOR_SD) ** 2 - 0.5 * ((Y - x * x) / NOISE) ** 2

    h = 1e-4
    grid = [-4.0 + h * (i + 0.5) for i in range(int(8.0 / h))]
    m = max(logp(x) for x in grid)
    pos = sum(math.exp(logp(x) - m) for x in grid if x > 0)
    neg = sum(math.exp(logp(x) - m) for x in grid if x <= 0)
    return pos / (pos + neg)


def test_pt_visits_both_modes_in_proportion() -> None:
    w = exact_positive_weight()
    assert 0.70 < w < 0.76
    n_chains, n_steps, burn = 100, 600, 100
    res = parallel_tempering(
        bimodal,
        (),
        OBS,
        BETAS,
        selection=select("x"),
        step_size=STEPS,
        n_steps=n_steps,
        n_chains=n_chains,
        burn_in=burn,
        key=mx.random.key(3),
        addresses=["x"],
    )
    x = res.samples["x"]  # [kept, chains]
    assert x.shape == (n_steps - burn, n_chains)
    # every kept β = 1 sample sits in one of the modes
    assert float(mx.abs(mx.abs(x) - 2.0).max().item()) < 0.2
    frac = (x > 0).astype(mx.float32).mean(axis=0)  # per-run time average
    # independent runs: the SE of the mean of their time averages is their sd / √C
    se = float(frac.std(ddof=1).item()) / math.sqrt(n_chains)
    got = float(frac.mean().item())
    assert abs(got - w) < 5 * se, (got, w, se)
    # the β = 1 replica switches modes within most single runs
    switched = mx.logical_and(frac > 0, frac < 1).astype(mx.float32).mean()
    assert float(switched.item()) > 0.9
    # swaps happen between every adjacent pair
    assert float(res.swap_rate.mean(axis=0).min().item()) > 0.05


def test_untempered_chain_is_stuck() -> None:
    """The same random walk at β = 1 alone never leaves its mode, so a single chain's
    time average is 0 or 1, more than 5 PT standard errors from the exact weight."""
    n_chains, n_steps = 100, 600
    tr, _ = bimodal.vgenerate((), OBS, n_chains, key=mx.random.key(3))
    xs = []
    for k in mx.random.split(mx.random.key(4), n_steps):
        tr, _ = tempered_rw_mh(tr, select("x"), select("y"), 1.0, STEPS[0], key=k)
        xs.append(tr["x"])
    x = mx.stack(xs[100:])
    frac = (x > 0).astype(mx.float32).mean(axis=0)
    assert bool(mx.all(mx.logical_or(frac == 0, frac == 1)).item())
    w = exact_positive_weight()
    assert abs(float(frac[0].item()) - w) > 0.25


def test_beta_one_kernel_matches_posterior() -> None:
    """At β = 1 the tempered kernel is plain RW MH: normal–normal posterior moments."""

    @gen
    def nn() -> None:
        mu = normal(0.0, 1.0) @ "mu"
        normal(mu, 1.0) @ "y"

    n = 2000
    tr, _ = nn.vgenerate((), choicemap({"y": 1.0}), n, key=mx.random.key(0))
    for k in mx.random.split(mx.random.key(1), 100):
        tr, _ = tempered_rw_mh(tr, select("mu"), select("y"), 1.0, 1.0, key=k)
    m, v = float(tr["mu"].mean().item()), float(tr["mu"].var(ddof=1).item())
    assert abs(m - 0.5) < 5 * math.sqrt(0.5 / n)
    assert abs(v - 0.5) < 5 * 0.5 * math.sqrt(2 / (n - 1))


def test_beta_zero_kernel_samples_prior() -> None:
    """At β = 0 the likelihood is ignored: the chains sample the prior N(1, 2)."""
    n = 2000
    tr, _ = bimodal.vgenerate((), OBS, n, key=mx.random.key(0))
    for k in mx.random.split(mx.random.key(1), 100):
        tr, _ = tempered_rw_mh(tr, select("x"), select("y"), 0.0, 2.0, key=k)
    m, v = float(tr["x"].mean().item()), float(tr["x"].var(ddof=1).item())
    assert abs(m - PRIOR_MU) < 5 * PRIOR_SD / math.sqrt(n)
    assert abs(v - PRIOR_SD**2) < 5 * PRIOR_SD**2 * math.sqrt(2 / (n - 1))


def test_swap_ratio_and_permutation() -> None:
    """Swaps exchange whole states; with equal betas every attempted swap is accepted."""
    tr, _ = bimodal.vgenerate((), OBS, 6, key=mx.random.key(0))
    betas = mx.array([1.0, 1.0, 1.0])
    new, sw_info = tempered_swap(tr, select("y"), betas, 0, key=mx.random.key(1))
    assert sw_info.accepted.tolist() == [[True, False], [True, False]]
    old_x = tr["x"].tolist()
    assert new["x"].tolist() == [old_x[1], old_x[0], old_x[2], old_x[4], old_x[3], old_x[5]]
    assert mx.allclose(new.score, tr.score[mx.array([1, 0, 2, 4, 3, 5])]).item()
    # β_0 > β_1 and a worse likelihood at β_1's state: log α < 0 and the exact ratio
    tr2, _ = bimodal.vgenerate((), OBS, 2, key=mx.random.key(5))
    ell = bimodal.project(tr2, select("y")).tolist()
    n_acc = 0
    keys = mx.random.split(mx.random.key(6), 400)
    for k in keys:
        _, s = tempered_swap(tr2, select("y"), mx.array([1.0, 0.999]), 0, key=k)
        n_acc += int(s.accepted[0, 0].item())
    p = min(1.0, math.exp(0.001 * (ell[1] - ell[0])))
    assert abs(n_acc / 400 - p) < 5 * math.sqrt(max(p * (1 - p), 1e-4) / 400) + 1e-9


def test_validation() -> None:
    with pytest.raises(ValueError):
        parallel_tempering(
            bimodal, (), OBS, [0.5, 0.1], selection=select("x"), step_size=0.1, n_steps=5
        )
    with pytest.raises(ValueError):
        parallel_tempering(
            bimodal,
            (),
            OBS,
            [1.0, 0.5],
            selection=select("x"),
            step_size=[0.1, 0.2, 0.3],
            n_steps=5,
        )


def test_compiled_sweeps_match_interpreted() -> None:
    """A K-sweep loop (MH in every replica, then swaps) compiles to the same samples."""
    betas = mx.array(BETAS)
    beta_all, sig_all = mx.tile(betas, (4,)), mx.tile(mx.array(STEPS), (4,))
    tr0, _ = bimodal.vgenerate((), OBS, 4 * len(BETAS), key=mx.random.key(0))

    def run(key: mx.array, tr: object) -> mx.array:
        for s, k in enumerate(mx.random.split(key, 10)):
            k1, k2 = mx.random.split(k)
            tr, _ = tempered_rw_mh(tr, select("x"), select("y"), beta_all, sig_all, key=k1)
            tr, _ = tempered_swap(tr, select("y"), betas, s % 2, key=k2)
        return tr["x"]  # type: ignore[index]

    a = run(mx.random.key(1), tr0)
    b = compile(run)(mx.random.key(1), tr0)
    assert mx.allclose(a, b, atol=1e-5).item()
