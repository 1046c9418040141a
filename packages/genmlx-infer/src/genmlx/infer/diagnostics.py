"""MCMC and importance-sampling diagnostics computed with MLX arrays.

Everything here follows ArviZ (``arviz.ess`` / ``arviz.rhat`` / ``arviz.summary``) and
Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding,
and localization: an improved R-hat for assessing convergence of MCMC", *Bayesian
Analysis* 16(2), exactly, but is computed with ``mlx.core`` only (no NumPy, SciPy or
ArviZ at run time).

Samples come as a result that knows its layout — the
:class:`~genmlx.infer.MCMCResult` of :func:`~genmlx.infer.mcmc` (``[chain, draw]``) or
the :class:`~genmlx.infer.ChainResult` of :func:`~genmlx.infer.chain` — or as
arrays with an
explicit ``layout``: ``"chain_draw"`` for ``[chains, draws, *param_shape]`` (ArviZ's
``(chain, draw)`` dimensions, the layout every statistic works in), ``"draw_chain"`` for
``[draws, chains, *param_shape]`` (how :func:`~genmlx.infer.chain` records the draws
of a batched trace) or ``"draw"`` for one chain ``[draws, *param_shape]``. An array
without a layout is refused: both axis orders are plausible, and reading one as the
other gives a silently wrong ESS. Every statistic is computed independently for each
scalar parameter and returned with shape ``param_shape``. All parameters are processed
at once (no Python loop over parameters); Geyer's sequential truncation rule is
expressed with cumulative minima and masks.

Definitions (``M`` chains of ``N`` draws after splitting each chain in half):

* **split chains**: each chain is cut into its first and last ``N//2`` draws (the
  middle draw is dropped for odd ``N``), giving ``2M`` chains.
* **rank normalisation**: pooled ranks ``r`` (average ranks for ties) over all ``S``
  values are mapped to ``z = Φ⁻¹((r − 3/8) / (S + 1/4))`` (Blom), with
  ``Φ⁻¹(p) = √2 · erfinv(2p − 1)``.
* **ESS**: with the within-chain autocovariances ``γ̂_m(t)`` (computed by FFT),
  ``W = mean_m γ̂_m(0) · N/(N−1)``, ``var⁺ = W (N−1)/N + B/N`` and
  ``ρ̂_t = 1 − (W − mean_m γ̂_m(t)) / var⁺``, the pair sums
  ``P_k = ρ̂_{2k} + ρ̂_{2k+1}`` are truncated at the first non-positive one (Geyer's
  initial positive sequence), made monotone (initial monotone sequence) and
  ``τ̂ = −1 + 2 Σ_k P_k + ρ̂_{2K+2}``; ``ESS = M N / max(τ̂, 1/log10(M N))``.
* **R-hat**: ``sqrt(((N−1)/N · W + B/N) / W)`` on split, rank-normalised chains, the
  maximum of the bulk version and the folded version (``|x − median(x)|``).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.infer.diagnostics import ess_bulk, rhat
    >>> x = mx.random.normal((4, 500), key=mx.random.key(0))   # 4 chains of 500 draws
    >>> bool(ess_bulk(x, layout="chain_draw") > 1000)
    True
    >>> bool(abs(rhat(x, layout="chain_draw") - 1.0) < 0.05)
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, cast

import mlx.core as mx

from genmlx.core import format_address
from genmlx.infer import _sharding

__all__ = [
    "LAYOUTS",
    "Layout",
    "SummaryTable",
    "effective_sample_size_weights",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "rhat",
    "summary",
    "to_chain_draw",
]

Layout = Literal["chain_draw", "draw_chain", "draw"]
#: The accepted ``layout`` values and the axes they mean.
LAYOUTS: dict[str, str] = {
    "chain_draw": "[chains, draws, *param_shape] (ArviZ's chain, draw)",
    "draw_chain": "[draws, chains, *param_shape] (chain()'s samples of a batched trace)",
    "draw": "[draws, *param_shape] (one chain)",
}

_MIN_DRAWS = 4
# ArviZ treats a sample whose range is below float64 resolution as constant.
_CONSTANT_RESOLUTION = 1e-15


def _is_chain_result(x: Any) -> bool:
    """A result object that knows its layout: :class:`~genmlx.infer.ChainResult` or
    :class:`~genmlx.infer.MCMCResult` (``samples`` mapping and a ``layout``)."""
    if not hasattr(x, "samples") or not isinstance(x.samples, Mapping):
        return False
    return hasattr(x, "trace") or getattr(x, "layout", None) in LAYOUTS


def _arrange(samples: Any, layout: str | None, op: str, what: str = "samples") -> mx.array:
    """``samples`` (an array) in ``[chains, draws, ...]`` order, given its ``layout``."""
    if layout is None:
        raise ValueError(
            f"{op}: {what} is a bare array of shape {tuple(mx.array(samples).shape)}, whose "
            "axis order is ambiguous; pass the ChainResult that chain() returned, or say "
            "layout=" + " or ".join(f"{k!r} for {v}" for k, v in LAYOUTS.items())
        )
    if layout not in LAYOUTS:
        raise ValueError(f"{op}: layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    x = samples if isinstance(samples, mx.array) else mx.array(samples)
    need = 1 if layout == "draw" else 2
    if x.ndim < need:
        raise ValueError(f"{op}: layout={layout!r} means {LAYOUTS[layout]}; got shape {x.shape}")
    if layout == "draw":
        return x[None]
    if layout == "draw_chain":
        return mx.swapaxes(x, 0, 1)
    return x


def _chain_result_layout(result: Any) -> str:
    layout = getattr(result, "layout", None)
    if isinstance(layout, str) and layout in LAYOUTS:
        return layout
    return "draw_chain" if len(result.trace.batch_shape) == 1 else "draw"


def to_chain_draw(samples: Any, layout: Layout | None = None) -> Any:
    """Draws in ArviZ's ``[chains, draws, *param_shape]`` layout.

    Args:
        samples: a :class:`~genmlx.infer.ChainResult` (its layout is known: its
            trace's batch shape tells one chain from many), a mapping of arrays, or an
            array.
        layout: the layout of ``samples`` when they are arrays (see the module
            docstring); required for arrays, not allowed for a ``ChainResult``.

    Returns:
        ``{name: array}`` for a ``ChainResult`` or a mapping; an array for an array.

    Example:
        >>> import mlx.core as mx
        >>> draws = mx.zeros((100, 4))            # chain()'s [draws, chains]
        >>> to_chain_draw(draws, layout="draw_chain").shape
        (4, 100)
    """
    if _is_chain_result(samples):
        if layout is not None:
            raise ValueError(
                "to_chain_draw: a ChainResult knows its layout; pass no layout= with it"
            )
        lay = _chain_result_layout(samples)
        return {k: _arrange(v, lay, "to_chain_draw") for k, v in samples.samples.items()}
    if isinstance(samples, Mapping):
        return {k: _arrange(v, layout, "to_chain_draw", f"{k!r}") for k, v in samples.items()}
    return _arrange(samples, layout, "to_chain_draw")


def _one_array(samples: Any, layout: str | None, op: str) -> mx.array:
    """The ``[chains, draws, ...]`` array behind ``samples`` (one array or a ChainResult
    recording one address)."""
    if _is_chain_result(samples):
        if layout is not None:
            raise ValueError(f"{op}: a ChainResult knows its layout; pass no layout= with it")
        if len(samples.samples) != 1:
            raise ValueError(
                f"{op}: the result recorded {len(samples.samples)} addresses "
                f"{list(samples.samples)}; pass one, {op}(result.samples[address], "
                f"layout={_chain_result_layout(samples)!r}), or use summary(result) for all "
                "of them"
            )
        (value,) = samples.samples.values()
        return _arrange(value, _chain_result_layout(samples), op)
    if isinstance(samples, Mapping):
        raise TypeError(f"{op}: takes one array of draws; summary() takes a mapping of them")
    return _arrange(samples, layout, op)


# --------------------------------------------------------------------------------------
# Internal helpers on [chains, draws, K] float32 arrays.
# --------------------------------------------------------------------------------------


def _all_chains(x: mx.array, group: Any, op: str) -> mx.array:
    """``x`` (``[chains, draws, ...]``) with every process's chains when a group is in
    play."""
    g = _sharding.group_for(group, op)
    if g is None:
        return x
    from genmlx.infer.distributed.diagnostics import gather_chains

    return gather_chains(x, g, op)


def _as_3d(samples: mx.array) -> tuple[mx.array, tuple[int, ...]]:
    """Validate ``[chains, draws, *param_shape]`` and reshape to ``[chains, draws, K]``."""
    x = mx.array(samples) if not isinstance(samples, mx.array) else samples
    if x.ndim < 2:
        raise ValueError(
            f"samples must have shape [chains, draws, *param_shape]; got shape {x.shape}"
        )
    param_shape = tuple(x.shape[2:])
    k = math.prod(param_shape)
    x = x.astype(mx.float32).reshape(x.shape[0], x.shape[1], k)
    return x, param_shape


def _has_nan(x: mx.array) -> mx.array:
    """Per parameter: whether any value is NaN, shape ``[K]``."""
    return mx.any(mx.isnan(x), axis=(0, 1))


def _split_chains(x: mx.array) -> mx.array:
    """``[M, N, K]`` → ``[2M, N//2, K]`` (first halves, then last halves)."""
    half = x.shape[1] // 2
    return mx.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _average_ranks(flat: mx.array) -> mx.array:
    """Ranks ``1..S`` along axis 0 of ``[S, K]``, ties get their average rank."""
    s = flat.shape[0]
    perm = mx.argsort(flat, axis=0)
    srt = mx.take_along_axis(flat, perm, axis=0)
    idx = mx.broadcast_to(mx.arange(s, dtype=mx.int32)[:, None], srt.shape)
    differs = srt[1:] != srt[:-1]
    true_row = mx.ones((1, srt.shape[1]), dtype=mx.bool_)
    is_first = mx.concatenate([true_row, differs], axis=0)
    is_last = mx.concatenate([differs, true_row], axis=0)
    start = mx.cummax(mx.where(is_first, idx, 0), axis=0)
    end = mx.cummin(mx.where(is_last, idx, s), axis=0, reverse=True)
    avg_sorted = (start + end).astype(mx.float32) * 0.5 + 1.0
    inverse = mx.argsort(perm, axis=0)
    return mx.take_along_axis(avg_sorted, inverse, axis=0)


def _z_scale(x: mx.array) -> mx.array:
    """Rank-normalise ``[M, N, K]`` over the pooled ``M·N`` values of each parameter.

    ``z = √2 · erfinv(2p − 1)`` with ``p = (r − 3/8)/(S + 1/4)``; ``2p − 1`` is formed as
    ``(2r − S − 1)/(S + 1/4)`` so the numerator is exact in float32 and the argument
    stays strictly inside ``(−1, 1)``.
    """
    m, n, k = x.shape
    s = m * n
    if x.dtype == mx.float64:  # float64 only exists on the CPU (see _fold)
        with mx.stream(mx.cpu):
            ranks = _average_ranks(x.reshape(s, k))
    else:
        ranks = _average_ranks(x.reshape(s, k))
    u = (2.0 * ranks - float(s + 1)) / float(s + 0.25)
    z = math.sqrt(2.0) * mx.erfinv(u)
    return z.reshape(m, n, k)


def _sorted_pooled(x: mx.array) -> mx.array:
    """All values of each parameter, sorted: ``[M, N, K]`` → ``[M·N, K]``."""
    return mx.sort(x.reshape(-1, x.shape[2]), axis=0)


def _median(x: mx.array) -> mx.array:
    """Median of the pooled values of each parameter (NumPy's definition), ``[K]``."""
    srt = _sorted_pooled(x)
    s = srt.shape[0]
    if s % 2 == 1:
        return srt[s // 2]
    return 0.5 * (srt[s // 2 - 1] + srt[s // 2])


def _type7_quantile(srt: mx.array, prob: float) -> mx.array:
    """Linear-interpolation (R type 7, NumPy default) quantile of sorted ``[S, K]``."""
    s = srt.shape[0]
    h = (s - 1) * prob
    lo = min(max(math.floor(h), 0), s - 1)
    hi = min(lo + 1, s - 1)
    frac = h - lo
    return srt[lo] + frac * (srt[hi] - srt[lo])


def _mquantile_lower_index(s: int, prob: float) -> int:
    """Index ``j`` such that ``{x ≤ q} = {x ≤ x_(j)}`` for ArviZ's quantile ``q``.

    ArviZ uses ``scipy.stats.mstats.mquantiles(alphap=1, betap=1)`` (R type 7):
    ``aleph = S p + (1 − p)``, ``k = floor(clip(aleph, 1, S−1))``,
    ``γ = clip(aleph − k, 0, 1)``, ``q = (1−γ) x_(k−1) + γ x_(k)`` (0-based). For
    ``γ < 1``, ``x_(k−1) ≤ q < x_(k)`` whenever the two differ and ``q = x_(k−1)``
    otherwise, so the indicator is exactly ``x ≤ x_(k−1)``; for ``γ = 1`` it is
    ``x ≤ x_(k)``. Using the order statistic avoids rounding the interpolated value.
    """
    m = 1.0 + prob * (1.0 - 1.0 - 1.0)
    aleph = s * prob + m
    kk = math.floor(min(max(aleph, 1.0), s - 1.0))
    gamma = min(max(aleph - kk, 0.0), 1.0)
    return kk - 1 if gamma < 1.0 else kk


def _fold(x: mx.array) -> mx.array:
    """``|x − median(x)|`` per parameter, in float64 on the CPU stream.

    The median of an even number of float32 values, ``(a + b)/2``, and the
    differences ``x − median`` are exact in float64, so the two middle values fold to
    exactly tied magnitudes as they do in ArviZ (float32 rounding would break such
    ties and change the ranks). Ranking only needs comparisons, so the result can
    stay float64 until the rank normalisation.
    """
    with mx.stream(mx.cpu):
        x64 = x.astype(mx.float64)
        return mx.abs(x64 - _median(x64)[None, None])


def _autocov(x: mx.array) -> mx.array:
    """Biased autocovariances along the draw axis of ``[M, N, K]`` via FFT, ``[M, N, K]``."""
    n = x.shape[1]
    centred = x - mx.mean(x, axis=1, keepdims=True)
    nfft = 1 << max(1, (2 * n - 1).bit_length())  # power of two ≥ 2n: no circular wrap
    f = mx.fft.rfft(centred, n=nfft, axis=1)
    power = mx.real(f) ** 2 + mx.imag(f) ** 2
    cov = mx.fft.irfft(power.astype(mx.complex64), n=nfft, axis=1)[:, :n]
    return cov / n


def _ess_core(x: mx.array) -> mx.array:
    """ArviZ's ``_ess(ary, relative=False)`` for every parameter of ``[M, N, K]`` → ``[K]``.

    The sequential Geyer loops of ArviZ are rewritten without Python control flow on
    array values: with ``L = len(range(1, N − 3, 2))`` pair sums
    ``P_0 = 1 + ρ̂_1, P_k = ρ̂_{2k} + ρ̂_{2k+1}`` (``k = 1..L``), the loop stops after
    ``m = min(L, first k with P_k ≤ 0)`` pairs; then
    ``τ̂ = −1 + 2 Σ_{k<m} min_{j≤k} P_j + E`` where ``E = ρ̂_{2m}`` if ``P_m ≥ 0`` and
    ``max(ρ̂_{2m}, 0)`` otherwise (``ρ̂_0 = 1``).
    """
    m_chains, n, _ = x.shape
    size = m_chains * n
    acov = _autocov(x)
    acov_mean = mx.mean(acov, axis=0)  # [N, K]
    chain_mean = mx.mean(x, axis=1)  # [M, K]
    mean_var = acov_mean[0] * (n / (n - 1.0))
    var_plus = mean_var * ((n - 1.0) / n)
    if m_chains > 1:
        var_plus = var_plus + mx.var(chain_mean, axis=0, ddof=1)
    rho = 1.0 - (mean_var[None] - acov_mean) / var_plus[None]  # [N, K]
    rho = mx.concatenate([mx.ones_like(rho[:1]), rho[1:]], axis=0)

    n_pairs = len(range(1, n - 3, 2))  # L
    evens = rho[0 : 2 * n_pairs + 1 : 2]  # ρ̂_{2k}, k = 0..L
    odds = rho[1 : 2 * n_pairs + 2 : 2]  # ρ̂_{2k+1}, k = 0..L
    pair = evens + odds  # [L+1, K]
    nonpos = (pair <= 0.0).astype(mx.int32)
    first_nonpos = mx.where(mx.any(nonpos > 0, axis=0), mx.argmax(nonpos, axis=0), n_pairs)
    stop = mx.minimum(first_nonpos, n_pairs).astype(mx.int32)  # m, [K]
    kidx = mx.arange(n_pairs + 1, dtype=mx.int32)[:, None]
    monotone = mx.cummin(pair, axis=0)
    pair_total = mx.sum(mx.where(kidx < stop[None], monotone, 0.0), axis=0)
    even_m = mx.take_along_axis(evens, stop[None], axis=0)[0]
    pair_m = mx.take_along_axis(pair, stop[None], axis=0)[0]
    last = mx.where(pair_m >= 0.0, even_m, mx.maximum(even_m, 0.0))
    tau = -1.0 + 2.0 * pair_total + last
    tau = mx.maximum(tau, 1.0 / math.log10(size))
    ess = size / tau

    constant = (mx.max(x, axis=(0, 1)) - mx.min(x, axis=(0, 1))) < _CONSTANT_RESOLUTION
    ess = mx.where(constant, float(size), ess)
    return mx.where(_has_nan(x), mx.nan, ess)


def _rhat_core(x: mx.array) -> mx.array:
    """Classic (Gelman–Rubin) R-hat of ``[M, N, K]`` → ``[K]``."""
    n = x.shape[1]
    chain_mean = mx.mean(x, axis=1)
    chain_var = mx.var(x, axis=1, ddof=1)
    between = n * mx.var(chain_mean, axis=0, ddof=1)
    within = mx.mean(chain_var, axis=0)
    return mx.sqrt((between / within + n - 1.0) / n)


def _finish(out: mx.array, x: mx.array, param_shape: tuple[int, ...]) -> mx.array:
    return mx.where(_has_nan(x), mx.nan, out).reshape(param_shape)


def _nan_result(param_shape: tuple[int, ...]) -> mx.array:
    return mx.full(param_shape, mx.nan, dtype=mx.float32)


# --------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------


def ess_bulk(
    samples: Any, *, layout: Layout | None = None, group: Any = None
) -> mx.array:
    """Bulk effective sample size (rank-normalised split-chain ESS).

    ``ESS_bulk = ESS(z)`` where ``z`` are the rank-normalised values of the split
    chains (see the module docstring); equals ``arviz.ess(samples, method="bulk")``.

    Args:
        samples: a :class:`~genmlx.infer.ChainResult` recording one address, or
            an array of draws (``draws ≥ 4``) in the given ``layout``.
        layout: ``"chain_draw"``, ``"draw_chain"`` or ``"draw"`` for an array
            (required: see the module docstring).
        group: an ``mx.distributed`` group: ``samples`` hold this process's chains; the
            statistic is over every process's chains (gathered, rank order).

    Returns:
        ESS per scalar parameter, shape ``param_shape`` (NaN where a parameter has a
        NaN draw, or when ``draws < 4``).

    Example:
        >>> import mlx.core as mx
        >>> x = mx.random.normal((4, 1000, 2), key=mx.random.key(1))
        >>> ess_bulk(x, layout="chain_draw").shape
        (2,)
    """
    arranged = _all_chains(_one_array(samples, layout, "ess_bulk"), group, "ess_bulk")
    x, param_shape = _as_3d(arranged)
    if x.shape[1] < _MIN_DRAWS:
        return _nan_result(param_shape)
    return _finish(_ess_core(_z_scale(_split_chains(x))), x, param_shape)


def ess_mean(
    samples: Any, *, layout: Layout | None = None, group: Any = None
) -> mx.array:
    """Effective sample size for the mean (split-chain ESS of the raw values).

    Equals ``arviz.ess(samples, method="mean")``: ``ESS(split(x))`` without rank
    normalisation.

    Args:
        samples: a :class:`~genmlx.infer.ChainResult` recording one address, or
            an array of draws (``draws ≥ 4``) in the given ``layout``.
        layout: ``"chain_draw"``, ``"draw_chain"`` or ``"draw"`` for an array
            (required: see the module docstring).
        group: an ``mx.distributed`` group: ``samples`` hold this process's chains; the
            statistic is over every process's chains (gathered, rank order).

    Returns:
        ESS per scalar parameter, shape ``param_shape``.

    Example:
        >>> import mlx.core as mx
        >>> x = mx.random.normal((4, 1000), key=mx.random.key(2))
        >>> bool(ess_mean(x, layout="chain_draw") > 2000)
        True
    """
    arranged = _all_chains(_one_array(samples, layout, "ess_mean"), group, "ess_mean")
    x, param_shape = _as_3d(arranged)
    if x.shape[1] < _MIN_DRAWS:
        return _nan_result(param_shape)
    return _finish(_ess_core(_split_chains(x)), x, param_shape)


def ess_tail(
    samples: Any, prob: float = 0.1, *, layout: Layout | None = None, group: Any = None
) -> mx.array:
    """Tail effective sample size.

    ``min(ESS(I(x ≤ q_{prob/2})), ESS(I(x ≤ q_{1−prob/2})))`` with the indicators
    split into half chains and ``q_p`` the pooled R type-7 quantile. ``prob`` is the
    *total* tail mass: the default ``0.1`` gives the 5% and 95% quantiles, i.e.
    ``arviz.ess(samples, method="tail")`` (whose own ``prob`` argument is the lower
    tail probability, so ArviZ's ``prob=p`` corresponds to ``prob=2p`` here).

    Args:
        samples: a :class:`~genmlx.infer.ChainResult` recording one address, or
            an array of draws (``draws ≥ 4``) in the given ``layout``.
        prob: total probability in the two tails, in ``(0, 1)``.
        layout: ``"chain_draw"``, ``"draw_chain"`` or ``"draw"`` for an array
            (required: see the module docstring).
        group: an ``mx.distributed`` group: ``samples`` hold this process's chains; the
            statistic is over every process's chains (gathered, rank order).

    Returns:
        ESS per scalar parameter, shape ``param_shape``.

    Example:
        >>> import mlx.core as mx
        >>> x = mx.random.normal((4, 1000), key=mx.random.key(3))
        >>> bool(ess_tail(x, layout="chain_draw") > 1000)
        True
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1); got {prob}")
    arranged = _all_chains(_one_array(samples, layout, "ess_tail"), group, "ess_tail")
    x, param_shape = _as_3d(arranged)
    if x.shape[1] < _MIN_DRAWS:
        return _nan_result(param_shape)
    srt = _sorted_pooled(x)
    s = srt.shape[0]

    def quantile_ess(p: float) -> mx.array:
        q = srt[_mquantile_lower_index(s, p)]
        indicator = (x <= q[None, None]).astype(mx.float32)
        return _ess_core(_split_chains(indicator))

    out = mx.minimum(quantile_ess(prob / 2.0), quantile_ess(1.0 - prob / 2.0))
    return _finish(out, x, param_shape)


def rhat(
    samples: Any, *, layout: Layout | None = None, group: Any = None
) -> mx.array:
    """Rank-normalised split R-hat (Vehtari et al. 2021).

    ``max(R̂(z(split(x))), R̂(z(|split(x) − median(split(x))|)))`` with ``z`` the rank
    normalisation and ``R̂ = sqrt(((N−1)/N · W + B/N) / W)``; equals
    ``arviz.rhat(samples, method="rank")``. Values above about 1.01 indicate that the
    chains have not mixed.

    Args:
        samples: a :class:`~genmlx.infer.ChainResult` recording one address, or
            an array of draws (``chains ≥ 2``, ``draws ≥ 4``) in the given ``layout``.
        layout: ``"chain_draw"``, ``"draw_chain"`` or ``"draw"`` for an array
            (required: see the module docstring).
        group: an ``mx.distributed`` group: ``samples`` hold this process's chains; the
            statistic is over every process's chains (gathered, rank order).

    Returns:
        R-hat per scalar parameter, shape ``param_shape`` (NaN for fewer than 2 chains
        or 4 draws, or where a parameter has a NaN draw).

    Example:
        >>> import mlx.core as mx
        >>> x = mx.random.normal((4, 1000), key=mx.random.key(4))
        >>> bool(rhat(x + mx.array([[0.0], [0.0], [0.0], [3.0]]), layout="chain_draw") > 1.1)
        True
    """
    arranged = _all_chains(_one_array(samples, layout, "rhat"), group, "rhat")
    x, param_shape = _as_3d(arranged)
    if x.shape[0] < 2 or x.shape[1] < _MIN_DRAWS:
        return _nan_result(param_shape)
    split = _split_chains(x)
    bulk = _rhat_core(_z_scale(split))
    tail = _rhat_core(_z_scale(_fold(split)))
    return _finish(mx.maximum(bulk, tail), x, param_shape)


def effective_sample_size_weights(
    log_weights: mx.array, axis: int = -1, *, group: Any = None
) -> mx.array:
    """Kish effective sample size of (unnormalised) importance weights.

    With normalised weights ``w_i = exp(lw_i) / Σ_j exp(lw_j)``,
    ``ESS = 1 / Σ_i w_i² = exp(2·logsumexp(lw) − logsumexp(2·lw))``, computed in log
    space so it is stable for very negative log weights. ``1 ≤ ESS ≤ n``.

    Args:
        log_weights: log importance weights; ``axis`` indexes the particles.
        axis: particle axis (other axes are independent particle systems).
        group: an ``mx.distributed`` group: ``log_weights`` (one-dimensional) are this
            process's particles' and the ESS is over every process's particles (a
            maximum and two sums over processes).

    Returns:
        The ESS, with ``axis`` reduced.

    Example:
        >>> import mlx.core as mx
        >>> round(effective_sample_size_weights(mx.zeros(10)).item(), 4)
        10.0
    """
    g = _sharding.group_for(group, "effective_sample_size_weights")
    if g is not None:
        from genmlx.infer.distributed.diagnostics import weights_ess

        return weights_ess(log_weights, axis, g)
    lw = log_weights.astype(mx.float32)
    lw = lw - mx.max(lw, axis=axis, keepdims=True)  # avoid cancellation of large terms
    return mx.exp(2.0 * mx.logsumexp(lw, axis=axis) - mx.logsumexp(2.0 * lw, axis=axis))


_SUMMARY_COLUMNS = ("mean", "sd", "q5", "q50", "q95", "ess_bulk", "ess_tail", "r_hat")


class SummaryTable(dict[str, dict[str, float]]):
    """Posterior summary: ``{parameter: {column: value}}`` that prints as a table.

    Columns: ``mean``, ``sd`` (``ddof=1`` over all draws), ``q5``, ``q50``, ``q95``
    (linear-interpolation quantiles), ``ess_bulk``, ``ess_tail``, ``r_hat``.
    Parameter names are ``name`` for scalars and ``name[i, j]`` for array elements.
    """

    columns = _SUMMARY_COLUMNS

    def to_string(self, digits: int = 3) -> str:
        """Render as a fixed-width text table."""
        names = list(self)
        width = max([len("param")] + [len(n) for n in names])
        header = "param".ljust(width) + "".join(c.rjust(11) for c in self.columns)
        lines = [header]
        for name in names:
            row = self[name]
            cells = "".join(f"{row[c]:11.{digits}f}" for c in self.columns)
            lines.append(name.ljust(width) + cells)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_string()


def summary(
    samples: Any, *, layout: Layout | None = None, group: Any = None
) -> SummaryTable:
    """Posterior summary table in the style of ``arviz.summary``.

    For every scalar parameter: mean, standard deviation (``ddof=1``), the 5%, 50% and
    95% quantiles (linear interpolation), :func:`ess_bulk`, :func:`ess_tail` and
    :func:`rhat` (``r_hat`` is NaN for a single chain).

    Args:
        samples: the :class:`~genmlx.infer.ChainResult` of
            :func:`~genmlx.infer.chain` (every recorded address), or
            ``{name: array}`` with the arrays' ``layout``.
        layout: for a mapping of arrays, ``"chain_draw"`` (``[chains, draws, ...]``),
            ``"draw_chain"`` (``[draws, chains, ...]``, as ``chain()`` records) or
            ``"draw"`` (one chain); required there, not allowed with a ``ChainResult``.
        group: an ``mx.distributed`` group: the draws are this process's chains; the
            table is over every process's chains (gathered; the same on every process).

    Returns:
        A :class:`SummaryTable` (a ``dict`` of per-parameter ``dict`` rows; ``print``
        shows it as a table).

    Example:
        >>> import mlx.core as mx
        >>> x = mx.random.normal((4, 500, 2), key=mx.random.key(5))
        >>> table = summary({"theta": x}, layout="chain_draw")
        >>> sorted(table)
        ['theta[0]', 'theta[1]']
        >>> abs(table["theta[0]"]["mean"]) < 0.1
        True
    """
    if _is_chain_result(samples):
        arranged = to_chain_draw(samples, layout)
    elif isinstance(samples, Mapping):
        arranged = {
            k: _arrange(v, layout, "summary", f"the value of {k!r}") for k, v in samples.items()
        }
    else:
        raise TypeError(
            "summary: takes the result of mcmc() or chain() or {name: array} with layout=; got "
            f"{type(samples).__name__} (for one array: summary({{'x': draws}}, layout=...))"
        )
    g = _sharding.group_for(group, "summary")
    if g is not None:
        from genmlx.infer.distributed._comm import local_only

        gathered = {n: _all_chains(v, g, "summary") for n, v in arranged.items()}
        with local_only():
            return summary(gathered, layout="chain_draw")
    table = SummaryTable()
    for name, value in arranged.items():
        name = name if isinstance(name, str) else format_address(name)
        x, param_shape = _as_3d(value)
        flat = x.reshape(-1, x.shape[2])
        srt = mx.sort(flat, axis=0)
        cols = {
            "mean": mx.mean(flat, axis=0),
            "sd": mx.std(flat, axis=0, ddof=1),
            "q5": _type7_quantile(srt, 0.05),
            "q50": _type7_quantile(srt, 0.5),
            "q95": _type7_quantile(srt, 0.95),
            "ess_bulk": ess_bulk(x, layout="chain_draw").reshape(-1),
            "ess_tail": ess_tail(x, layout="chain_draw").reshape(-1),
            "r_hat": rhat(x, layout="chain_draw").reshape(-1),
        }
        mx.eval(cols)
        values: dict[str, list[float]] = {c: cast(list[float], v.tolist()) for c, v in cols.items()}
        for i in range(x.shape[2]):
            if param_shape:
                index = _unravel(i, param_shape)
                label = f"{name}[{', '.join(str(j) for j in index)}]"
            else:
                label = name
            table[label] = {c: float(values[c][i]) for c in _SUMMARY_COLUMNS}
    return table


def _unravel(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for dim in reversed(shape):
        out.append(i % dim)
        i //= dim
    return tuple(reversed(out))
