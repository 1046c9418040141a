"""Tests for genmlx.infer.diagnostics.

Reference values were computed once with ArviZ 0.23.4 (``arviz.ess(method="bulk" |
"tail" | "mean")`` and ``arviz.rhat(method="rank")`` on ``az.convert_to_dataset`` of
the float32 samples below, cast to float64) in a throwaway environment; ArviZ is not
a dependency and is not imported here. The samples are regenerated from a fixed
NumPy recipe, so the comparison is exact up to float32 arithmetic.
"""

from __future__ import annotations

import math
from functools import partial, update_wrapper

import mlx.core as mx
import numpy as np
import pytest

from genmlx.infer import diagnostics
from genmlx.infer.diagnostics import SummaryTable, effective_sample_size_weights

REL_TOL = 1e-3


def _chain_draw(f):  # the arrays below are [chains, draws, ...]: ArviZ's layout
    return update_wrapper(partial(f, layout="chain_draw"), f)


ess_bulk = _chain_draw(diagnostics.ess_bulk)
ess_mean = _chain_draw(diagnostics.ess_mean)
ess_tail = _chain_draw(diagnostics.ess_tail)
rhat = _chain_draw(diagnostics.rhat)
summary = _chain_draw(diagnostics.summary)


def ar1(rng: np.random.Generator, chains: int, draws: int, phi: float) -> np.ndarray:
    """Stationary AR(1) chains x_t = phi x_{t-1} + eps_t, eps_t ~ N(0, 1)."""
    eps = rng.standard_normal((chains, draws))
    x = np.empty((chains, draws))
    x[:, 0] = eps[:, 0] / np.sqrt(1.0 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


def reference_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261121)
    # [4, 1000, 3]: white noise, moderate and strong autocorrelation.
    a = np.stack([ar1(rng, 4, 1000, phi) for phi in (0.0, 0.6, 0.95)], axis=-1)
    # [3, 501]: skewed (log-normal AR), odd draw count, third chain shifted.
    b = np.exp(ar1(rng, 3, 501, 0.3))
    b[2] += 0.5
    # [2, 64]: rounded to one decimal, so many ties (average ranks matter).
    c = np.round(ar1(rng, 2, 64, 0.5), 1)
    return {"a": a.astype(np.float32), "b": b.astype(np.float32), "c": c.astype(np.float32)}


# name -> (ess_bulk, ess_tail, ess_mean, rhat), each per parameter.
ARVIZ_REFERENCE = {
    "a": (
        [3975.6209668173, 819.9128858062, 129.856286624],
        [3814.3934138272, 1842.4168531004, 362.7746050462],
        [4024.5423063126, 821.5297169927, 127.52800573],
        [0.9996218078, 1.0042700571, 1.0261318095],
    ),
    "b": ([61.396149895], [622.4849252505], [870.3459610322], [1.0527128004]),
    "c": ([37.5274184276], [20.4330369715], [37.0879818361], [1.0343696247]),
}

# Short chains hitting the edge branches of Geyer's truncation (negative
# autocorrelation, loop never entered, loop run to the end, single chain):
# (seed, chains, draws, phi, ess_bulk, ess_tail, ess_mean, rhat); ArviZ gives NaN
# R-hat for a single chain.
ARVIZ_SMALL = [
    (11, 1, 5, -0.95, 2.408239965, 2.408239965, 2.408239965, math.nan),
    (12, 1, 9, 0.99, 7.224719896, 7.224719896, 7.224719896, math.nan),
    (13, 2, 4, 0.0, 7.224719896, 7.224719896, 7.224719896, 1.335548079),
    (14, 2, 7, -0.5, 12.95017495, 12, 12.95017495, 1.012369089),
    (15, 3, 12, 0.5, 21.20326223, 51.3442623, 20.49149315, 1.092122312),
    (16, 2, 33, 0.99, 3.75170909, 36.03427173, 2.757706832, 1.86263857),
    (17, 3, 100, -0.95, 743.1363764, 113.3045005, 743.1363764, 1.072507386),
    (18, 1, 100, 0.5, 11.73146512, 58.93911613, 11.0561003, math.nan),
]


def assert_rel(actual: mx.array, expected: list[float] | float) -> None:
    np.testing.assert_allclose(
        np.array(actual, dtype=np.float64).reshape(-1),
        np.array(expected, dtype=np.float64).reshape(-1),
        rtol=REL_TOL,
        atol=0.0,
        equal_nan=True,
    )


@pytest.mark.parametrize("name", sorted(ARVIZ_REFERENCE))
def test_matches_arviz(name: str) -> None:
    x = mx.array(reference_cases()[name])
    bulk, tail, mean, rh = ARVIZ_REFERENCE[name]
    assert_rel(ess_bulk(x), bulk)
    assert_rel(ess_tail(x), tail)
    assert_rel(ess_mean(x), mean)
    assert_rel(rhat(x), rh)


@pytest.mark.parametrize("case", ARVIZ_SMALL, ids=lambda c: f"seed{c[0]}")
def test_matches_arviz_short_chains(case: tuple[float, ...]) -> None:
    seed, chains, draws, phi, bulk, tail, mean, rh = case
    x = mx.array(ar1(np.random.default_rng(int(seed)), int(chains), int(draws), phi))
    assert_rel(ess_bulk(x), bulk)
    assert_rel(ess_tail(x), tail)
    assert_rel(ess_mean(x), mean)
    assert_rel(rhat(x), rh)


def test_param_shape_is_kept_and_parameters_are_independent() -> None:
    x = mx.array(reference_cases()["a"])  # [4, 1000, 3]
    x6 = mx.concatenate([x, 2.0 * x + 1.0], axis=-1).reshape(4, 1000, 2, 3)
    for f in (ess_bulk, ess_tail, ess_mean, rhat):
        out = f(x6)
        assert out.shape == (2, 3)
        single = [f(x[:, :, j]).item() for j in range(3)]
        np.testing.assert_allclose(np.array(out[0]), single, rtol=1e-5)
        # Rank-based statistics are invariant to increasing affine maps; ess_mean is
        # affine-invariant too.
        np.testing.assert_allclose(np.array(out[1]), single, rtol=1e-4)
    assert ess_bulk(x[:, :, 0]).shape == ()


def test_iid_chains_ess_near_draw_count_and_rhat_near_one() -> None:
    # 200 independent replicates of 4 iid N(0,1) chains x 1000 draws, as 200 parameters.
    # Under iid draws each autocorrelation estimate has sd ~ 1/sqrt(S) (S = 4000 total
    # draws); Geyer's rule keeps a few lags (pairs up to the first negative pair sum,
    # about 2 pairs on average), so tau_hat - 1 = 2 * sum of ~4 such terms has
    # sd <= 2 * sqrt(4 / S) ~ 0.063, and ESS/S = 1/tau_hat. A per-replicate bound of
    # 0.3 is ~5 sd; the mean over 200 replicates has sd ~ 0.063/sqrt(200) ~ 0.0045,
    # and the estimators have a small known downward bias (truncation; tail ESS is a
    # minimum of two estimates), so the mean is required within 0.06 of 1.
    # For R-hat on 8 split chains of 500: B/W ~ chi2_7/7 (sd sqrt(2/7) ~ 0.53) and
    # R-hat - 1 ~ (B/W - 1)/(2*500), sd ~ 5e-4: a bound of 0.005 is ~10 sd.
    s = 4 * 1000
    x = mx.random.normal((4, 1000, 200), key=mx.random.key(0))
    for f in (ess_bulk, ess_mean, ess_tail):
        ratio = np.array(f(x)) / s
        assert np.all(np.abs(ratio - 1.0) < 0.3), f.__name__
        assert abs(ratio.mean() - 1.0) < 0.06, f.__name__
    rh = np.array(rhat(x))
    assert np.all(np.abs(rh - 1.0) < 0.005)


def test_autocorrelated_chains_have_smaller_ess() -> None:
    # AR(1) with phi: ESS_mean / S -> (1 - phi) / (1 + phi) = 1/19 for phi = 0.9.
    x = mx.array(ar1(np.random.default_rng(3), 8, 2000, 0.9).astype(np.float32))
    ratio = ess_mean(x).item() / (8 * 2000)
    assert 0.5 / 19 < ratio < 2.0 / 19


def test_shifted_chains_give_large_rhat() -> None:
    shift = mx.array([0.0, 0.0, 0.0, 2.0]).reshape(4, 1, 1)
    x = mx.random.normal((4, 1000, 3), key=mx.random.key(1)) + shift
    assert np.all(np.array(rhat(x)) > 1.1)
    # Scale differences are caught by the folded half of rank R-hat.
    scale = mx.array([1.0, 1.0, 1.0, 4.0]).reshape(4, 1)
    y = mx.random.normal((4, 1000), key=mx.random.key(2)) * scale
    assert rhat(y).item() > 1.1


def test_edge_cases() -> None:
    const = mx.ones((2, 10))
    assert ess_bulk(const).item() == 20.0
    assert ess_mean(const).item() == 20.0
    with_nan = mx.array(reference_cases()["a"][:, :, 0])
    with_nan[1, 5] = mx.nan
    for f in (ess_bulk, ess_tail, ess_mean, rhat):
        assert math.isnan(f(with_nan).item())
        assert math.isnan(f(mx.zeros((2, 3))).item())  # fewer than 4 draws
    assert math.isnan(rhat(mx.random.normal((1, 100), key=mx.random.key(3))).item())
    with pytest.raises(ValueError):
        ess_bulk(mx.zeros((10,)))
    with pytest.raises(ValueError):
        ess_tail(mx.zeros((2, 10)), prob=1.5)


def test_ess_tail_prob_is_total_tail_mass() -> None:
    # ess_tail(prob) uses the prob/2 and 1 - prob/2 quantiles; with symmetric iid data
    # a wider tail (prob = 0.5: quartiles) has a larger ESS than 5%/95% (prob = 0.1).
    x = mx.random.normal((4, 1000), key=mx.random.key(4))
    assert ess_tail(x, prob=0.5).item() > ess_tail(x).item()


def test_importance_weight_ess() -> None:
    assert effective_sample_size_weights(mx.zeros(50)).item() == pytest.approx(50.0, rel=1e-6)
    dominant = mx.array([0.0, -1e4, -1e4, -1e4])
    assert effective_sample_size_weights(dominant).item() == pytest.approx(1.0, rel=1e-6)
    lw = np.random.default_rng(5).normal(size=(3, 100)).astype(np.float32)
    w = np.exp(lw - lw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    expected = 1.0 / (w**2).sum(axis=1)
    got = effective_sample_size_weights(mx.array(lw))
    np.testing.assert_allclose(np.array(got), expected, rtol=1e-5)
    # Invariant to the normalising constant (very negative log weights are fine). The
    # float32 input lw - 5000 itself is rounded to ~2.4e-4 (half an ulp at 5000), which
    # moves each weight by up to that relative amount, hence the looser tolerance.
    shifted = effective_sample_size_weights(mx.array(lw - 5000.0))
    np.testing.assert_allclose(np.array(shifted), expected, rtol=1e-3)
    along0 = effective_sample_size_weights(mx.array(lw.T), axis=0)
    np.testing.assert_allclose(np.array(along0), expected, rtol=1e-5)


def test_summary() -> None:
    cases = reference_cases()
    a = cases["a"]
    b = cases["b"]
    table = summary({"theta": mx.array(a), "sigma": mx.array(b)})
    assert isinstance(table, SummaryTable)
    assert list(table) == ["theta[0]", "theta[1]", "theta[2]", "sigma"]
    for j in range(3):
        row = table[f"theta[{j}]"]
        flat = a[:, :, j].astype(np.float64).ravel()
        assert row["mean"] == pytest.approx(flat.mean(), abs=1e-5)
        assert row["sd"] == pytest.approx(flat.std(ddof=1), rel=1e-5)
        for q in (5, 50, 95):
            assert row[f"q{q}"] == pytest.approx(np.quantile(flat, q / 100), abs=1e-5)
        assert row["ess_bulk"] == pytest.approx(ARVIZ_REFERENCE["a"][0][j], rel=REL_TOL)
        assert row["ess_tail"] == pytest.approx(ARVIZ_REFERENCE["a"][1][j], rel=REL_TOL)
        assert row["r_hat"] == pytest.approx(ARVIZ_REFERENCE["a"][3][j], rel=REL_TOL)
    assert table["sigma"]["r_hat"] == pytest.approx(ARVIZ_REFERENCE["b"][3][0], rel=REL_TOL)
    text = str(table)
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[0].split() == ["param", *SummaryTable.columns]
    assert lines[4].startswith("sigma")
    single_chain = summary({"x": mx.random.normal((1, 100), key=mx.random.key(6))})
    assert math.isnan(single_chain["x"]["r_hat"])


# ------------------------------------------------------------------ layouts
def _chain_result(n_chains: int | None, n_draws: int = 400):
    """A real chain() run: MH on x ~ N(0, 1), recording "x" (and "y")."""
    from functools import partial as bind

    from genmlx.core import gen, select
    from genmlx.dists import normal
    from genmlx.infer import chain, mh

    @gen
    def model():
        normal(0.0, 1.0) @ "x"
        normal(0.0, 1.0) @ "y"

    key = mx.random.key(0)
    tr = model.simulate((), key=key) if n_chains is None else model.vsimulate((), n_chains, key=key)
    kernel = bind(mh, selection_or_proposal=select("x", "y"))
    return chain(kernel, tr, n_draws, key=mx.random.key(1), addresses=["x", "y"])


def test_a_chain_result_knows_its_layout() -> None:
    res = _chain_result(4)
    assert res.samples["x"].shape == (400, 4)  # chain() records [draws, chains]
    table = diagnostics.summary(res)
    by_hand = diagnostics.summary(
        {"x": mx.swapaxes(res.samples["x"], 0, 1), "y": mx.swapaxes(res.samples["y"], 0, 1)},
        layout="chain_draw",
    )
    assert table == by_hand
    assert diagnostics.summary(res.samples, layout="draw_chain") == table
    # ESS cannot exceed the number of draws by much; read the other way round it would
    # be computed from 400 "chains" of 4 draws
    assert table["x"]["ess_bulk"] < 1.5 * 1600
    one = _chain_result(4)._replace(samples={"x": res.samples["x"]})
    assert diagnostics.ess_bulk(one).item() == pytest.approx(table["x"]["ess_bulk"], rel=1e-6)
    assert diagnostics.rhat(one).item() == pytest.approx(table["x"]["r_hat"], rel=1e-6)


def test_a_single_chain_result() -> None:
    res = _chain_result(None, 200)
    assert res.samples["x"].shape == (200,)
    table = diagnostics.summary(res)
    assert math.isnan(table["x"]["r_hat"])
    ref = diagnostics.ess_bulk(res.samples["x"][None], layout="chain_draw").item()
    assert table["x"]["ess_bulk"] == pytest.approx(ref, rel=1e-6)
    assert diagnostics.ess_bulk(res.samples["x"], layout="draw").item() == pytest.approx(ref)


def test_ambiguous_inputs_are_refused() -> None:
    x = mx.zeros((4, 100))
    for f in (diagnostics.ess_bulk, diagnostics.ess_tail, diagnostics.ess_mean, diagnostics.rhat):
        with pytest.raises(ValueError, match="ambiguous.*layout="):
            f(x)
    with pytest.raises(ValueError, match="ambiguous"):
        diagnostics.summary({"x": x})
    with pytest.raises(ValueError, match="layout must be one of"):
        diagnostics.ess_bulk(x, layout="chains_first")
    res = _chain_result(4, 40)
    with pytest.raises(ValueError, match="knows its layout"):
        diagnostics.summary(res, layout="chain_draw")
    with pytest.raises(ValueError, match="recorded 2 addresses"):
        diagnostics.ess_bulk(res)
    with pytest.raises(TypeError, match="summary"):
        diagnostics.summary(x)


def test_to_chain_draw() -> None:
    x = mx.arange(12.0).reshape(3, 4)  # [draws, chains]
    assert mx.array_equal(diagnostics.to_chain_draw(x, layout="draw_chain"), x.T)
    assert diagnostics.to_chain_draw(x[:, 0], layout="draw").shape == (1, 3)
