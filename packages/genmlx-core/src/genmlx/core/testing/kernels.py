"""The kernel kit: checks that an MCMC kernel leaves the posterior invariant.

A wrong MCMC kernel runs, mixes, and samples the wrong distribution; this kit finds out
on models whose posterior is known exactly (:mod:`genmlx.core.testing.kernel_models`).

**The kernel protocol.** ``kernel(trace, *, key) -> (new_trace, info)`` on a single
trace and on a batched one (``batch_shape == (n,)``: ``n`` independent chains).
``info`` is the acceptance array itself (shape ``batch_shape``; bool, or a float in
``[0, 1]`` for a fraction) or an object with an ``accepted`` attribute of that kind
(and whatever else the kernel reports: divergences, step size, tree depth). A kernel
with more arguments (a selection, a step size) is set up for each test model by a
*factory* ``factory(model) -> kernel | None`` (``None``: the kernel does not apply to
that model, e.g. a gradient kernel on a discrete model)::

    def conformance_kernel(model):
        if model.discrete:
            return None
        return functools.partial(my_kernel, selection=model.selection, step=model.scales[...])

**The checks** (:data:`KERNEL_CHECKS`; ``α`` is the false-positive rate of each
statistical check for a correct kernel, default ``1e-4``, Bonferroni-corrected over the
tests inside it; a kernel's report makes at most a few dozen such checks, so a correct
kernel fails with probability below ~``3e-3``, and with the fixed seeds a result
reproduces exactly):

* ``stationarity[model]`` — ``n_chains`` chains start at independent exact posterior
  draws and take ``n_steps`` steps; a correct kernel leaves them exactly
  posterior-distributed (``π P^K = π``). Their final states are compared with
  ``n_reference`` fresh exact draws: a two-sample Kolmogorov–Smirnov test per scalar
  coordinate and on one random projection of the standardised latents (continuous
  models), or a chi-square homogeneity test per coordinate and on the joint state
  (discrete models). The final traces must also keep the observations and have
  ``score == assess(choices)``. Runs on every model the factory accepts. The report
  states the test's power (:func:`ks_resolution`): with the defaults it flags a KS
  distance of 0.05, a shift of a coordinate's mean by 0.13 posterior sd, about half
  the time, and twice that almost surely.
* ``sbc[model]`` — simulation-based calibration (Talts et al. 2018) on one small model:
  ``sbc_datasets`` parameter/data pairs ``(θ*, y)`` from the prior; for each,
  ``sbc_draws`` chains start at exact posterior draws given ``y`` and take
  ``n_steps`` steps; the rank of ``θ*`` among the chains' final states is uniform on
  ``{0..sbc_draws}`` for a correct kernel (the draws are independent given ``y``, so
  no thinning argument is needed). Chi-square test of the rank histogram per
  coordinate. This checks the kernel over many data sets, not just one.
* ``batched_vs_single[model]`` — chain ``i`` of a batched call must not depend on the
  other chains (same key, other chains changed ⇒ chain ``i`` unchanged) and must equal
  the single-trace call: exactly, when the kernel gives chain ``i`` the key
  ``mx.random.split(key, n)[i]`` (the convention of ``vsimulate``), else in
  distribution (``n_stat`` single calls from one state against one batched call on
  ``n_stat`` copies of it, two-sample tests per coordinate at level ``α``).
* ``key_determinism[model]`` — the same key gives the same result (single and batched;
  a kernel drawing from MLX's global generator fails) and different keys give
  different results (a kernel ignoring its key fails).
* ``info[model]`` — the result is ``(Trace, info)`` with the trace's model, arguments
  and batch shape; ``accepted`` has the batch shape, is bool (or a fraction in
  ``[0, 1]``), and a chain reported rejected (``False``) kept its state; the
  ``info_fields`` the kernel declares are present with a leading batch axis.

The default settings (:data:`QUICK`) take seconds per kernel; :data:`THOROUGH` runs
larger experiments (more chains and steps) for the ``slow`` test marker.

Example:
    >>> import functools
    >>> from genmlx.core.testing.kernels import check_kernel, QUICK
    >>> def resimulate(trace, *, key, selection):   # independence MH from the prior
    ...     k1, k2 = mx.random.split(key)
    ...     new, w, _ = trace.gen_fn.regenerate(trace, selection, key=k1)
    ...     acc = mx.log(mx.random.uniform(shape=w.shape, key=k2)) < w
    ...     from genmlx.core.batching import where_particles
    ...     return where_particles(acc, new, trace), acc
    >>> def factory(model):
    ...     return functools.partial(resimulate, selection=model.selection)
    >>> report = check_kernel(factory, name="resimulate", models=["conjugate_gaussian"],
    ...                       checks=["stationarity", "info"])
    >>> report.passed
    True
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import mlx.core as mx
import numpy as np
import numpy.typing as npt

from genmlx.core.address import format_address
from genmlx.core.testing.distributions import (
    DEFAULT_SEED,
    CheckResult,
    _chi2_gof,
    _chi2_homogeneity,
    ks_2samp_pvalue,
)
from genmlx.core.testing.kernel_models import KERNEL_TEST_MODELS, Draws, KernelTestModel
from genmlx.core.testing.report import KitReport
from genmlx.core.trace import Trace
from genmlx.core.tree import flatten

__all__ = [
    "KERNEL_CHECKS",
    "QUICK",
    "THOROUGH",
    "Kernel",
    "KernelFactory",
    "KernelKitSettings",
    "accepted_of",
    "check_batched_vs_single",
    "check_info",
    "check_kernel",
    "check_key_determinism",
    "check_sbc",
    "check_stationarity",
    "ks_resolution",
]

Kernel = Callable[..., tuple[Trace, Any]]
"""``kernel(trace, *, key) -> (new_trace, info)``."""

KernelFactory = Callable[[KernelTestModel], "Kernel | None"]
"""``factory(model) -> kernel`` set up for ``model``, or ``None`` if it does not apply."""

KERNEL_CHECKS: tuple[str, ...] = (
    "info",
    "key_determinism",
    "batched_vs_single",
    "stationarity",
    "sbc",
)
"""The checks :func:`check_kernel` runs, in order."""

SBC_MODELS: tuple[str, ...] = ("conjugate_gaussian", "discrete", "constrained")
"""SBC runs on the first of these models the kernel applies to."""


@dataclass(frozen=True)
class KernelKitSettings:
    """Sizes of the kernel kit's experiments.

    Attributes:
        n_chains: chains of the stationarity test.
        n_steps: kernel steps ``K`` of every run.
        n_reference: exact posterior draws the chains are compared with.
        sbc_datasets: simulated data sets of SBC.
        sbc_draws: chains per data set (ranks run over ``0..sbc_draws``).
        n_stat: single-chain calls of the distributional batched-vs-single test.
        alpha: false-positive rate of each statistical check.
        seed: base seed (each check and model derives its own).
    """

    n_chains: int = 2000
    n_steps: int = 10
    n_reference: int = 20000
    sbc_datasets: int = 200
    sbc_draws: int = 9
    n_stat: int = 100
    alpha: float = 1e-4
    seed: int = DEFAULT_SEED


QUICK = KernelKitSettings()
"""The default settings, seconds per kernel (the first-party kernels run them in CI)."""

THOROUGH = KernelKitSettings(
    n_chains=10000, n_steps=40, n_reference=100000, sbc_datasets=1000, sbc_draws=19, n_stat=400
)
"""Larger experiments with more power, a minute or so per kernel, for ``slow`` tests."""


# --------------------------------------------------------------------------- helpers
def _seed(settings: KernelKitSettings, *parts: str) -> int:
    return (settings.seed + zlib.crc32("/".join(parts).encode())) % (2**31)


def _key(settings: KernelKitSettings, *parts: str) -> mx.array:
    return mx.random.key(_seed(settings, *parts))


def accepted_of(info: Any) -> mx.array:
    """The acceptance array of a kernel's ``info`` (the array itself or ``info.accepted``).

    Raises:
        TypeError: ``info`` is neither.
    """
    if isinstance(info, mx.array):
        return info
    acc = getattr(info, "accepted", None)
    if isinstance(acc, mx.array):
        return acc
    raise TypeError(
        "a kernel must return (new_trace, info) with info the acceptance array or an "
        f"object with an .accepted array; got info of type {type(info).__name__}"
    )


def _call(kernel: Kernel, trace: Trace, key: mx.array) -> tuple[Trace, Any]:
    out = kernel(trace, key=key)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Trace)):
        raise TypeError(
            "a kernel must return (new_trace, info); got "
            + (f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__)
        )
    return out[0], out[1]


def _run(kernel: Kernel, trace: Trace, n_steps: int, key: mx.array) -> tuple[Trace, Any]:
    keys = mx.random.split(key, n_steps)
    info: Any = None
    for s in range(n_steps):
        trace, info = _call(kernel, trace, keys[s])
        mx.eval(flatten(trace)[0])  # keep the lazy graph one step deep
    return trace, info


def _values(model: KernelTestModel, trace: Trace) -> Draws:
    vals = model.latent_values(trace)
    for a, v in vals.items():
        if not model.discrete and not np.all(np.isfinite(v)):
            bad = int(np.sum(~np.isfinite(v)))
            raise AssertionError(f"{bad} chains hold a non-finite value at {format_address(a)}")
    return vals


def _pvalues(
    model: KernelTestModel, got: Draws, ref: Draws, rng: np.random.Generator, joint: bool = True
) -> list[tuple[str, float]]:
    """Two-sample p-values per coordinate (and a projection / the joint state)."""
    cg, cr = model.coordinates(got), model.coordinates(ref)
    out: list[tuple[str, float]] = []
    if model.discrete:
        for (label, a), (_, b) in zip(cg, cr):
            out.append((label, _chi2_homogeneity(a[:, None], b[:, None])))
        if joint and len(cg) > 1:
            ja = np.stack([a for _, a in cg], axis=1)
            jb = np.stack([b for _, b in cr], axis=1)
            out.append(("joint state", _chi2_homogeneity(ja, jb)))
        return out
    for (label, a), (_, b) in zip(cg, cr):
        out.append((label, ks_2samp_pvalue(a.astype(np.float64), b.astype(np.float64))))
    if joint and len(cg) > 1:
        rb = np.stack([b for _, b in cr], axis=1).astype(np.float64)
        ra = np.stack([a for _, a in cg], axis=1).astype(np.float64)
        mu, sd = rb.mean(axis=0), rb.std(axis=0) + 1e-12
        z: npt.NDArray[np.float64] = rng.standard_normal(size=(int(rb.shape[1]),))
        v = z / float(np.linalg.norm(z))
        out.append(("random projection", ks_2samp_pvalue((ra - mu) / sd @ v, (rb - mu) / sd @ v)))
    return out


def ks_resolution(n_a: int, n_b: int, level: float) -> tuple[float, float]:
    """The power of the two-sample KS test at ``level``: ``(D, shift)``.

    ``D`` is the smallest KS distance the test rejects (samples of sizes ``n_a`` and
    ``n_b``); ``shift`` the normal location shift, in standard deviations, whose
    population KS distance is ``D`` (``2Φ(shift/2) − 1 = D``): a kernel that moves a
    coordinate's distribution by that much is flagged about half the time, by twice
    that almost always.

    Example:
        >>> d, shift = ks_resolution(2000, 20000, 1e-4)
        >>> round(d, 3), round(shift, 2)
        (0.052, 0.13)
    """
    from genmlx.core.testing.distributions import kolmogorov_sf

    n = n_a * n_b / (n_a + n_b)
    lo, hi = 0.2, 10.0
    for _ in range(100):  # kolmogorov_sf decreases in λ: bisect for sf(λ) = level
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if kolmogorov_sf(mid) > level else (lo, mid)
    sn = math.sqrt(n)
    d = hi / (sn + 0.12 + 0.11 / sn)
    a, b = 0.0, 10.0
    for _ in range(100):  # 2Φ(δ/2) − 1 = erf(δ / (2√2))
        mid = 0.5 * (a + b)
        a, b = (mid, b) if math.erf(mid / (2.0 * math.sqrt(2.0))) < d else (a, mid)
    return d, b


def _verdict(name: str, pvals: list[tuple[str, float]], alpha: float, what: str) -> CheckResult:
    m = len(pvals)
    worst_label, worst = min(pvals, key=lambda t: t[1])
    thresh = alpha / m
    detail = (
        f"{what}; smallest p = {worst:.3g} ({worst_label}) vs α/{m} = {thresh:.2g}; "
        + ", ".join(f"{lab}: p={p:.3g}" for lab, p in pvals)
    )
    return CheckResult(name, worst >= thresh, detail)


def _consistency(model: KernelTestModel, before: Trace, after: Trace) -> list[str]:
    """Problems of a kernel's output trace: wrong model/args/batch, observations moved,
    score out of line with the choices."""
    errors = []
    if after.gen_fn is not before.gen_fn:
        errors.append("the new trace belongs to another generative function")
    if tuple(after.batch_shape) != tuple(before.batch_shape):
        errors.append(f"batch shape changed from {before.batch_shape} to {after.batch_shape}")
    for a in model.observed:
        old, new = np.array(before[a]), np.array(after[a])
        if old.shape != new.shape or not np.array_equal(old, new):
            errors.append(f"the observation at {format_address(a)} changed")
    ld, _ = after.gen_fn.assess(after.args, after.get_choices())
    lda, sc = np.array(ld, dtype=np.float64), np.array(after.score, dtype=np.float64)
    if lda.shape != sc.shape or not np.allclose(lda, sc, rtol=1e-4, atol=1e-3):
        worst = float(np.max(np.abs(lda - sc))) if lda.shape == sc.shape else float("nan")
        errors.append(f"trace.score differs from assess(choices) (max |diff| {worst:.3g})")
    return errors


def _same(a: Draws, b: Draws, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.shape != y.shape:
            return False
        if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer):
            if not np.array_equal(x, y):
                return False
        elif not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
            return False
    return True


def _moved(d: Draws, start: Draws) -> npt.NDArray[np.bool_]:
    """Per chain: some latent differs from ``start``."""
    out: npt.NDArray[np.bool_] | None = None
    for k, v in d.items():
        v = np.asarray(v)
        s0 = np.asarray(start[k]).astype(v.dtype)  # the start as the trace stores it
        diff = (v != s0[None]).reshape(v.shape[0], -1).any(axis=1)
        out = diff if out is None else np.logical_or(out, diff)
    assert out is not None
    return out


def _same_args(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """The same arguments: identical objects or equal values (arrays compared as arrays)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x is y:
            continue
        if isinstance(x, mx.array) or isinstance(y, mx.array):
            xa, ya = np.asarray(x), np.asarray(y)
            if xa.shape != ya.shape or not np.array_equal(xa, ya):
                return False
        elif isinstance(x, (tuple, list)) and isinstance(y, (tuple, list)):
            if not _same_args(tuple(x), tuple(y)):
                return False
        elif x != y:
            return False
    return True


def _row(d: Draws, i: int) -> Draws:
    return {k: np.asarray(v)[i] for k, v in d.items()}


def _stack(rows: Sequence[Draws]) -> Draws:
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


def _applicable(kernel: Kernel | None, model: KernelTestModel, name: str) -> Kernel:
    if kernel is None:
        raise ValueError(f"the kernel does not apply to model {model.name!r} ({name})")
    if not callable(kernel):
        raise TypeError(f"the factory returned {kernel!r} for model {model.name!r}, not a kernel")
    return kernel


# --------------------------------------------------------------------------- checks
def check_stationarity(
    kernel: Kernel, model: KernelTestModel, settings: KernelKitSettings = QUICK
) -> CheckResult:
    """Chains started at exact posterior draws stay posterior-distributed (see module doc)."""
    name = f"stationarity[{model.name}]"
    rng = np.random.default_rng(_seed(settings, "stationarity", model.name))
    start = model.trace(model.posterior(rng, settings.n_chains))
    final, _ = _run(kernel, start, settings.n_steps, _key(settings, "stationarity", model.name))
    problems = _consistency(model, start, final)
    if problems:
        return CheckResult(name, False, "; ".join(problems))
    got = _values(model, final)
    ref = model.posterior(rng, settings.n_reference)
    pvals = _pvalues(model, got, ref, rng)
    what = (
        f"{settings.n_chains} chains × {settings.n_steps} steps from exact posterior draws "
        f"vs {settings.n_reference} exact draws"
    )
    if not model.discrete:
        d, shift = ks_resolution(
            settings.n_chains, settings.n_reference, settings.alpha / len(pvals)
        )
        what += f" (flags a KS distance ≥ {d:.3f}, e.g. a mean shift of {shift:.2f} sd)"
    return _verdict(name, pvals, settings.alpha, what)


def check_sbc(
    kernel: Kernel, model: KernelTestModel, settings: KernelKitSettings = QUICK
) -> CheckResult:
    """Simulation-based calibration: ranks of the true parameters are uniform."""
    name = f"sbc[{model.name}]"
    r, draws = settings.sbc_datasets, settings.sbc_draws
    rng = np.random.default_rng(_seed(settings, "sbc", model.name))
    prior = model.model.vsimulate(model.args, r, key=_key(settings, "sbc-prior", model.name))
    truth = model.latent_values(prior)
    obs = {a: np.repeat(np.array(prior[a]), draws, axis=0) for a in model.observed}
    start = model.trace(model.posterior(rng, r * draws, obs), obs)
    final, _ = _run(kernel, start, settings.n_steps, _key(settings, "sbc", model.name))
    problems = _consistency(model, start, final)
    if problems:
        return CheckResult(name, False, "; ".join(problems))
    got = _values(model, final)
    pvals = []
    for (label, t), (_, g) in zip(model.coordinates(truth), model.coordinates(got)):
        g = g.reshape(r, draws).astype(np.float64)
        t = t.astype(np.float64)[:, None]
        below = np.sum(g < t, axis=1)
        ties = np.sum(g == t, axis=1)
        ranks = below + np.floor(rng.random(r) * (ties + 1)).astype(int)  # random tie-break
        counts = np.bincount(ranks, minlength=draws + 1).astype(np.float64)
        expected = np.full(draws + 1, r / (draws + 1))
        _, _, p = _chi2_gof(expected, counts)
        pvals.append((label, p))
    what = (
        f"{r} simulated data sets × {draws} chains × {settings.n_steps} steps; ranks of the "
        f"true value among the chains' final states, chi-square vs uniform on 0..{draws}"
    )
    return _verdict(name, pvals, settings.alpha, what)


def check_batched_vs_single(
    kernel: Kernel, model: KernelTestModel, settings: KernelKitSettings = QUICK, n: int = 4
) -> CheckResult:
    """Chain ``i`` of a batched call is independent of the others and equals the single call."""
    name = f"batched_vs_single[{model.name}]"
    rng = np.random.default_rng(_seed(settings, "batched", model.name))
    key = _key(settings, "batched", model.name)
    draws = model.posterior(rng, n)
    batched, info_b = _call(kernel, model.trace(draws), key)
    got_b = _values(model, batched)
    acc_b = np.array(accepted_of(info_b))
    # non-interference: other chains changed, chain 0 must come out the same
    other = model.posterior(rng, n)
    mixed = _stack([_row(draws, 0)] + [_row(other, i) for i in range(1, n)])
    batched2, _ = _call(kernel, model.trace(mixed), key)
    if not _same(_row(got_b, 0), _row(_values(model, batched2), 0)):
        return CheckResult(
            name,
            False,
            "chain 0 of a batched call changed when only the other chains' states changed "
            "(same key): the chains are not independent",
        )
    keys = mx.random.split(key, n)
    exact = True
    for i in range(n):
        single, info_i = _call(kernel, model.single_trace(_row(draws, i)), keys[i])
        if single.batch_shape:
            return CheckResult(name, False, "a single-trace call returned a batched trace")
        if not _same(_row(got_b, i), {a: np.array(single[a]) for a in model.latents}):
            exact = False
            break
        if not np.array_equal(np.asarray(acc_b[i]), np.array(accepted_of(info_i))):
            exact = False
            break
    if exact:
        return CheckResult(
            name, True, f"exact: chain i of {n} equals the single call with split(key, {n})[i]"
        )
    # distributional: many single calls from one state vs one batched call on copies
    m = settings.n_stat
    x0 = _row(draws, 0)
    t0 = model.single_trace(x0)
    ks = mx.random.split(_key(settings, "batched-single", model.name), m)
    singles = []
    for j in range(m):
        tr, _ = _call(kernel, t0, ks[j])
        singles.append({a: np.array(tr[a]) for a in model.latents})
    copies = _stack([x0] * m)
    bt, _ = _call(kernel, model.trace(copies), _key(settings, "batched-copies", model.name))
    got_bt, got_s = _values(model, bt), _stack(singles)
    pvals = _pvalues(model, got_bt, got_s, rng, joint=False)
    # how many chains left the start: coupled chains move all together or not at all
    moved_b, moved_s = _moved(got_bt, x0), _moved(got_s, x0)
    pvals.append(("moved from the start", _chi2_homogeneity(moved_b[:, None], moved_s[:, None])))
    what = (
        "chains use their own randomness (not split(key, n)[i]); "
        f"{m} single-trace steps from one state vs one batched step on {m} copies "
        f"(moved: {int(moved_s.sum())} single, {int(moved_b.sum())} batched)"
    )
    return _verdict(name, pvals, settings.alpha, what)


def check_key_determinism(
    kernel: Kernel, model: KernelTestModel, settings: KernelKitSettings = QUICK, n: int = 32
) -> CheckResult:
    """Same key → same result; different keys → different results."""
    name = f"key_determinism[{model.name}]"
    rng = np.random.default_rng(_seed(settings, "keys", model.name))
    draws = model.posterior(rng, n)
    tr = model.trace(draws)
    k1, k2 = _key(settings, "keys-1", model.name), _key(settings, "keys-2", model.name)
    a, ia = _call(kernel, tr, k1)
    b, ib = _call(kernel, tr, k1)
    va, vb = _values(model, a), _values(model, b)
    if not (_same(va, vb, 0.0, 0.0) and np.array_equal(accepted_of(ia), accepted_of(ib))):
        return CheckResult(
            name,
            False,
            "two calls with the same key gave different results: the kernel draws "
            "randomness that does not come from its key (e.g. MLX's global generator)",
        )
    t0 = model.single_trace(_row(draws, 0))
    s1, _ = _call(kernel, t0, k1)
    s2, _ = _call(kernel, t0, k1)
    if not _same(
        {x: np.array(s1[x]) for x in model.latents},
        {x: np.array(s2[x]) for x in model.latents},
        0.0,
        0.0,
    ):
        return CheckResult(
            name, False, "two single-trace calls with the same key gave different results"
        )
    c, _ = _call(kernel, tr, k2)
    vc = _values(model, c)
    if _same(va, vc, 0.0, 0.0):
        moved = sum(int(np.any(va[x] != np.asarray(draws[x]))) for x in model.latents)
        return CheckResult(
            name,
            False,
            f"two different keys gave identical results on all {n} chains"
            + (" (and the chains moved)" if moved else " (no chain moved)")
            + ": the kernel ignores its key",
        )
    return CheckResult(name, True, f"same key reproduces (single and {n} chains); keys differ")


def check_info(
    kernel: Kernel,
    model: KernelTestModel,
    settings: KernelKitSettings = QUICK,
    info_fields: Sequence[str] = (),
    n: int = 8,
) -> CheckResult:
    """The result's form: ``(Trace, info)``, ``accepted`` per chain, declared fields."""
    name = f"info[{model.name}]"
    rng = np.random.default_rng(_seed(settings, "info", model.name))
    draws = model.posterior(rng, n)
    errors: list[str] = []
    notes: list[str] = []
    cases = (("batched", model.trace(draws)), ("single", model.single_trace(_row(draws, 0))))
    for label, tr in cases:
        new, info = _call(kernel, tr, _key(settings, "info", label, model.name))
        errors += [f"{label}: {e}" for e in _consistency(model, tr, new)]
        if not _same_args(new.args, tr.args):
            errors.append(f"{label}: the trace's arguments changed")
        try:
            acc = accepted_of(info)
        except TypeError as e:
            errors.append(f"{label}: {e}")
            continue
        batch = tuple(tr.batch_shape)
        if tuple(acc.shape) != batch:
            errors.append(f"{label}: accepted has shape {tuple(acc.shape)}, expected {batch}")
            continue
        a = np.array(acc.astype(mx.float32) if acc.dtype == mx.bfloat16 else acc)
        if acc.dtype == mx.bool_:
            before, after = model.latent_values(tr), model.latent_values(new)
            rejected = ~a.reshape(-1)
            for x in model.latents:
                bx = np.asarray(before[x]).reshape(max(1, math.prod(batch)), -1)
                ax = np.asarray(after[x]).reshape(bx.shape)
                if not np.array_equal(bx[rejected], ax[rejected]):
                    errors.append(
                        f"{label}: a chain reported accepted=False but its value at "
                        f"{format_address(x)} changed"
                    )
            notes.append(f"{label}: accepted {int(a.sum())}/{a.size}")
        elif mx.issubdtype(acc.dtype, mx.floating):
            if not (np.all(np.isfinite(a)) and np.all(a >= 0) and np.all(a <= 1)):
                errors.append(f"{label}: accepted (a fraction) must lie in [0, 1], got {a}")
        else:
            errors.append(f"{label}: accepted must be bool or a float fraction, got {acc.dtype}")
        for f in info_fields:
            if not hasattr(info, f):
                errors.append(f"{label}: info has no field {f!r}")
                continue
            v = getattr(info, f)
            if isinstance(v, mx.array) and batch and tuple(v.shape[:1]) != batch[:1]:
                errors.append(f"{label}: info.{f} has shape {tuple(v.shape)}, no leading {batch}")
    if errors:
        return CheckResult(name, False, "; ".join(errors))
    fields = f"; fields {', '.join(info_fields)} present" if info_fields else ""
    return CheckResult(name, True, "; ".join(notes) or "accepted per chain" + fields)


# --------------------------------------------------------------------------- the kit
def _models(models: Sequence[str | KernelTestModel] | None) -> list[KernelTestModel]:
    if models is None:
        return list(KERNEL_TEST_MODELS.values())
    out = []
    for m in models:
        if isinstance(m, KernelTestModel):
            out.append(m)
        elif m in KERNEL_TEST_MODELS:
            out.append(KERNEL_TEST_MODELS[m])
        else:
            known = sorted(KERNEL_TEST_MODELS)
            raise ValueError(f"unknown kernel test model {m!r}; known: {known}")
    return out


def check_kernel(
    factory: KernelFactory,
    *,
    name: str | None = None,
    models: Sequence[str | KernelTestModel] | None = None,
    checks: Sequence[str] | None = None,
    settings: KernelKitSettings = QUICK,
    info_fields: Sequence[str] = (),
    raise_on_failure: bool = True,
    **overrides: Any,
) -> KitReport:
    """Run the kernel kit on the kernel that ``factory`` sets up for each test model.

    Args:
        factory: ``factory(model) -> kernel | None`` (see the module docstring).
        name: the kernel's name in the report.
        models: test models (names or :class:`KernelTestModel`; default: all of
            :data:`~genmlx.core.testing.kernel_models.KERNEL_TEST_MODELS`).
        checks: a subset of :data:`KERNEL_CHECKS` (default: all).
        settings: :data:`QUICK` (default) or :data:`THOROUGH`, or your own.
        info_fields: attributes ``info`` must carry besides ``accepted``.
        raise_on_failure: raise ``AssertionError`` with the whole report on a failure.
        **overrides: fields of :class:`KernelKitSettings` to change (``n_chains=...``).

    Returns:
        The :class:`~genmlx.core.testing.report.KitReport`.

    Raises:
        AssertionError: a check failed, or the factory applies to none of the models.
    """
    if not callable(factory):
        raise TypeError(f"check_kernel: factory must be callable, got {factory!r}")
    settings = replace(settings, **overrides) if overrides else settings
    wanted = list(KERNEL_CHECKS if checks is None else checks)
    unknown = set(wanted) - set(KERNEL_CHECKS)
    if unknown:
        raise ValueError(f"check_kernel: unknown checks {sorted(unknown)}; known: {KERNEL_CHECKS}")
    report = KitReport("kernel", name or str(getattr(factory, "__name__", repr(factory))))
    kernels: dict[str, Kernel] = {}
    chosen: dict[str, KernelTestModel] = {}
    for model in _models(models):
        try:
            k = factory(model)
        except Exception as e:
            report.results.append(
                CheckResult(f"factory[{model.name}]", False, f"raised {type(e).__name__}: {e}")
            )
            continue
        if k is None:
            report.notes.append(f"does not apply to {model.name}")
            continue
        kernels[model.name] = _applicable(k, model, report.subject)
        chosen[model.name] = model
    if not kernels:
        if not report.results:
            report.results.append(
                CheckResult("factory", False, "the factory applies to none of the test models")
            )
    else:
        by_name = list(chosen.values())
        single: dict[str, Callable[..., CheckResult]] = {
            "info": partial(check_info, info_fields=info_fields),
            "key_determinism": check_key_determinism,
            "batched_vs_single": check_batched_vs_single,
        }
        for check in wanted:
            if check == "stationarity":
                runs = [(m, check_stationarity) for m in by_name]
            elif check == "sbc":
                sbc = next((s for s in SBC_MODELS if s in chosen and chosen[s].sbc), None)
                if sbc is None:
                    report.notes.append("sbc: no SBC model applies")
                    continue
                runs = [(chosen[sbc], check_sbc)]
            else:
                runs = [(by_name[0], single[check])]
            for m, fn in runs:
                report.run(f"{check}[{m.name}]", partial(fn, kernels[m.name], m, settings))
    if raise_on_failure and not report.passed:
        raise AssertionError(str(report))
    return report
