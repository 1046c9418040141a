"""Tests of the fast gamma-family samplers: compaction and open proposals in
genmlx.dists.rejection, the ziggurat normal, Marsaglia–Tsang's squeeze, Erlang draws,
Bailey's Student-t, the negative-binomial table, multinomial trials and the von Mises
envelope — each against its exact law (KS / chi-square with fixed seeds, p > 1e-4),
its bounds (by quadrature), and eager vs ``mx.compile`` vs ``mx.vmap`` draws."""

from __future__ import annotations

import itertools
import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from scipy import integrate, stats

import genmlx.dists as gd
from genmlx.dists import discrete as D
from genmlx.dists import gamma_sampling as gs
from genmlx.dists import ziggurat
from genmlx.dists.rejection import compact, first_accepted, spill_slots


def np64(x: mx.array) -> np.ndarray:
    return np.array(x).astype(np.float64)


def same_draws(draw: Any, key: mx.array) -> None:
    """Eager, compiled and vmapped draws are identical (NaN equal to NaN)."""
    e = np.array(draw(key))
    np.testing.assert_array_equal(e, np.array(mx.compile(draw)(key)))
    keys = mx.random.split(key, 3)
    np.testing.assert_array_equal(
        np.array(mx.stack([draw(k) for k in keys])), np.array(mx.vmap(draw)(keys))
    )


# ------------------------------------------------------------------ rejection.py
def test_compact_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for p, q in ((0.1, 50), (0.1, 200), (0.0, 5), (1.0, 30)):
        f = rng.random(400) < p
        owner, slot = compact(mx.array(f), q)
        idx = np.flatnonzero(f)
        want_owner = np.full(q, 400)
        want_owner[: min(q, idx.size)] = idx[:q]
        np.testing.assert_array_equal(np.array(owner), want_owner)
        want_slot = np.full(400, q)
        want_slot[idx[:q]] = np.arange(min(q, idx.size))
        np.testing.assert_array_equal(np.array(slot), want_slot)
    flags = mx.array(rng.random((3, 100)) < 0.3)
    vm = mx.vmap(lambda f: compact(f, 40)[0])(flags)
    np.testing.assert_array_equal(
        np.array(vm), np.stack([np.array(compact(f, 40)[0]) for f in flags])
    )


def _open_propose(
    key: mx.array, shape: tuple[int, ...], prm: tuple[mx.array, ...]
) -> tuple[mx.array, mx.array, tuple[mx.array, ...]]:
    # Uniform(0, t) by rejection from Uniform(0, 1), decided at once only outside the
    # band [t - 0.1, t + 0.1); the band's proposals stay open for _open_resolve.
    (t,) = prm
    u = mx.random.uniform(shape=shape, key=key)
    return u, u < t - 0.1, (u,)


def _open_resolve(
    key: mx.array, state: tuple[mx.array, ...], prm: tuple[mx.array, ...], n_from: int
) -> tuple[mx.array, mx.array]:
    assert n_from >= state[0].shape[0] // 2
    (u,) = state
    (t,) = prm
    return u, u < t


@pytest.mark.parametrize(
    "t", [mx.array(0.3), mx.array([[0.2], [0.6]])], ids=["shared", "per-element"]
)
def test_first_accepted_with_open_proposals(t: mx.array) -> None:
    def draw(k: mx.array) -> mx.array:
        return first_accepted(
            _open_propose, k, (2, 20000), 60, mx.array(-1.0), (t,), 0.9, _open_resolve
        )

    x = np64(draw(mx.random.key(1)))
    tt = np.broadcast_to(np.array(t, dtype=np.float32).reshape(-1, 1), (2, 1))[:, 0]
    for j in range(2):  # row j has t[j]
        col = x[j]
        assert (col >= 0).all() and (col < tt[j]).all()  # no band proposal slipped by
        assert stats.kstest(col, stats.uniform(0, tt[j]).cdf).pvalue > 1e-4
    same_draws(draw, mx.random.key(2))


# --------------------------------------------------------------------- ziggurat
def test_ziggurat_is_exactly_normal() -> None:
    n = 2_000_000
    words = mx.random.split(mx.random.key(3), n // 2).reshape(-1)
    x, fast, layer = ziggurat.propose(words)
    assert abs(float(mx.mean(fast.astype(mx.float32))) - (1 - ziggurat.P_SLOW)) < 5e-4
    xs, ok = ziggurat.settle(mx.random.key(4), x, fast, layer, n)
    z = np64(xs)[np.array(ok)]
    assert abs(1 - z.size / n - ziggurat.P_REJECT) < 5e-4
    assert stats.kstest(z, "norm").pvalue > 1e-4
    # the tail beyond R: its share and its conditional law
    tail = np.abs(z) > ziggurat.R
    assert stats.binomtest(int(tail.sum()), z.size, 2 * stats.norm.sf(ziggurat.R)).pvalue > 1e-4
    t = np.abs(z[tail])
    cond = lambda v: 1 - stats.norm.sf(v) / stats.norm.sf(ziggurat.R)  # noqa: E731
    assert stats.kstest(t, cond).pvalue > 1e-4


def test_ziggurat_constants() -> None:
    # accepted words reach the tail as often as a normal does
    tail = 2 * stats.norm.sf(ziggurat.R)
    assert abs(ziggurat.P_TAIL / (1 - ziggurat.P_REJECT) - tail) < 1e-3 * tail
    # the tail method's acceptance at R and the attempts it gets
    acc = (
        ziggurat.R
        * math.sqrt(2 * math.pi)
        * stats.norm.sf(ziggurat.R)
        * math.exp(ziggurat.R**2 / 2)
    )
    assert acc > ziggurat._TAIL_ACCEPT
    assert (1 - ziggurat._TAIL_ACCEPT) ** ziggurat.TAIL_ATTEMPTS < 1e-15
    # the layers' area: the half-normal's plus what the wedges reject
    assert abs(256 * ziggurat._V * (1 - ziggurat.P_REJECT) - math.sqrt(math.pi / 2)) < 1e-12


# ------------------------------------------------------------------------ gamma
def _mt_log_ratio(x: np.ndarray, d: float) -> np.ndarray:
    """``x^2/2 + d (1 - v + log v)`` = ``d phi(w)``, ``w = x / (3 sqrt d)``, ``phi(w) =
    1.5 w^2 - 3 w - w^3 + 3 log1p(w)``, in float64 without cancellation (its series
    ``3 sum_{k >= 4} (-1)^(k+1) w^k / k`` for ``|w| < 1/2``)."""
    w = x / (3 * math.sqrt(d))
    small = np.abs(w) < 0.5
    ws = np.where(small, w, 0.0)
    series = sum(3 * (-1) ** (k + 1) * ws**k / k for k in range(4, 60))
    with np.errstate(invalid="ignore", divide="ignore"):
        direct = 1.5 * w * w - 3 * w - w**3 + 3 * np.log1p(np.where(w > -1, w, 0.0))
    phi = np.where(small, series, direct)
    return np.where(w > -1, d * phi, -np.inf)


@pytest.mark.parametrize("d", [2 / 3, 0.8, 2 + 1 / 6, 10.0, 1e3, 1e6])
def test_squeeze_is_below_the_acceptance_ratio(d: float) -> None:
    # 1 - x^4 / (108 d min(1, 1 + c x)) <= exp(x^2/2 + d (1 - v + log v)) for all x
    x = np.concatenate([np.linspace(-3 * math.sqrt(d), 40, 400_001), [-3 * math.sqrt(d) + 1e-9]])
    c = 1 / math.sqrt(9 * d)
    m = np.minimum(1.0, 1 + c * x)
    with np.errstate(divide="ignore"):
        sq = np.where(m > 0, 1 - x**4 / (108 * d * m), -np.inf)
    assert np.all(sq <= np.exp(_mt_log_ratio(x, d)) + 1e-12)


def test_squeeze_failure_and_rejection_bounds() -> None:
    def fail(d: float) -> float:
        c = 1 / math.sqrt(9 * d)

        def f(x: float) -> float:
            m = min(1.0, 1 + c * x)
            return 1.0 if m <= 0 else min(1.0, x**4 / (108 * d * m))

        g = lambda x: f(x) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        return integrate.quad(g, -40, 40, points=[-1 / c, 0.0], limit=400)[0]

    fails = [fail(d) for d in (2 / 3, 0.7, 1.0, 2.0, 10.0, 100.0)]
    assert max(fails) == fails[0] and fails[0] < gs._P_SQUEEZE_FAIL - 2.0**-16
    assert gs._P_OPEN >= ziggurat.P_SLOW + gs._P_SQUEEZE_FAIL
    # an element is never accepted with probability < 1e-13
    assert gs._P_FINAL_REJECT >= ziggurat.P_REJECT + 0.0483
    assert gs._P_FINAL_REJECT**gs.GAMMA_ROUNDS < 1e-13
    for n in (1, 7, 100, 10_000, 1_000_000):
        q = gs.spill_slots(n)
        assert q == n or stats.binom(n, gs._P_OPEN).sf(q) < 1e-14


def _squeeze_fail(d: float) -> float:
    c = 1 / math.sqrt(9 * d)

    def f(x: float) -> float:
        m = min(1.0, 1 + c * x)
        return 1.0 if m <= 0 else min(1.0, x**4 / (108 * d * m))

    g = lambda x: f(x) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return integrate.quad(g, -60, 60, points=[-1 / c, 0.0], limit=800)[0]


def test_squeeze_failure_table_bounds_every_shape_above_its_grid_point() -> None:
    table = gs._SQUEEZE_FAIL_BY_D
    for d_i, p in table:
        assert _squeeze_fail(d_i) <= p
    ds = np.geomspace(2 / 3, 2e3, 120)
    fails = [_squeeze_fail(float(d)) for d in ds]
    assert all(a >= b for a, b in itertools.pairwise(fails))  # falls with d
    # plain-number shapes size their slots by it; arrays (maybe traced) by the worst case
    assert gs._p_open(2.5) < gs._p_open(1.0) <= gs._P_OPEN
    assert gs._p_open(mx.array(2.5)) == gs._P_OPEN
    assert gs._p_open([2.0, 0.5]) == gs._p_open(1.5)  # d = 1.5 - 1/3 for alpha 0.5 boosted


def test_invalid_shapes_do_not_take_valid_elements_slots() -> None:
    # half the elements invalid (NaN draws): the valid half must still follow its law
    alpha = mx.array([2.5, -1.0] * 5000)
    g = np64(gs.standard_gamma(mx.random.key(15), alpha, (20, 10000)))
    assert np.isnan(g[:, 1::2]).all()
    assert stats.kstest(g[:, 0::2].reshape(-1), stats.gamma(2.5).cdf).pvalue > 1e-4


@pytest.mark.parametrize("alpha", [1.0, 1.0 + 2e-7, 2.5, 7.3, 1e5])
def test_marsaglia_tsang_path_fits(alpha: float) -> None:
    g = np64(gs.standard_gamma(mx.random.key(5), alpha, (300_000,)))
    a = float(np.float32(alpha))
    assert stats.kstest(g, stats.gamma(a).cdf).pvalue > 1e-4
    assert abs(g.mean() - a) < 5 * math.sqrt(a / g.size)


@pytest.mark.parametrize(
    ("alpha", "rate"),
    [(2.5, 1.5), (1.3, 0.01), (7.5, 3e5), (2.5, mx.array(1.5)), (mx.array(2.5), 1.5)],
    ids=["plain", "plain-small-rate", "plain-large-rate", "array-rate", "array-shape"],
)
def test_gamma_with_plain_and_array_parameters_fits(alpha: Any, rate: Any) -> None:
    # plain numbers put the scale into d (no clamp); arrays scale and clamp afterwards
    x = np64(gd.gamma.sample(mx.random.key(16), alpha, rate, shape=(200_000,)))
    a, r = float(np.float32(np.array(alpha))), float(np.float32(np.array(rate)))
    assert stats.kstest(x, stats.gamma(a, scale=1 / r).cdf).pvalue > 1e-4


def test_erlang_path_fits_alone_and_mixed() -> None:
    for k in range(1, gs.ERLANG_MAX + 1):
        g = np64(gs.standard_gamma(mx.random.key(6), float(k), (300_000,)))
        assert stats.kstest(g, stats.gamma(k).cdf).pvalue > 1e-4
    alphas = np.array([1.0, 2.0, 2.5, 4.0, 5.0, 0.5], dtype=np.float32)
    g = np64(gs.standard_gamma(mx.random.key(7), mx.array(alphas), (100_000, 6)))
    for j, a in enumerate(alphas.astype(np.float64)):
        assert stats.kstest(g[:, j], stats.gamma(a).cdf).pvalue > 1e-4


def test_scaled_gamma_keeps_tiny_draws_that_scale_into_range() -> None:
    # Gamma(0.01) draws underflow float32 42% of the time; scaled by 1e30 most are
    # representable, and they must be exp(log G + log scale).
    key = mx.random.key(8)
    ls = math.log(1e30)
    g = np64(gs.scaled_gamma(key, 0.01, (50_000,), ls))
    lg = np64(gs.log_standard_gamma(key, 0.01, (50_000,))) + ls
    inside = (lg > math.log(2.0**-126) + 1e-3) & (lg < 80)
    np.testing.assert_allclose(g[inside], np.exp(lg[inside]), rtol=2e-5)
    assert inside.mean() > 0.6


CASES = {
    "gamma-mixed": (gd.gamma, (mx.array([[0.3], [2.0], [2.5]]), mx.array(1.5))),
    "gamma": (gd.gamma, (2.5, 1.5)),
    "inv_gamma": (gd.inv_gamma, (mx.array([[0.3], [3.0]]), 2.0)),
    "chi2": (gd.chi2, (mx.array([[0.5], [4.0], [5.0]]),)),
    "beta-mixed": (gd.beta, (mx.array([[0.3], [2.0]]), 3.0)),
    "beta": (gd.beta, (2.0, 3.5)),
    "student_t-mixed": (gd.student_t, (mx.array([[0.5], [4.0]]), 0.0, 1.0)),
    "student_t": (gd.student_t, (4.0, 1.0, 2.0)),
    "dirichlet-mixed": (gd.dirichlet, (mx.array([[0.3, 1.0, 2.0], [1.0, 2.0, 3.5]]),)),
    "dirichlet": (gd.dirichlet, (mx.array([1.0, 2.0, 3.0]),)),
    "dirichlet-columns": (gd.dirichlet, (mx.array([0.3, 1.0, 2.5, 7.0]),)),
    "dirichlet-columns-plain": (gd.dirichlet, ([1.5, 2.5, 3.5],)),
    "beta-johnk": (gd.beta, (0.5, 0.5)),
    "beta-johnk-mixed": (gd.beta, (mx.array([[0.3], [2.0], [1.0]]), mx.array([0.5, 1.5]))),
    "gamma-array-in-range": (gd.gamma, (mx.array([[1.0], [2.5], [7.0]]), mx.array(1.5))),
    "neg_binomial-mixed": (gd.neg_binomial, (mx.array([[0.3], [3.0]]), 0.4)),
    "neg_binomial-table": (gd.neg_binomial, (3.0, 0.4)),
    "neg_binomial-mixture": (gd.neg_binomial, (20.0, 0.5)),
    "multinomial": (gd.multinomial, (10, mx.array([0.2, 0.3, 0.5]))),
    "multinomial-mixed": (gd.multinomial, (mx.array([[3.0], [40.0]]), mx.array([0.2, 0.8]))),
    "beta_binomial": (gd.beta_binomial, (10, 2.0, 3.0)),
    "von_mises": (gd.von_mises, (mx.array([0.0, 1.0]), mx.array([[0.0], [2.0], [50.0]]))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_eager_compiled_and_vmapped_draws_agree(name: str) -> None:
    # Eager sampling skips branches (Erlang/Marsaglia–Tsang, boost, table/mixture,
    # trials/binomials, deeper levels) that no element needs; the draws must equal
    # those of compiled and vmapped sampling, which run every branch.
    dist, params = CASES[name]

    def draw(k: mx.array) -> mx.array:
        return dist.sample(k, *params, shape=(3000,))

    same_draws(draw, mx.random.key(9))


# ---------------------------------------------------------------- Student's t
@pytest.mark.parametrize("df", [0.3, 1.0, 1.07, 4.0, 100.0, 1e5])
def test_bailey_student_t_fits(df: float) -> None:
    x = np64(gs.standard_t(mx.random.key(10), df, (300_000,)))
    assert not np.isnan(x).any()
    nu = float(np.float32(df))
    finite = np.isfinite(x)
    # float32 holds every draw except, for tiny df, the far tails (P(|T| > 3e38))
    assert (~finite).mean() < 1e-4
    assert stats.kstest(np.where(finite, x, np.sign(x) * 1e300), stats.t(nu).cdf).pvalue > 1e-4


def test_bailey_rounds_bound() -> None:
    assert (1 - math.pi / 4) ** gs.T_ROUNDS < 1e-13
    assert spill_slots(10**6, gs._T_REJECT) < 10**6


# ---------------------------------------------------------------- discrete
@pytest.mark.parametrize(
    ("r", "p", "table"),
    [
        (3.0, 0.4, True),
        (0.5, 0.5, True),
        (0.01, 0.3, True),
        (1e4, 0.999, True),
        (20.0, 0.5, False),
        (3.0, 0.05, False),
    ],
)
def test_neg_binomial_table_choice_and_fit(r: float, p: float, table: bool) -> None:
    ok = bool(D._nb_table_ok(mx.array(r), mx.array(p)))
    assert ok == table
    rr, pp = float(np.float32(r)), float(np.float32(p))
    ref = stats.nbinom(rr, pp)
    if ok:  # the table's claim: less than 1e-14 beyond it
        assert ref.sf(D._NB_CAP) < 1e-14
    x = np64(gd.neg_binomial.sample(mx.random.key(11), r, p, shape=(200_000,)))
    lo, hi = int(ref.ppf(1e-7)), int(ref.isf(1e-7))
    ks = np.arange(lo, hi + 1)
    obs = np.array([(x == k).sum() for k in ks], dtype=np.float64)
    exp = ref.pmf(ks) * x.size
    keep = exp > 5
    exp_k = exp[keep] * obs[keep].sum() / exp[keep].sum()
    assert stats.chisquare(obs[keep], exp_k).pvalue > 1e-4
    m, v = ref.stats()
    assert abs(x.mean() - m) < 5 * math.sqrt(v / x.size)


def test_neg_binomial_p_one_is_zero() -> None:
    assert np.all(np64(gd.neg_binomial.sample(mx.random.key(12), 2.0, 1.0, shape=(1000,))) == 0)


@pytest.mark.parametrize("n", [0, 1, 4, 32, 33, 200])
def test_multinomial_trials_and_binomials_fit(n: int) -> None:
    p = np.array([0.2, 0.0, 0.3, 0.5], dtype=np.float32)
    x = np64(gd.multinomial.sample(mx.random.key(13), n, mx.array(p), shape=(100_000,)))
    assert np.all(x.sum(-1) == n) and np.all(x[:, 1] == 0)
    for j in (0, 2, 3):
        m, v = n * p[j], n * p[j] * (1 - p[j])
        assert abs(x[:, j].mean() - m) < 5 * math.sqrt(v / x.shape[0]) + 1e-12
        if n:
            assert abs(x[:, j].var() / v - 1) < 0.03
    if 0 < n <= 4:  # the whole joint law
        keys, counts = np.unique(x, axis=0, return_counts=True)
        p64 = p.astype(np.float64)
        p64[-1] = 1.0 - p64[:-1].sum()  # the float32 probabilities, summing to 1
        exp = stats.multinomial(n, p64).pmf(keys) * x.shape[0]
        assert stats.chisquare(counts, exp * counts.sum() / exp.sum()).pvalue > 1e-4


def test_multinomial_per_element_counts_on_both_paths() -> None:
    n = mx.array([[3.0], [40.0]])
    x = np64(gd.multinomial.sample(mx.random.key(14), n, mx.array([0.1, 0.9]), shape=(100_000,)))
    assert np.all(x.sum(-1) == np.array([[3.0], [40.0]]))
    for i, nn in enumerate((3.0, 40.0)):
        col = x[:, i, 0, 0]
        assert abs(col.mean() - 0.1 * nn) < 5 * math.sqrt(0.09 * nn / col.size)


# ------------------------------------------------------------- Jöhnk's beta
def fits_below(x: np.ndarray, law: Any, c: float) -> None:
    """KS of the draws below ``c`` against the law conditioned on ``X < c`` (p > 1e-4),
    and the share at or above ``c`` within 5 binomial standard errors. Near 1 the
    float32 grid (spacing 6e-8) makes the draws discrete where shapes below 1 put
    visible mass, so the KS test proper stops at ``c``."""
    below = x < c
    pc = float(law.cdf(c))
    assert abs((~below).mean() - (1 - pc)) < 5 * math.sqrt(pc * (1 - pc) / x.size) + 1e-7
    assert stats.kstest(x[below], lambda t: law.cdf(t) / pc).pvalue > 1e-4


def check_moments(x: np.ndarray, raw: list[float]) -> None:
    """Sample mean and variance within 5 standard errors of the exact ones (``raw``:
    E[X], ..., E[X^4]; SE of the sample variance from the central fourth moment)."""
    m1, m2, m3, m4 = raw
    var = m2 - m1**2
    mu4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
    n = x.shape[0]
    assert abs(x.mean() - m1) < 5 * math.sqrt(var / n), (x.mean(), m1)
    assert abs(x.var() - var) < 5 * math.sqrt((mu4 - var**2) / n), (x.var(), var)


def _johnk_acceptance(a: float, b: float) -> float:
    return math.exp(math.lgamma(a + 1) + math.lgamma(b + 1) - math.lgamma(a + b + 1))


@pytest.mark.parametrize("a,b", [(0.5, 0.5), (1.0, 1.0), (0.1, 0.9), (0.7, 0.3), (1.0, 0.25)])
def test_johnk_beta_fits(a: float, b: float) -> None:
    n = 300_000
    x = np64(gs.standard_beta(mx.random.key(40), a, b, (n,)))
    af, bf = float(np.float32(a)), float(np.float32(b))
    law = stats.beta(af, bf)
    fits_below(x, law, 1.0 - 1e-4)
    check_moments(x, [float(law.moment(k)) for k in range(1, 5)])


@pytest.mark.parametrize("a,b", [(0.02, 0.3), (1e-3, 0.5), (0.05, 0.05), (1e-4, 1e-4)])
def test_johnk_beta_tiny_shapes_in_log_space(a: float, b: float) -> None:
    # X = U^(1/a) underflows float32 for most U when a is tiny: the log-space form must
    # keep the law. P(X <= t) at points from 1e-30 up, within 5 binomial standard
    # errors (the KS test cannot be used here: the law puts a mass ~ t^a below any
    # float32 and near 1 it is finer than float32's grid).
    n = 400_000
    x = np64(gs.standard_beta(mx.random.key(41), a, b, (n,)))
    assert ((x > 0) & (x < 1)).all()
    law = stats.beta(float(np.float32(a)), float(np.float32(b)))
    for t in (1e-30, 1e-10, 1e-3, 0.3, 0.7):
        p = float(law.cdf(t))
        se = math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs((x <= t).mean() - p) < 5 * se + 1e-6, (t, (x <= t).mean(), p)


def test_johnk_acceptance_bounds_the_slots() -> None:
    # the empirical acceptance of a proposal is Gamma(a+1)Gamma(b+1)/Gamma(a+b+1)
    # (within 5 standard errors), at least 1/2 on (0, 1]^2, and the rounds leave an
    # element unaccepted with probability < 3e-14.
    n = 400_000
    for a, b in [(0.5, 0.5), (1.0, 1.0), (0.2, 0.9)]:
        prm = (mx.array(1.0 / a), mx.array(1.0 / b), mx.array(0.0))
        _, acc = gs._johnk_propose(mx.random.key(42), (1, n), prm)
        p = _johnk_acceptance(a, b)
        assert abs(float(mx.mean(acc.astype(mx.float32))) - p) < 5 * math.sqrt(p * (1 - p) / n)
        assert abs(gs._johnk_p_reject(a, b) - (1 - p)) < 1e-12 or gs._johnk_p_reject(a, b) == 0.5
    grid = np.linspace(0.01, 1.0, 34)
    worst = max(1 - _johnk_acceptance(a, b) for a in grid for b in grid)
    assert worst <= 0.5 + 1e-12
    for p in (0.5, gs._johnk_p_reject(0.5, 0.5), gs._johnk_p_reject(0.01, 0.01)):
        assert p ** gs._johnk_rounds(p) < 3e-14
    assert gs._johnk_p_reject(mx.array(0.5), 0.5) == 0.5  # arrays: the worst case


def test_beta_mixed_shapes_pick_the_right_method_per_element() -> None:
    # Jöhnk where a, b <= 1, gamma ratios elsewhere, in one call (and elements drawn
    # the other way never take Jöhnk's slots: they accept at once).
    a = mx.array([[0.3], [2.0], [1.0], [0.8]])
    b = mx.array([[0.7], [0.7], [3.5], [1.0]])
    x = np64(gs.standard_beta(mx.random.key(43), a, b, (4, 100_000)))
    for row, (ai, bi) in zip(x, [(0.3, 0.7), (2.0, 0.7), (1.0, 3.5), (0.8, 1.0)]):
        law = stats.beta(float(np.float32(ai)), float(np.float32(bi)))
        fits_below(row, law, 1.0 - 1e-4)
    # invalid parameters give NaN on either path
    bad = np64(gs.standard_beta(mx.random.key(44), mx.array([-1.0, 0.5, 2.0]), 0.5, (3,)))
    assert np.isnan(bad[0]) and not np.isnan(bad[1:]).any()


# ------------------------------------------------- Dirichlet column by column
@pytest.mark.parametrize(
    "alpha",
    [mx.array([1.5, 2.5, 3.5]), [1.5, 2.5, 3.5], mx.array([0.3, 1.0, 2.5, 0.05])],
    ids=["array", "plain", "boosted"],
)
def test_dirichlet_columns_fit_their_beta_marginals(alpha: Any) -> None:
    n = 200_000
    al = np.array(alpha if isinstance(alpha, list) else np.array(alpha), dtype=np.float64)
    al = al.astype(np.float32).astype(np.float64)
    x = np64(gs.standard_dirichlet(mx.random.key(45), alpha, (n, al.size)))
    assert (x > 0).all() and np.abs(x.sum(-1) - 1).max() < al.size * 2.0**-22
    a0 = al.sum()
    for j, aj in enumerate(al):
        law = stats.beta(aj, a0 - aj)
        if aj >= 0.2:  # tiny concentrations: their mass near 0 is below float32's range
            fits_below(x[:, j], law, 1.0 - 1e-4)
        check_moments(x[:, j], [float(law.moment(k)) for k in range(1, 5)])
    # the components are not independent: Cov(X_i, X_j) = -a_i a_j / (a0^2 (a0 + 1))
    cov = np.cov(x[:, 0], x[:, 1])[0, 1]
    exact = -al[0] * al[1] / (a0**2 * (a0 + 1))
    se = math.sqrt(np.var((x[:, 0] - x[:, 0].mean()) * (x[:, 1] - x[:, 1].mean())) / n)
    assert abs(cov - exact) < 5 * se


def test_dirichlet_columns_with_invalid_concentration_give_nan_rows() -> None:
    x = np64(gs.standard_dirichlet(mx.random.key(46), mx.array([1.5, -1.0, 2.0]), (5, 3)))
    assert np.isnan(x).any(axis=-1).all()
