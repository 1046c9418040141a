"""Conformance checks for distributions: sampler, density, gradients, shapes, batching.

:func:`check_distribution` runs every check below on one distribution and one tuple of
parameters and raises ``AssertionError`` listing *all* failures (a distribution author
sees everything that is wrong at once); on success it returns a
:class:`DistributionReport` with the statistics of each check. Each check is also
public on its own.

Checks (``S = sample(key, *params, shape=(n,))``; ``batch`` and ``event`` the shapes of
``sample(key, *params)`` split at ``dist.event_ndim``):

* ``shapes`` — ``sample(..., shape=s)`` is ``s + batch + event`` for several ``s``;
  ``log_prob`` of it is ``s + batch``; a continuous distribution (``is_discrete``
  False) has floating values; ``log_prob`` broadcasts a value with an extra
  leading axis; ``reparam_sample`` has the sample's shape.
* ``log_prob_finite`` — ``log_prob`` is finite (not NaN, not ±inf) on samples.
* ``sampler_density`` — the sampler draws from the density that ``log_prob`` states, by
  a goodness-of-fit test at level ``alpha`` (Bonferroni-corrected over batch elements
  and projections) with the fixed ``key`` (see :func:`check_sampler_density`).
* ``normalized`` — the density integrates (sums) to one; for enumerable distributions
  ``logsumexp(log_prob(support))`` is 0 for every batch element and every sample lies
  in the support.
* ``batched_sampling`` — ``mx.vmap`` of ``sample`` over keys equals ``sample`` called
  per key (exactly, element by element); ``sample(key, *params, shape=(n,))`` and the
  ``vmap`` over ``n`` keys have the same distribution (two-sample tests); for batched
  parameters, batch element ``i`` of the batched sample and samples drawn with the
  parameters sliced at ``i`` have the same distribution, and ``log_prob`` with batched
  parameters at ``i`` equals ``log_prob`` with the sliced parameters;
  ``mx.compile(sample)`` agrees with eager sampling for the same key.
* ``gradients`` — ``mx.grad`` of ``log_prob`` w.r.t. the value (continuous
  distributions) and every floating parameter is finite and matches central finite
  differences (see :func:`check_log_prob_gradients`); where ``has_reparam``, gradients
  through ``reparam_sample`` are finite and its draws have the sampler's distribution.
* ``gfi_laws`` — :func:`~genmlx.core.testing.check_gfi_laws` on ``(dist, params)``.

The exact (non-statistical) checks run for several keys drawn by hypothesis
(derandomised, like the GFI laws); the statistical tests use the one fixed ``key`` so
that their p-values mean what they say and a failure reproduces.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core.testing import check_distribution
    >>> from genmlx.core.testing.models import normal
    >>> report = check_distribution(normal, (0.5, 2.0), n=5000, max_examples=1)
    >>> report.passed
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import mlx.core as mx
import numpy as np
import numpy.typing as npt

from genmlx.core.distribution import Distribution

__all__ = [
    "DISTRIBUTION_CHECKS",
    "CheckResult",
    "DistributionReport",
    "check_batched_sampling",
    "check_distribution",
    "check_log_prob_finite",
    "check_log_prob_gradients",
    "check_normalized",
    "check_sampler_density",
    "check_shapes",
    "chi2_sf",
    "kolmogorov_sf",
    "ks_2samp_pvalue",
    "ks_pvalue",
]

F64 = npt.NDArray[np.float64]

DEFAULT_SEED = 20240611
"""Seed of the default ``key`` of the statistical tests."""

# Gauss–Legendre nodes and weights on [-1, 1] (3 points, exact for degree 5).
_GL_X = np.array([-math.sqrt(0.6), 0.0, math.sqrt(0.6)])
_GL_W = np.array([5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0])
_F32_BIG = 1e30  # tail grids stop here (float32 overflows at 3.4e38)


# --------------------------------------------------------------------------- results
@dataclass
class CheckResult:
    """The outcome of one check: its name, whether it passed and what it measured."""

    name: str
    passed: bool
    detail: str


@dataclass
class DistributionReport:
    """All check results for one distribution and one parameter tuple."""

    dist: str
    params: tuple[Any, ...]
    results: list[CheckResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No check failed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The checks that failed."""
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        lines = [f"{self.dist} params={_short(self.params)}"]
        for r in self.results:
            lines.append(f"  {'ok  ' if r.passed else 'FAIL'} {r.name}: {r.detail}")
        return "\n".join(lines)


def _short(params: tuple[Any, ...]) -> str:
    out = []
    for p in params:
        if isinstance(p, mx.array):
            out.append(f"array{tuple(p.shape)}" if p.size > 6 else repr(np.array(p).tolist()))
        else:
            out.append(repr(p))
    return "(" + ", ".join(out) + ")"


class _Collector:
    """Gathers results of one check; ``fail`` records a failure without raising."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[str] = []
        self.notes: list[str] = []

    def fail(self, msg: str) -> None:
        self.errors.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)

    def result(self) -> CheckResult:
        if self.errors:
            return CheckResult(self.name, False, "; ".join(self.errors))
        return CheckResult(self.name, True, "; ".join(self.notes) or "ok")


# --------------------------------------------------------------------------- statistics
def kolmogorov_sf(lam: float) -> float:
    """``P(K > lam)`` for the Kolmogorov distribution: ``2 Σ (−1)^(k−1) exp(−2k²λ²)``."""
    if lam < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2.0 * (-1.0) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-16:
            break
    return min(1.0, max(0.0, total))


def ks_pvalue(d: float, n: float) -> float:
    """p-value of a Kolmogorov–Smirnov statistic ``d`` from ``n`` (effective) samples.

    Uses Stephens' (1970) finite-sample correction
    ``λ = (√n + 0.12 + 0.11/√n) d``, accurate to a few percent of the p-value for
    ``n ≥ 35``, which is ample for a test at level 1e-4.
    """
    sn = math.sqrt(n)
    return kolmogorov_sf((sn + 0.12 + 0.11 / sn) * d)


def ks_2samp_pvalue(a: F64, b: F64) -> float:
    """Two-sample Kolmogorov–Smirnov p-value for continuous samples ``a`` and ``b``."""
    a, b = np.sort(a), np.sort(b)
    allv = np.concatenate([a, b])
    fa = np.searchsorted(a, allv, side="right") / a.size
    fb = np.searchsorted(b, allv, side="right") / b.size
    d = float(np.max(np.abs(fa - fb)))
    return ks_pvalue(d, a.size * b.size / (a.size + b.size))


def _gamma_q(a: float, x: float) -> float:
    """Upper regularised incomplete gamma ``Q(a, x)`` (Numerical Recipes §6.2)."""
    if x <= 0:
        return 1.0
    gln = math.lgamma(a)
    if x < a + 1.0:  # series for P
        ap, s, d = a, 1.0 / a, 1.0 / a
        for _ in range(10000):
            ap += 1.0
            d *= x / ap
            s += d
            if abs(d) < abs(s) * 1e-15:
                break
        return max(0.0, 1.0 - s * math.exp(-x + a * math.log(x) - gln))
    # continued fraction for Q (modified Lentz)
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - gln) * h)


def chi2_sf(x: float, df: int) -> float:
    """``P(χ²_df > x)``."""
    if df <= 0:
        return 1.0
    return _gamma_q(0.5 * df, 0.5 * x)


def _pool(expected: F64, observed: F64, min_expected: float = 5.0) -> tuple[F64, F64]:
    """Merge cells (smallest expected first) until every cell expects ``min_expected``."""
    order = np.argsort(expected)
    e, o = expected[order], observed[order]
    out_e: list[float] = []
    out_o: list[float] = []
    acc_e = acc_o = 0.0
    for ei, oi in zip(e, o):
        acc_e += float(ei)
        acc_o += float(oi)
        if acc_e >= min_expected:
            out_e.append(acc_e)
            out_o.append(acc_o)
            acc_e = acc_o = 0.0
    if acc_e > 0 or acc_o > 0:
        if out_e:
            out_e[-1] += acc_e
            out_o[-1] += acc_o
        else:
            out_e.append(acc_e)
            out_o.append(acc_o)
    return np.array(out_e), np.array(out_o)


def _chi2_gof(expected: F64, observed: F64) -> tuple[float, int, float]:
    """Pearson's goodness of fit: ``(statistic, df, p)`` after pooling small cells."""
    e, o = _pool(expected, observed)
    if e.size < 2:
        return 0.0, 0, 1.0
    stat = float(np.sum((o - e) ** 2 / np.maximum(e, 1e-300)))
    df = e.size - 1
    return stat, df, chi2_sf(stat, df)


def _chi2_homogeneity(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """p-value of the chi-square test that two discrete samples share a distribution.

    ``a`` and ``b`` are ``[n, ...]`` arrays; rows are compared as whole values.
    """
    ra = a.reshape(a.shape[0], -1)
    rb = b.reshape(b.shape[0], -1)
    vals, inv = np.unique(np.concatenate([ra, rb]), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    ca = np.bincount(inv[: ra.shape[0]], minlength=len(vals)).astype(np.float64)
    cb = np.bincount(inv[ra.shape[0] :], minlength=len(vals)).astype(np.float64)
    na, nb = ca.sum(), cb.sum()
    tot = ca + cb
    # pool sparse values (by total count) so that every cell expects >= 5 in each row
    order = np.argsort(tot)
    cells_a: list[float] = []
    cells_b: list[float] = []
    acc_a = acc_b = 0.0
    thresh = 5.0 * (na + nb) / min(na, nb)
    for i in order:
        acc_a += ca[i]
        acc_b += cb[i]
        if acc_a + acc_b >= thresh:
            cells_a.append(acc_a)
            cells_b.append(acc_b)
            acc_a = acc_b = 0.0
    if acc_a + acc_b > 0:
        if cells_a:
            cells_a[-1] += acc_a
            cells_b[-1] += acc_b
        else:
            cells_a.append(acc_a)
            cells_b.append(acc_b)
    if len(cells_a) < 2:
        return 1.0
    A, B = np.array(cells_a), np.array(cells_b)
    T = A + B
    ea, eb = T * na / (na + nb), T * nb / (na + nb)
    stat = float(np.sum((A - ea) ** 2 / ea + (B - eb) ** 2 / eb))
    return chi2_sf(stat, len(cells_a) - 1)


# --------------------------------------------------------------------------- helpers
def _key(key: Any) -> mx.array:
    if key is None:
        return mx.random.key(DEFAULT_SEED)
    if isinstance(key, int):
        return mx.random.key(key)
    assert isinstance(key, mx.array)
    return key


def _np(x: mx.array) -> npt.NDArray[Any]:
    mx.eval(x)
    if x.dtype == mx.bfloat16:
        x = x.astype(mx.float32)
    return np.array(x)


def _f64(x: mx.array) -> F64:
    return np.asarray(_np(x), dtype=np.float64)


def _split(
    dist: Distribution, params: tuple[Any, ...], key: mx.array
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(batch, event)`` shapes of ``sample(key, *params)``."""
    s = tuple(dist.sample(key, *params).shape)
    k = len(s) - dist.event_ndim
    return s[:k], s[k:]


def _is_float_dtype(dt: Any) -> bool:
    return bool(mx.issubdtype(dt, mx.floating))


def _lp(dist: Distribution, values: Any, params: tuple[Any, ...]) -> F64:
    return _f64(dist.log_prob(values, *params))


def _kinds(dist: Distribution) -> str:
    if dist.is_discrete:
        return "discrete"
    return "continuous" if dist.event_ndim == 0 else "multivariate"


def _flat_batch(x: npt.NDArray[Any], lead: int, batch: tuple[int, ...]) -> npt.NDArray[Any]:
    """``[lead..., *batch, *event]`` → ``[lead..., B, *event]`` with ``B = prod(batch)``."""
    nb = int(np.prod(batch)) if batch else 1
    return x.reshape(*x.shape[:lead], nb, *x.shape[lead + len(batch) :])


def _fill_batch(values: npt.NDArray[Any], batch: tuple[int, ...], dtype: Any) -> mx.array:
    """``values`` ``[m, B, *event]`` (flat batch) → MLX ``[m, *batch, *event]``."""
    m = values.shape[0]
    out = mx.array(values.reshape(m, *batch, *values.shape[2:]))
    return out.astype(dtype) if out.dtype != dtype else out


def _bonferroni(alpha: float, m: int) -> float:
    return alpha / max(1, m)


# --------------------------------------------------------------------------- shapes
def check_shapes(dist: Distribution, params: tuple[Any, ...], key: Any = None) -> CheckResult:
    """Shape and dtype contract of ``sample``, ``log_prob`` and ``reparam_sample``."""
    c = _Collector("shapes")
    key = _key(key)
    base = dist.sample(key, *params)
    bshape = tuple(base.shape)
    if len(bshape) < dist.event_ndim:
        c.fail(f"sample has shape {bshape} but event_ndim is {dist.event_ndim}")
        return c.result()
    batch, event = bshape[: len(bshape) - dist.event_ndim], bshape[len(bshape) - dist.event_ndim :]
    if not dist.is_discrete and not _is_float_dtype(base.dtype):
        c.fail(f"continuous (is_discrete False) but samples have dtype {base.dtype}")
    for shape in [(), (3,), (2, 3)]:
        x = dist.sample(key, *params, shape=shape)
        want = (*shape, *batch, *event)
        if tuple(x.shape) != want:
            c.fail(f"sample(shape={shape}) has shape {tuple(x.shape)}, expected {want}")
            continue
        if x.dtype != base.dtype:
            c.fail(f"sample(shape={shape}) has dtype {x.dtype}, shape=() gave {base.dtype}")
        lp = dist.log_prob(x, *params)
        if tuple(lp.shape) != (*shape, *batch):
            c.fail(
                f"log_prob of a {want} sample has shape {tuple(lp.shape)}, "
                f"expected {(*shape, *batch)} (one number per event)"
            )
        if not _is_float_dtype(lp.dtype):
            c.fail(f"log_prob returned dtype {lp.dtype}, expected floating")
    x = dist.sample(key, *params, shape=(2,))
    lp = dist.log_prob(x[None], *params)
    if tuple(lp.shape) != (1, 2, *batch):
        c.fail(
            f"log_prob does not broadcast a value with an extra leading axis: "
            f"shape {tuple(lp.shape)}, expected {(1, 2, *batch)}"
        )
    if dist.has_reparam:
        r = dist.reparam_sample(key, *params, shape=(3,))
        if tuple(r.shape) != (3, *batch, *event):
            c.fail(f"reparam_sample(shape=(3,)) has shape {tuple(r.shape)}")
    c.note(f"batch={batch} event={event} dtype={base.dtype}")
    return c.result()


def check_log_prob_finite(
    dist: Distribution, params: tuple[Any, ...], key: Any = None, n: int = 1000
) -> CheckResult:
    """``log_prob`` is finite on ``n`` samples."""
    c = _Collector("log_prob_finite")
    x = dist.sample(_key(key), *params, shape=(n,))
    lp = _lp(dist, x, params)
    bad = ~np.isfinite(lp)
    if bad.any():
        i = np.argwhere(bad)[0]
        xv = _np(x)[tuple(i[:1])]
        c.fail(
            f"log_prob is {lp[tuple(i)]} on {int(bad.sum())} of {lp.size} samples "
            f"(e.g. at sample {xv.tolist()!r})"
        )
    else:
        c.note(f"{lp.size} values in [{lp.min():.4g}, {lp.max():.4g}]")
    return c.result()


# --------------------------------------------------------------------------- 1-D density
def _tail(edge: F64, step: F64, direction: float) -> F64:
    """Geometric tail grid ``edge + direction·step·(2^j − 1)``, ``[J, B]``, capped."""
    js = np.arange(0, 100, dtype=np.float64)[:, None]
    pts = edge[None, :] + direction * step[None, :] * (2.0**js - 1.0)
    cap = np.maximum(_F32_BIG, np.abs(edge) * 2.0)[None, :]
    return np.clip(pts, -cap, cap)


def _grid_cdf(
    dist: Distribution,
    params: tuple[Any, ...],
    xs: F64,
    batch: tuple[int, ...],
    dtype: Any,
) -> tuple[F64, F64, list[str]]:
    """CDF at sorted samples ``xs`` (``[n, B]``) from numerical integration of the density.

    The grid is the sorted samples themselves, extended geometrically below the smallest
    and above the largest sample to ±1e30 (so the whole real line, where the density is
    not negligible, is covered); each interval is integrated with 3-point
    Gauss–Legendre, whose nodes never touch an interval's end (so a density that is
    infinite at a support boundary is never evaluated there). Consecutive samples are
    ~1/n apart in probability, so every interval carries little mass and the
    quadrature error of the CDF is far below the KS critical distance ~1/√n.

    Returns ``(cdf [n, B], total mass [B], NaN messages)``.
    """
    n, nb = xs.shape
    k = min(10, n - 1)
    spread = np.maximum(np.abs(xs[-1] - xs[0]), 1e-30)
    lo_step = np.maximum(xs[k] - xs[0], 1e-6 * spread)
    hi_step = np.maximum(xs[-1] - xs[-1 - k], 1e-6 * spread)
    lower = _tail(xs[0], lo_step, -1.0)[::-1]  # ascending, ends at xs[0]
    upper = _tail(xs[-1], hi_step, 1.0)  # starts at xs[-1]
    grid = np.concatenate([lower[:-1], xs, upper[1:]], axis=0)  # [G, B]
    a, b = grid[:-1], grid[1:]
    mid, half = 0.5 * (a + b), 0.5 * (b - a)
    nodes = mid[None] + half[None] * _GL_X[:, None, None]  # [3, I, B]
    nodes32 = nodes.astype(np.float32)
    lp = _lp(dist, _fill_batch(nodes32.reshape(-1, nb), batch, dtype), params).reshape(3, -1, nb)
    msgs = []
    if np.isnan(lp).any():
        i = np.argwhere(np.isnan(lp))[0]
        msgs.append(
            f"log_prob is NaN at value {float(nodes32[tuple(i)])!r} (batch element {i[2]}); "
            "it must be -inf outside the support"
        )
    dens = np.exp(np.where(np.isnan(lp), -np.inf, lp))
    mass = half * np.sum(_GL_W[:, None, None] * dens, axis=0)  # [I, B]
    cum = np.concatenate([np.zeros((1, nb)), np.cumsum(mass, axis=0)], axis=0)  # [G, B]
    start = lower.shape[0] - 1
    cdf = cum[start : start + n]
    return cdf, cum[-1], msgs


def _ks_1samp(xs: F64, cdf: F64) -> float:
    """KS statistic of sorted samples ``xs`` with CDF values ``cdf`` at them."""
    n = xs.size
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))


# --------------------------------------------------------------------------- multivariate
def _hull_basis(y: F64, rtol: float = 1e-5) -> F64:
    """Orthonormal basis (``[D, D']``) of the affine hull of rows ``y`` (``[n, D]``)."""
    yc = y - y.mean(axis=0)
    _, s, vt = np.linalg.svd(yc, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.zeros((y.shape[1], 0))
    keep = s > rtol * s[0]
    basis: F64 = vt[keep].T
    return basis


def _expit(z: F64) -> F64:
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def _conditional_pits(
    dist: Distribution,
    params: tuple[Any, ...],
    x: F64,
    basis: list[F64],
    batch: tuple[int, ...],
    event: tuple[int, ...],
    dtype: Any,
    n_coarse: int = 30,
    de_step: float = 1.0 / 16.0,
) -> tuple[list[list[F64]], list[str]]:
    """Probability integral transforms of samples along each basis direction.

    For a sample ``x`` and a unit direction ``v`` of the affine hull of the samples, the
    full conditional of the coordinate along ``v`` given the other hull coordinates
    has density ∝ ``p(x + t v)`` in ``t`` (an orthonormal change of coordinates has a
    constant Jacobian), which ``log_prob`` gives on a line. Its CDF at ``t = 0`` is
    ``U(0, 1)`` when ``x ~ p``, whatever the joint distribution. Full conditionals
    determine the joint (Brook's lemma, for a positive density on a connected
    support), so testing all of them against uniformity tests the sampler against the
    density's shape; normalisation is checked separately.

    Quadrature, per sample and side of ``t = 0``: a coarse scan on a sinh-spaced grid
    (scaled by the coordinate's conditional standard deviation under a Gaussian fit,
    reaching ±1e4 of those) finds where the density first vanishes (``log_prob`` =
    ``-inf``); the support's end is then located by bisection. A bounded side is
    integrated by tanh-sinh quadrature, which is exact to float precision even for
    integrable singularities at the support's end (a Dirichlet with ``alpha < 1`` at a
    sample 1e-10 from the boundary); an unbounded side by exp-sinh quadrature on the
    Gaussian scale. The support is assumed convex along lines (true of the simplex,
    the positive definite cone and ℝᵈ).

    ``x`` is ``[m, B, D]`` and ``basis[b]`` the hull basis of batch element ``b``;
    returns ``pits[b][j]`` (``[m]``) and NaN messages.
    """
    m, nb, d = x.shape
    msgs: list[str] = []

    def line_lp(t: F64, v: F64) -> F64:
        """``log_prob(x + t v)`` for ``t`` of shape ``[T, m, B]`` (NaN → -inf, reported)."""
        out = np.empty(t.shape)
        chunk = max(1, 1_000_000 // max(1, m * nb * d))
        for s0 in range(0, t.shape[0], chunk):
            tt = t[s0 : s0 + chunk]
            pts = x[None] + tt[..., None] * v[None, None]  # [T, m, B, D]
            vals = pts.astype(np.float32).reshape(-1, *batch, *event)
            lp = _lp(dist, mx.array(vals).astype(dtype), params).reshape(tt.shape)
            if np.isnan(lp).any() and not msgs:
                i = np.argwhere(np.isnan(lp))[0]
                bad = pts[tuple(i)].reshape(event)
                msgs.append(
                    f"log_prob is NaN at {bad.tolist()!r} (batch element {i[2]}); it must be "
                    "-inf outside the support"
                )
            out[s0 : s0 + chunk] = np.where(np.isnan(lp), -np.inf, lp)
        return out

    uc = np.linspace(-1.0, 1.0, 2 * n_coarse + 1) * math.asinh(1e4 / 0.02)
    gc = 0.02 * np.sinh(uc)  # gc[n_coarse] == 0
    ud = np.arange(-3.2, 3.2 + 1e-9, de_step)
    zd = 0.5 * math.pi * np.sinh(ud)
    dzd = 0.5 * math.pi * np.cosh(ud) * de_step
    pits: list[list[F64]] = [[] for _ in range(nb)]
    dmax = max(bs.shape[1] for bs in basis)
    for j in range(dmax):
        v = np.zeros((nb, d))
        scale = np.ones(nb)
        for bi in range(nb):
            if j < basis[bi].shape[1]:
                v[bi] = basis[bi][:, j]
                yc = x[:, bi] @ basis[bi]
                prec = np.linalg.pinv(np.atleast_2d(np.cov(yc, rowvar=False)))
                scale[bi] = 1.0 / math.sqrt(max(prec[j, j], 1e-300))
        tc = gc[:, None, None] * scale[None, None, :] * np.ones((1, m, 1))  # [G, m, B]
        lpc = line_lp(tc, v)
        mass = []
        for side in (-1, 1):
            # grid points on this side, nearest to 0 first
            idx = (
                np.arange(n_coarse - 1, -1, -1)
                if side < 0
                else np.arange(n_coarse + 1, 2 * n_coarse + 1)
            )
            dead = ~np.isfinite(lpc[idx])  # [n, m, B]
            bounded: npt.NDArray[np.bool_] = np.asarray(dead.any(axis=0))
            first = np.argmax(dead, axis=0)  # first vanishing point away from 0
            out_t = np.take_along_axis(tc[idx], first[None], axis=0)[0]
            before = np.take_along_axis(tc[idx], np.maximum(first - 1, 0)[None], axis=0)[0]
            prev = np.where(first > 0, before, 0.0)
            lo, hi = prev, out_t  # density > 0 at lo, = 0 at hi
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                alive = np.isfinite(line_lp(mid[None], v)[0])
                lo, hi = np.where(alive, mid, lo), np.where(alive, hi, mid)
            end = np.abs(lo)  # distance from 0 to the support's end on this side
            # tanh-sinh on [0, end] (bounded) or exp-sinh on [0, ∞) with the Gaussian scale
            e2 = np.where(bounded, end, 1.0)[None]
            dist_b = e2 * _expit(-2.0 * zd)[:, None, None]  # distance from 0, [K, m, B]
            w_b = e2 * 2.0 * _expit(2.0 * zd)[:, None, None] * _expit(-2.0 * zd)[:, None, None]
            w_b = w_b * dzd[:, None, None]
            ez = np.exp(zd)[:, None, None]
            dist_u = scale[None, None, :] * ez
            w_u = scale[None, None, :] * ez * dzd[:, None, None]
            dist_t = np.where(bounded[None], dist_b, dist_u)
            wts = np.where(bounded[None], w_b, w_u)
            lp = line_lp(side * dist_t, v)
            mass.append((lp, wts))
        top = np.maximum(mass[0][0].max(axis=0), mass[1][0].max(axis=0))
        top = np.where(np.isfinite(top), top, 0.0)
        left = np.sum(np.exp(mass[0][0] - top) * mass[0][1], axis=0)
        right = np.sum(np.exp(mass[1][0] - top) * mass[1][1], axis=0)
        tot = left + right
        pit = left / np.where(tot > 0, tot, 1.0)
        for bi in range(nb):
            if j < basis[bi].shape[1]:
                pits[bi].append(pit[:, bi])
    return pits, msgs


def _mv_normalization(
    dist: Distribution,
    params: tuple[Any, ...],
    x: F64,
    batch: tuple[int, ...],
    event: tuple[int, ...],
    dtype: Any,
    key: mx.array,
) -> list[tuple[float, float]]:
    """Importance-sampling estimates ``(∫p, standard error)`` per batch element.

    Proposal: a multivariate t with 4 degrees of freedom fitted to the samples (mean,
    1.5 × covariance), whose polynomial tails dominate the light tails of the usual
    multivariate densities, so the weights ``p/q`` have finite variance and the
    standard error is trustworthy. Used only where the samples span the whole event
    space (a density on a lower-dimensional affine subspace, such as the simplex or
    the symmetric matrices, is defined w.r.t. a parameterisation-dependent measure).
    """
    m, nb, d = x.shape
    rng = np.random.default_rng(int(_np(mx.random.randint(0, 2**31 - 1, (), key=key))))
    nu = 4.0
    out = []
    z_all = np.empty((m, nb, d))
    logq = np.empty((m, nb))
    for bi in range(nb):
        mu = x[:, bi].mean(axis=0)
        cov = 1.5 * np.atleast_2d(np.cov(x[:, bi], rowvar=False))
        L = np.linalg.cholesky(cov + 1e-12 * np.eye(d) * np.trace(cov))
        eps = rng.standard_normal((m, d))
        chi = rng.chisquare(nu, size=(m, 1))
        z = mu + (eps @ L.T) * np.sqrt(nu / chi)
        z_all[:, bi] = z
        r = np.linalg.solve(L, (z - mu).T).T
        maha = np.sum(r * r, axis=1)
        logq[:, bi] = (
            math.lgamma((nu + d) / 2)
            - math.lgamma(nu / 2)
            - 0.5 * d * math.log(nu * math.pi)
            - np.sum(np.log(np.diag(L)))
            - 0.5 * (nu + d) * np.log1p(maha / nu)
        )
    vals = z_all.astype(np.float32).reshape(m, *batch, *event)
    lp = _lp(dist, mx.array(vals).astype(dtype), params).reshape(m, nb)
    lw = np.where(np.isnan(lp), -np.inf, lp) - logq
    for bi in range(nb):
        w = np.exp(lw[:, bi])
        out.append((float(w.mean()), float(w.std(ddof=1) / math.sqrt(m))))
    return out


# --------------------------------------------------------------------------- discrete
def _discrete_cells(
    dist: Distribution,
    params: tuple[Any, ...],
    values: npt.NDArray[Any],
    batch: tuple[int, ...],
    nb: int,
    bi: int,
    dtype: Any,
) -> F64:
    """``log_prob`` of candidate values ``[m, *event]`` for batch element ``bi``."""
    m = values.shape[0]
    full = np.broadcast_to(values[:, None], (m, nb, *values.shape[1:]))
    lp = _lp(dist, _fill_batch(np.ascontiguousarray(full), batch, dtype), params)
    return lp.reshape(m, nb)[:, bi]


def _rows(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return x.reshape(x.shape[0], -1)


# --------------------------------------------------------------------------- sampler vs density
def check_sampler_density(
    dist: Distribution,
    params: tuple[Any, ...],
    *,
    n: int = 20000,
    key: Any = None,
    alpha: float = 1e-4,
    n_conditional: int = 4000,
) -> tuple[CheckResult, CheckResult]:
    """Goodness of fit of the sampler to ``exp(log_prob)``; returns (fit, normalisation).

    With ``S`` ``n`` samples drawn with the fixed ``key``, per batch element:

    * **continuous scalar** (``event_ndim == 0``): a one-sample Kolmogorov–Smirnov test
      of ``S`` against the CDF obtained by integrating ``exp(log_prob)`` numerically on
      the grid of sorted samples extended to ±1e30 (see ``_grid_cdf``; no scipy). The
      integral over the whole line is also the normalisation check (``|∫p − 1| ≤ 2e-3``:
      the quadrature error is a small fraction of the mass outside the samples, ~1/n).
      An unnormalised density shows up in both: the CDF then ends at ∫p ≠ 1.
    * **discrete**: Pearson's chi-square test of the counts of ``S`` against
      ``n · exp(log_prob)``. Enumerable distributions use ``support(*params)`` as the
      cells; otherwise the cells are the values seen in an independent pilot sample
      (so that the partition does not depend on the data tested) plus one cell for
      everything else, with probability ``1 − Σ p(cells)`` — a pmf that sums to less
      than one overflows that cell, one that sums to more than one over the pilot's
      values fails the normalisation check at once. Cells expecting fewer than 5 are
      pooled.
    * **multivariate continuous**: the marginal densities are not available from a
      joint ``log_prob``, but every full conditional is, up to a constant, along a
      line; the probability integral transform of ``n_conditional`` samples under the
      full conditional along each direction of the samples' affine hull is tested
      for uniformity by KS (see ``_conditional_pits``). Normalisation, where the
      samples span the whole event space, is an importance-sampling estimate of
      ``∫p`` within 5 standard errors (plus 1 %) of 1 (see ``_mv_normalization``).

    p-values are Bonferroni-corrected over batch elements and directions: the check
    fails when any p-value is below ``alpha / (number of tests)``.
    """
    key = _key(key)
    k_main, k_pilot, k_is = mx.random.split(key, 3)
    fit = _Collector("sampler_density")
    norm = _Collector("normalized")
    s = dist.sample(k_main, *params, shape=(n,))
    dtype = s.dtype
    bshape = tuple(s.shape[1:])
    batch = bshape[: len(bshape) - dist.event_ndim]
    event = bshape[len(bshape) - dist.event_ndim :]
    nb = int(np.prod(batch)) if batch else 1
    kind = _kinds(dist)
    sn = _flat_batch(_np(s), 1, batch)  # [n, B, *event]

    if kind == "discrete":
        _discrete_fit(dist, params, sn, batch, nb, dtype, k_pilot, alpha, fit, norm)
    elif kind == "continuous":
        xs = np.sort(sn.astype(np.float64), axis=0)
        point = xs[0] == xs[-1]
        if point.any():
            fit.fail(
                f"all {n} samples of batch element {int(np.argmax(point))} are equal to "
                f"{xs[0][point][0]!r}: a point mass is not a continuous distribution "
                "(set is_discrete)"
            )
            return fit.result(), norm.result()
        cdf, mass, msgs = _grid_cdf(dist, params, xs, batch, dtype)
        for m_ in msgs:
            fit.fail(m_)
        level = _bonferroni(alpha, nb)
        worst = 1.0
        for bi in range(nb):
            d = _ks_1samp(xs[:, bi], cdf[:, bi])
            p = ks_pvalue(d, n)
            worst = min(worst, p)
            if p < level:
                fit.fail(
                    f"KS test of samples against the integrated density: D={d:.4g}, "
                    f"p={p:.3g} < {level:.2g} (batch element {bi}; median sample "
                    f"{np.median(xs[:, bi]):.5g}, density CDF there "
                    f"{np.interp(np.median(xs[:, bi]), xs[:, bi], cdf[:, bi]):.4f})"
                )
            if abs(mass[bi] - 1.0) > 2e-3:
                norm.fail(f"the density integrates to {mass[bi]:.6g}, not 1 (batch element {bi})")
        fit.note(f"KS over {nb} batch element(s), min p={worst:.3g}")
        norm.note(f"∫p ∈ [{mass.min():.6f}, {mass.max():.6f}]")
    else:
        _multivariate_fit(
            dist, params, sn, batch, event, dtype, k_is, alpha, n_conditional, fit, norm
        )
    return fit.result(), norm.result()


def _discrete_fit(
    dist: Distribution,
    params: tuple[Any, ...],
    sn: npt.NDArray[Any],
    batch: tuple[int, ...],
    nb: int,
    dtype: Any,
    k_pilot: mx.array,
    alpha: float,
    fit: _Collector,
    norm: _Collector,
) -> None:
    n = sn.shape[0]
    level = _bonferroni(alpha, nb)
    worst = 1.0
    support: npt.NDArray[Any] | None = None
    if dist.is_enumerable:
        try:
            support = _flat_batch(_support(dist, params, batch, tuple(sn.shape[2:])), 1, batch)
        except ValueError as e:
            fit.fail(str(e))
            return
    else:
        pilot = _flat_batch(_np(dist.sample(k_pilot, *params, shape=(n,))), 1, batch)
    sums = []
    for bi in range(nb):
        x = sn[:, bi]
        if support is not None:
            cells = np.unique(_rows(support[:, bi]), axis=0).reshape(-1, *sn.shape[2:])
        else:
            cells = np.unique(_rows(pilot[:, bi]), axis=0).reshape(-1, *sn.shape[2:])
        lp = _discrete_cells(dist, params, cells.astype(sn.dtype), batch, nb, bi, dtype)
        if np.isnan(lp).any():
            fit.fail(f"log_prob is NaN at {cells[np.isnan(lp)][0].tolist()!r} (batch {bi})")
            continue
        pc = np.exp(lp)
        total = float(pc.sum())
        sums.append(total)
        rows_c = _rows(cells)
        rows_x = _rows(x)
        _, inv = np.unique(np.concatenate([rows_c, rows_x]), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        cell_id = inv[: rows_c.shape[0]]
        sample_id = inv[rows_c.shape[0] :]
        lookup = -np.ones(int(inv.max()) + 1, dtype=np.int64)
        lookup[cell_id] = np.arange(rows_c.shape[0])
        idx = lookup[sample_id]
        outside = idx < 0
        counts = np.bincount(idx[~outside], minlength=rows_c.shape[0]).astype(np.float64)
        if support is not None:
            if outside.any():
                fit.fail(
                    f"{int(outside.sum())} samples lie outside support(*params), e.g. "
                    f"{x[outside][0].tolist()!r} (batch element {bi})"
                )
            insup = pc > 0
            if np.any(counts[~insup] > 0):
                fit.fail(f"samples have log_prob -inf (batch element {bi})")
            if abs(math.log(total)) > 1e-3 if total > 0 else True:
                norm.fail(
                    f"exp(log_prob) sums to {total:.6g} over the support, not 1 "
                    f"(batch element {bi})"
                )
            expected = n * pc / max(total, 1e-300)
            observed = counts
        else:
            if total > 1.0 + 1e-3:
                norm.fail(
                    f"exp(log_prob) sums to {total:.6g} > 1 over {rows_c.shape[0]} distinct "
                    f"values (batch element {bi})"
                )
            rest = max(0.0, 1.0 - total)
            expected = np.append(n * pc, n * rest)
            observed = np.append(counts, float(outside.sum()))
        stat, df, p = _chi2_gof(expected, observed)
        worst = min(worst, p)
        if p < level:
            fit.fail(
                f"chi-square test of sample counts against exp(log_prob): stat={stat:.4g}, "
                f"df={df}, p={p:.3g} < {level:.2g} (batch element {bi})"
            )
    fit.note(f"chi-square over {nb} batch element(s), min p={worst:.3g}")
    if sums:
        what = "support" if support is not None else "pilot values"
        norm.note(f"Σp over {what} ∈ [{min(sums):.6f}, {max(sums):.6f}]")


def _multivariate_fit(
    dist: Distribution,
    params: tuple[Any, ...],
    sn: npt.NDArray[Any],
    batch: tuple[int, ...],
    event: tuple[int, ...],
    dtype: Any,
    k_is: mx.array,
    alpha: float,
    n_conditional: int,
    fit: _Collector,
    norm: _Collector,
) -> None:
    n, nb = sn.shape[:2]
    x = sn.reshape(n, nb, -1).astype(np.float64)
    d = x.shape[2]
    basis = [_hull_basis(x[:, bi]) for bi in range(nb)]
    m = min(n, n_conditional)
    pits, msgs = _conditional_pits(dist, params, x[:m], basis, batch, event, dtype)
    for m_ in msgs:
        fit.fail(m_)
    ntests = sum(len(p) for p in pits)
    level = _bonferroni(alpha, ntests)
    worst = 1.0
    for bi in range(nb):
        for j, pit in enumerate(pits[bi]):
            u = np.sort(pit)
            dks = _ks_1samp(u, u)
            p = ks_pvalue(dks, m)
            worst = min(worst, p)
            if p < level:
                fit.fail(
                    f"full conditional along hull direction {j} "
                    f"{np.round(basis[bi][:, j], 3).tolist()}: KS of the probability "
                    f"integral transforms against U(0,1): D={dks:.4g}, p={p:.3g} < "
                    f"{level:.2g} (batch element {bi})"
                )
    dims = sorted({bs.shape[1] for bs in basis})
    fit.note(f"{ntests} conditional PIT tests (hull dims {dims} of {d}), min p={worst:.3g}")
    if all(bs.shape[1] == d for bs in basis):
        est = _mv_normalization(dist, params, x, batch, event, dtype, k_is)
        for bi, (mean, se) in enumerate(est):
            if not (abs(mean - 1.0) <= 5.0 * se + 0.01) or not math.isfinite(mean):
                norm.fail(
                    f"importance-sampling estimate of ∫p is {mean:.5g} ± {se:.2g}, not 1 "
                    f"(batch element {bi})"
                )
        norm.note("∫p ≈ " + ", ".join(f"{mu:.4f}±{se:.4f}" for mu, se in est))
    else:
        norm.note(
            "samples lie on a lower-dimensional affine subspace: normalisation is not "
            "checked (the reference measure there is a parameterisation choice)"
        )


# --------------------------------------------------------------------------- batching
def _param_event_candidates(
    dist: Distribution, params: tuple[Any, ...], batch: tuple[int, ...]
) -> list[tuple[int | None, ...]]:
    """Candidate event ranks of the parameters (``None``: not sliceable), most batched first.

    ``dist.param_event_ndims`` is used when the distribution declares it; otherwise every
    rank whose leading shape broadcasts against ``batch`` is a candidate.
    """
    declared = getattr(dist, "param_event_ndims", None)
    options: list[list[int | None]] = []
    for i, p in enumerate(params):
        if not isinstance(p, mx.array) or p.ndim == 0:
            options.append([None])
            continue
        cands: list[int | None] = []
        if declared is not None and i < len(declared):
            cands = [int(declared[i])]
        else:
            for e in range(0, p.ndim + 1):
                lead = tuple(p.shape[: p.ndim - e])
                if len(lead) <= len(batch) and all(
                    a in (1, b) for a, b in zip(lead, batch[len(batch) - len(lead) :])
                ):
                    cands.append(e)
        options.append(cands or [None])
    combos = list(product(*options))
    combos.sort(key=lambda c: sum(-1 if e is None else e for e in c))
    return combos[:16]


def _slice(p: Any, e: int | None, batch: tuple[int, ...], idx: tuple[int, ...]) -> Any:
    if e is None:
        return p
    lead = tuple(p.shape[: p.ndim - e])
    off = len(batch) - len(lead)
    pidx = tuple(0 if lead[k] == 1 else idx[off + k] for k in range(len(lead)))
    return p[pidx] if pidx else p


def _sliced_params(
    dist: Distribution,
    params: tuple[Any, ...],
    batch: tuple[int, ...],
    event: tuple[int, ...],
    idx: tuple[int, ...],
    key: mx.array,
) -> tuple[Any, ...] | None:
    """Parameters of batch element ``idx`` alone, or None when slicing is ambiguous."""
    for combo in _param_event_candidates(dist, params, batch):
        try:
            sliced = tuple(_slice(p, e, batch, idx) for p, e in zip(params, combo))
            x = dist.sample(key, *sliced)
            if tuple(x.shape) != event:
                continue
            if tuple(dist.log_prob(x, *sliced).shape) != ():
                continue
            return sliced
        except Exception:
            continue
    return None


def _two_sample_p(dist: Distribution, a: npt.NDArray[Any], b: npt.NDArray[Any]) -> list[float]:
    """p-values that samples ``a`` and ``b`` (``[n, *event]``) share a distribution.

    Discrete values: one chi-square homogeneity test on whole values. Continuous: a
    two-sample KS test per coordinate of the event, plus one along the sum of the
    coordinates (caller applies Bonferroni).
    """
    if dist.is_discrete:
        return [_chi2_homogeneity(a, b)]
    ra = _rows(a).astype(np.float64)
    rb = _rows(b).astype(np.float64)
    ps = [ks_2samp_pvalue(ra[:, j], rb[:, j]) for j in range(ra.shape[1])]
    if ra.shape[1] > 1:
        ps.append(ks_2samp_pvalue(ra.sum(axis=1), rb.sum(axis=1)))
    return ps


def check_batched_sampling(
    dist: Distribution,
    params: tuple[Any, ...],
    *,
    n: int = 20000,
    key: Any = None,
    alpha: float = 1e-4,
    exact_keys: Sequence[mx.array] = (),
) -> CheckResult:
    """Batched sampling agrees with unbatched sampling.

    * exact, for each key in ``exact_keys``: ``mx.vmap(lambda k: sample(k, *params))``
      over ``split(key, 4)`` equals ``sample(k_i, *params)`` per key, element by element
      (vmap must not change what a key draws); ``mx.compile`` of the sampler draws
      what eager sampling draws for the same key (on 99 % of elements: a compiled graph
      may round differently, which can flip a rare rejection-sampler decision);
    * in distribution, with the fixed ``key``: ``sample(key, *params, shape=(n,))``
      versus the vmap of ``sample`` over ``max(1000, n/10)`` keys; and, for batched
      parameters, batch element ``i`` of the batched draw versus draws with the
      parameters sliced at ``i`` (for the first and last batch element), plus
      ``log_prob`` with batched
      parameters at ``i`` equal to ``log_prob`` with sliced parameters.
    """
    c = _Collector("batched_sampling")
    key = _key(key)
    for ek in exact_keys:
        keys = mx.random.split(ek, 4)
        vm = mx.vmap(lambda k: dist.sample(k, *params))(keys)
        for i in range(4):
            one = dist.sample(keys[i], *params)
            if tuple(vm[i].shape) != tuple(one.shape):
                c.fail(f"vmap over keys: lane {i} has shape {vm[i].shape} vs {one.shape}")
                break
            if not np.allclose(_f64(vm[i]), _f64(one), rtol=1e-5, atol=1e-6, equal_nan=True):
                c.fail(
                    f"vmap over keys: lane {i} drew {_np(vm[i]).tolist()!r} but "
                    f"sample(keys[{i}]) drew {_np(one).tolist()!r}"
                )
                break
        eager = dist.sample(ek, *params, shape=(64,))
        compiled = mx.compile(lambda k: dist.sample(k, *params, shape=(64,)))(ek)
        if tuple(compiled.shape) != tuple(eager.shape) or compiled.dtype != eager.dtype:
            c.fail(f"mx.compile(sample) gives {compiled.shape}/{compiled.dtype}")
        else:
            same = np.isclose(_f64(compiled), _f64(eager), rtol=1e-4, atol=1e-5)
            if same.mean() < 0.99:
                c.fail(f"mx.compile(sample) agrees with eager sampling on {same.mean():.1%}")
    k1, k2, k3 = mx.random.split(key, 3)
    s = dist.sample(k1, *params, shape=(n,))
    batch, event = _split(dist, params, k1)
    nb = int(np.prod(batch)) if batch else 1
    # vmap graphs of rejection samplers are slow to build and run: n/10 draws suffice to
    # see a distributional difference (the exact per-key check above is the sharp one)
    nv = max(1000, n // 10)
    v = mx.vmap(lambda k: dist.sample(k, *params))(mx.random.split(k2, nv))
    if tuple(v.shape) != (nv, *s.shape[1:]):
        c.fail(f"vmap of sample over {nv} keys has shape {v.shape}, sample(shape=(n,)) {s.shape}")
        return c.result()
    sa, va = _flat_batch(_np(s), 1, batch), _flat_batch(_np(v), 1, batch)
    tests: list[tuple[str, float]] = []
    for bi in range(nb):
        for p in _two_sample_p(dist, sa[:, bi], va[:, bi]):
            tests.append((f"sample(shape=(n,)) vs vmap over keys, batch element {bi}", p))
    if batch:
        for flat in sorted({0, nb - 1}):
            idx = tuple(int(i) for i in np.unravel_index(flat, batch))
            sliced = _sliced_params(dist, params, batch, event, idx, k3)
            if sliced is None:
                c.note(f"parameters of batch element {idx} could not be sliced unambiguously")
                continue
            one = dist.sample(k3, *sliced, shape=(n,))
            for p in _two_sample_p(dist, sa[:, flat], _np(one)):
                tests.append((f"batched params at {idx} vs sliced params", p))
            xb = s[(slice(0, 50), *idx)]
            lp_b = _lp(dist, s[:50], params)[(slice(None), *idx)]  # type: ignore[arg-type]
            lp_1 = _lp(dist, xb, sliced)
            if not np.allclose(lp_b, lp_1, rtol=1e-5, atol=1e-5, equal_nan=True):
                c.fail(
                    f"log_prob with batched parameters at {idx} is {lp_b[:3]} but with the "
                    f"sliced parameters {lp_1[:3]}"
                )
    level = _bonferroni(alpha, len(tests))
    for what, p in tests:
        if p < level:
            c.fail(f"{what}: two-sample test p={p:.3g} < {level:.2g}")
    if tests:
        c.note(f"{len(tests)} two-sample tests, min p={min(p for _, p in tests):.3g}")
    return c.result()


# --------------------------------------------------------------------------- gradients
def _float_param_indices(params: tuple[Any, ...]) -> list[int]:
    out = []
    for i, p in enumerate(params):
        if isinstance(p, bool):
            continue
        if isinstance(p, float) or (isinstance(p, mx.array) and _is_float_dtype(p.dtype)):
            out.append(i)
    return out


def _as_array_param(p: Any) -> mx.array:
    return p if isinstance(p, mx.array) else mx.array(p, dtype=mx.float32)


def _central_fd(
    pm: Callable[[float], tuple[float, float]], h0: float, g: float, f0: float
) -> tuple[bool | None, float, float, float]:
    """Compare autodiff ``g`` with central differences of ``f`` with an adaptive step.

    ``pm(h)`` returns ``(f(x + h), f(x − h))``. Steps ``h = h0, h0/4, h0/16, …`` are
    tried, largest first, until the differences at ``h`` and ``h/2`` are finite and agree
    to 10 % (a step that leaves the support, crosses a kink or is dominated by
    curvature is rejected). The estimate is Richardson's ``(4 D(h/2) − D(h)) / 3``;
    the tolerance is the disagreement ``|D(h) − D(h/2)|`` (truncation plus rounding at
    these steps) plus 32 float32 ulps of the values divided by the step, plus 1e-3
    relative. Returns ``(ok or None when no step is usable, estimate, tolerance, h)``.
    """
    if not math.isfinite(f0):
        return None, math.nan, math.nan, math.nan
    h = h0
    for _ in range(12):
        fp1, fm1 = pm(h)
        fp2, fm2 = pm(h / 2)
        vals = [fp1, fm1, fp2, fm2]
        if all(math.isfinite(v) for v in vals):
            d1 = (fp1 - fm1) / (2 * h)
            d2 = (fp2 - fm2) / h
            spread = abs(d1 - d2)
            if spread <= 0.1 * max(abs(d2), 1e-2):
                fd = (4 * d2 - d1) / 3
                mag = max(abs(f0), *(abs(v) for v in vals)) + 1.0
                tol = spread + 32 * 6e-8 * mag / (h / 2) + 1e-3 * max(abs(g), abs(fd), 1e-2)
                return abs(g - fd) <= tol, fd, tol, h
        h /= 4
    return None, math.nan, math.nan, math.nan


def check_log_prob_gradients(
    dist: Distribution,
    params: tuple[Any, ...],
    key: Any = None,
    n_points: int = 4,
) -> CheckResult:
    """``mx.grad`` of ``log_prob`` against central finite differences at sampled points.

    The gradient w.r.t. the value (continuous distributions; along the directions of the
    samples' affine hull, so a value on the simplex or a symmetric matrix stays in the
    support) at ``n_points`` samples per batch element, and w.r.t. every element of
    every floating parameter (Python floats count) of ``Σ log_prob`` over those samples,
    must be finite and agree with central differences in float32 (adaptive step and
    tolerance: see ``_central_fd``). A point where no step is usable (the value sits
    within float32 rounding of a support boundary, say) is skipped and up to 16
    samples are tried per direction. Where ``has_reparam``, ``mx.grad`` of the mean of
    ``reparam_sample`` w.r.t. the floating parameters must be finite.
    """
    c = _Collector("gradients")
    key = _key(key)
    m_pts = 4 * n_points
    x = dist.sample(key, *params, shape=(m_pts,))
    bshape = tuple(x.shape[1:])
    batch = bshape[: len(bshape) - dist.event_ndim]
    event = bshape[len(bshape) - dist.event_ndim :]
    nb = int(np.prod(batch)) if batch else 1
    fidx = _float_param_indices(params)
    base = list(params)
    for i in fidx:
        base[i] = _as_array_param(params[i])
    checked = skipped = 0

    def lp_total(val: mx.array, *ps: Any) -> mx.array:
        return mx.sum(dist.log_prob(val, *ps))

    # ---- value
    if not dist.is_discrete:
        xv = x.astype(mx.float32)
        try:
            gx = _f64(mx.grad(lambda v: lp_total(v, *base))(xv))
        except Exception as e:  # report, don't crash the kit
            c.fail(f"mx.grad of log_prob w.r.t. the value raised {type(e).__name__}: {e}")
            gx = None
        if gx is not None:
            if not np.isfinite(gx).all():
                c.fail(f"gradient w.r.t. the value is not finite at samples: {gx.ravel()[:6]}")
            else:
                xn = _flat_batch(_f64(xv), 1, batch).reshape(m_pts, nb, -1)
                gn = _flat_batch(gx, 1, batch).reshape(m_pts, nb, -1)
                f0 = _flat_batch(_lp(dist, xv, tuple(base)), 1, batch).reshape(m_pts, nb)
                for bi in range(nb):
                    hull = _hull_basis(xn[:, bi]) if xn.shape[2] > 1 else np.ones((1, 1))
                    for j in range(hull.shape[1]):
                        vdir = hull[:, j]
                        used = 0
                        for pi in range(m_pts):
                            if used >= n_points:
                                break

                            def pm(
                                h: float, pi: int = pi, bi: int = bi, vdir: F64 = vdir
                            ) -> tuple[float, float]:
                                xp = np.repeat(xn[pi : pi + 1], 2, axis=0)
                                xp[0, bi] = xn[pi, bi] + h * vdir
                                xp[1, bi] = xn[pi, bi] - h * vdir
                                vals = mx.array(xp.astype(np.float32).reshape(2, *batch, *event))
                                lpv = _flat_batch(_lp(dist, vals, tuple(base)), 1, batch)
                                lpv = lpv.reshape(2, nb)
                                return float(lpv[0, bi]), float(lpv[1, bi])

                            h0 = 1e-2 * max(float(np.max(np.abs(xn[pi, bi]))), 1.0)
                            g = float(gn[pi, bi] @ vdir)
                            ok, fd, tol, _ = _central_fd(pm, h0, g, float(f0[pi, bi]))
                            if ok is None:
                                skipped += 1
                                continue
                            checked += 1
                            used += 1
                            if not ok:
                                c.fail(
                                    f"d log_prob / d value (direction {j}) at "
                                    f"{xn[pi, bi].tolist()} (batch {bi}): autodiff {g:.6g}, "
                                    f"finite differences {fd:.6g} (tol {tol:.2g})"
                                )
                        if used == 0:
                            c.note(
                                f"value direction {j}, batch {bi}: finite differences "
                                "unusable at every sample"
                            )
    # ---- parameters
    xs = x[:n_points]
    for i in fidx:
        p0 = base[i]

        def f(pv: mx.array, i: int = i) -> mx.array:
            ps = list(base)
            ps[i] = pv
            return lp_total(xs, *ps)

        try:
            gp = _f64(mx.grad(f)(p0))
        except Exception as e:
            c.fail(f"mx.grad of log_prob w.r.t. parameter {i} raised {type(e).__name__}: {e}")
            continue
        if not np.isfinite(gp).all():
            c.fail(f"gradient w.r.t. parameter {i} is not finite: {gp.ravel()[:6]}")
            continue
        pn = _f64(p0)
        fp0 = float(_f64(f(p0)))
        ok_any = False
        for flat in range(pn.size):
            pj = tuple(int(a) for a in np.unravel_index(flat, pn.shape))

            def pmp(
                h: float,
                pj: tuple[int, ...] = pj,
                pn: F64 = pn,
                f: Callable[[mx.array], mx.array] = f,
            ) -> tuple[float, float]:
                out = []
                for sgn in (1.0, -1.0):
                    q = pn.copy()
                    with np.errstate(invalid="ignore"):  # an infinite parameter ± h
                        q[pj] = pn[pj] + sgn * h
                    out.append(float(_f64(f(mx.array(q.astype(np.float32))))))
                return out[0], out[1]

            h0 = 1e-2 * max(abs(float(pn[pj])), 1.0)
            ok, fd, tol, _ = _central_fd(pmp, h0, float(gp[pj]), fp0)
            if ok is None:
                skipped += 1
                continue
            checked += 1
            ok_any = True
            if not ok:
                c.fail(
                    f"d log_prob / d param[{i}]{list(pj) if pj else ''} = {float(gp[pj]):.6g} "
                    f"by autodiff, {fd:.6g} by finite differences (tol {tol:.2g})"
                )
        if not ok_any and pn.size:
            c.note(f"parameter {i}: finite differences unusable at every element")
    # ---- reparameterised sampling
    if dist.has_reparam and fidx:

        def mean_sample(*pv: mx.array) -> mx.array:
            ps = list(base)
            for i, v in zip(fidx, pv):
                ps[i] = v
            return mx.mean(dist.reparam_sample(key, *ps, shape=(64,)).astype(mx.float32))

        try:
            grads = mx.grad(mean_sample, argnums=list(range(len(fidx))))(*[base[i] for i in fidx])
            if not isinstance(grads, (tuple, list)):
                grads = (grads,)
            for i, gr in zip(fidx, grads):
                if not np.isfinite(_f64(gr)).all():
                    c.fail(
                        f"gradient of reparam_sample w.r.t. parameter {i} is not finite: "
                        f"{_f64(gr).ravel()[:6]}"
                    )
        except Exception as e:
            c.fail(f"mx.grad through reparam_sample raised {type(e).__name__}: {e}")
    c.note(f"{checked} finite-difference comparisons ({skipped} skipped)")
    return c.result()


def _support(
    dist: Distribution, params: tuple[Any, ...], batch: tuple[int, ...], event: tuple[int, ...]
) -> npt.NDArray[Any]:
    """``support(*params)`` as ``[k, *batch, *event]``.

    Accepted shapes: ``[k, *event]`` (one support for every batch element) or
    ``[k, *batch, *event]`` (a support list per batch element, values outside an
    element's support allowed: their ``log_prob`` is ``-inf``).
    """
    sup = _np(mx.array(dist.support(*params)))
    k = sup.shape[0] if sup.ndim else 0
    if sup.ndim >= 1 and tuple(sup.shape[1:]) == tuple(event):
        sup = sup.reshape(k, *([1] * len(batch)), *event)
    try:
        return np.ascontiguousarray(np.broadcast_to(sup, (k, *batch, *event)))
    except ValueError:
        raise ValueError(
            f"support(*params) has shape {sup.shape}; expected [k, *event] or "
            f"[k, *batch, *event] with batch {batch} and event {event}"
        ) from None


def check_normalized(dist: Distribution, params: tuple[Any, ...]) -> CheckResult:
    """For enumerable distributions: ``logsumexp(log_prob(support))`` is 0 per batch element."""
    c = _Collector("support_sums_to_one")
    if not dist.is_enumerable:
        c.note("not enumerable")
        return c.result()
    batch, event = _split(dist, params, mx.random.key(0))
    try:
        supn = _support(dist, params, batch, event)
    except ValueError as e:
        c.fail(str(e))
        return c.result()
    sup = mx.array(supn)
    lp = _lp(dist, sup, params)
    if lp.shape != (sup.shape[0], *batch):
        c.fail(f"log_prob of the support has shape {lp.shape}, expected {(sup.shape[0], *batch)}")
        return c.result()
    if np.isnan(lp).any():
        c.fail("log_prob is NaN on the support")
        return c.result()
    top = lp.max(axis=0)
    lse = top + np.log(np.sum(np.exp(lp - top), axis=0))
    if not np.all(np.abs(lse) <= 1e-3):
        c.fail(f"log Σ exp(log_prob) over the support is {lse}, not 0")
    c.note(f"{sup.shape[0]} support values; log Σp = {np.max(np.abs(lse)):.2g} at worst")
    return c.result()


def _reparam_agrees(
    dist: Distribution, params: tuple[Any, ...], n: int, key: mx.array, alpha: float
) -> CheckResult:
    c = _Collector("reparam_sample")
    k1, k2 = mx.random.split(key)
    r = dist.reparam_sample(k1, *params, shape=(n,))
    s = dist.sample(k2, *params, shape=(n,))
    batch, _ = _split(dist, params, k1)
    ra, sa = _flat_batch(_np(r), 1, batch), _flat_batch(_np(s), 1, batch)
    ps = [p for bi in range(ra.shape[1]) for p in _two_sample_p(dist, ra[:, bi], sa[:, bi])]
    level = _bonferroni(alpha, len(ps))
    if min(ps) < level:
        c.fail(f"reparam_sample and sample differ in distribution: p={min(ps):.3g} < {level:.2g}")
    c.note(f"two-sample min p={min(ps):.3g}")
    return c.result()


# --------------------------------------------------------------------------- driver
DISTRIBUTION_CHECKS: tuple[str, ...] = (
    "shapes",
    "log_prob_finite",
    "sampler_density",
    "normalized",
    "support_sums_to_one",
    "batched_sampling",
    "gradients",
    "reparam_sample",
    "gfi_laws",
)
"""Names of the checks :func:`check_distribution` runs, in order."""


def check_distribution(
    dist: Distribution,
    params: tuple[Any, ...],
    *,
    n: int = 20000,
    key: Any = None,
    alpha: float = 1e-4,
    max_examples: int = 3,
    checks: Sequence[str] | None = None,
    raise_on_failure: bool = True,
) -> DistributionReport:
    """Run the distribution conformance checks on ``dist`` with parameters ``params``.

    Args:
        dist: a :class:`~genmlx.core.Distribution` instance.
        params: one parameter tuple, e.g. one of ``dist.example_params``.
        n: samples per statistical test.
        key: the fixed key (or int seed) of the statistical tests.
        alpha: family-wise level of each statistical check (Bonferroni within it).
        max_examples: hypothesis-drawn keys for the exact checks and the GFI laws.
        checks: a subset of :data:`DISTRIBUTION_CHECKS` (default: all).
        raise_on_failure: raise ``AssertionError`` listing every failure.

    Returns:
        The :class:`DistributionReport`.

    Raises:
        AssertionError: when a check fails (and ``raise_on_failure``), with the whole
            report as its message.
    """
    try:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st
    except ImportError as e:  # an optional extra, so the error says what to install
        raise ImportError(
            'check_distribution draws its cases with hypothesis: pip install "genmlx-core[testing]"'
        ) from e

    from genmlx.core.testing.laws import check_gfi_laws

    wanted = set(DISTRIBUTION_CHECKS if checks is None else checks)
    unknown = wanted - set(DISTRIBUTION_CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {DISTRIBUTION_CHECKS}")
    params = tuple(params)
    key = _key(key)
    report = DistributionReport(dist.name, params)

    def guarded(name: str, fn: Callable[[], CheckResult | tuple[CheckResult, ...]]) -> None:
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as e:
            report.results.append(CheckResult(name, False, f"raised {type(e).__name__}: {e}"))
            return
        report.seconds[name] = time.perf_counter() - t0
        for r in out if isinstance(out, tuple) else (out,):
            if r.name in wanted:
                report.results.append(r)

    seeds: list[int] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(seed=st.integers(min_value=0, max_value=2**31 - 1))
    def collect(seed: int) -> None:
        seeds.append(seed)

    collect()
    exact_keys = [mx.random.key(s) for s in seeds] or [key]

    def over_keys(fn: Callable[[mx.array], CheckResult]) -> CheckResult:
        results = [fn(k) for k in exact_keys]
        bad = [r for r in results if not r.passed]
        return bad[0] if bad else results[0]

    if "shapes" in wanted:
        guarded("shapes", lambda: over_keys(lambda k: check_shapes(dist, params, k)))
    if "log_prob_finite" in wanted:
        guarded(
            "log_prob_finite", lambda: over_keys(lambda k: check_log_prob_finite(dist, params, k))
        )
    if wanted & {"sampler_density", "normalized"}:
        guarded(
            "sampler_density",
            lambda: check_sampler_density(dist, params, n=n, key=key, alpha=alpha),
        )
    if "support_sums_to_one" in wanted and dist.is_enumerable:
        guarded("support_sums_to_one", lambda: check_normalized(dist, params))
    if "batched_sampling" in wanted:
        guarded(
            "batched_sampling",
            lambda: check_batched_sampling(
                dist, params, n=n, key=key, alpha=alpha, exact_keys=exact_keys
            ),
        )
    if "gradients" in wanted:
        guarded("gradients", lambda: over_keys(lambda k: check_log_prob_gradients(dist, params, k)))
    if "reparam_sample" in wanted and dist.has_reparam:
        guarded("reparam_sample", lambda: _reparam_agrees(dist, params, n, key, alpha))
    if "gfi_laws" in wanted:
        batched = bool(getattr(dist, "conformance_batched", True))

        def laws() -> CheckResult:
            check_gfi_laws(dist, params, max_examples=max_examples, batched=batched)
            return CheckResult("gfi_laws", True, f"{max_examples} keys")

        guarded("gfi_laws", laws)
    if raise_on_failure and not report.passed:
        raise AssertionError(str(report))
    return report
