"""Shared pieces of the plots: figures, histogram bins, weighted statistics and KDEs.

Figures are made with :class:`matplotlib.figure.Figure` directly, never through
``pyplot``: no global state, nothing shown, nothing kept alive by a figure manager.
Every plotting function also accepts ``fig=`` (an empty figure, e.g. from
``plt.figure()``) to draw into.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "PALETTE",
    "WEIGHTED_TAIL",
    "axes_grid",
    "check_bins",
    "grid_shape",
    "hist_edges",
    "kde_bandwidth",
    "kish_ess",
    "new_figure",
    "value_range",
    "weighted_kde",
    "weighted_mean_sd",
    "weighted_quantile",
]

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
"""Colours of successive series (matplotlib's ``tab10``), fixed so figures do not
depend on the user's property cycle."""

_KDE_GRID = 200
_KDE_CHUNK = 4096
_DISCRETE_MAX_RANGE = 60


def new_figure(fig: Figure | None, figsize: tuple[float, float], op: str) -> Figure:
    """A new constrained-layout figure of ``figsize``, or ``fig`` checked to be empty."""
    if fig is None:
        return Figure(figsize=figsize, layout="constrained")
    if not isinstance(fig, Figure):
        raise TypeError(f"{op}: fig must be a matplotlib Figure, got {type(fig).__name__}")
    if fig.axes:
        raise ValueError(f"{op}: fig already holds axes; pass an empty figure (or none)")
    fig.set_layout_engine("constrained")
    return fig


def grid_shape(n: int, ncols: int | None, op: str) -> tuple[int, int]:
    """``(rows, cols)`` for ``n`` panels, at most ``ncols`` (default 3) per row."""
    if ncols is None:
        ncols = min(n, 3)
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"{op}: ncols must be a positive int, got {ncols!r}")
    cols = min(n, ncols)
    return math.ceil(n / cols), cols


def axes_grid(fig: Figure, n: int, ncols: int | None, op: str) -> list[Axes]:
    """``n`` axes on a grid; the unused cells of the last row are left empty."""
    rows, cols = grid_shape(n, ncols, op)
    gs = fig.add_gridspec(rows, cols)
    return [fig.add_subplot(gs[i // cols, i % cols]) for i in range(n)]


def check_bins(bins: Any, op: str) -> int:
    """``bins`` as a positive int."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"{op}: bins must be a positive int, got {bins!r}")
    return int(bins)


WEIGHTED_TAIL = 0.001
"""Weight left out of the plotted range on each side for weighted particles."""


def weighted_quantile(values: np.ndarray, weights: np.ndarray, p: float) -> float:
    """The smallest value whose cumulative normalised weight (values sorted) is ``≥ p``.

    Example:
        >>> weighted_quantile(np.array([3.0, 1.0, 2.0]), np.array([0.2, 0.5, 0.3]), 0.6)
        2.0
    """
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    k = int(np.searchsorted(cum, p * cum[-1], side="left"))
    return float(values[order][min(k, values.size - 1)])


def value_range(values: np.ndarray, weights: np.ndarray | None) -> tuple[float, float]:
    """The plotted range: ``[min, max]`` of the finite values, or for weighted
    particles the central range holding all but ``WEIGHTED_TAIL`` of the weight on each
    side (weighted quantiles ``0.001`` and ``0.999``), so particles of negligible weight
    far out (common with importance sampling) do not squash the plot."""
    ok = np.isfinite(values)
    if not ok.any():
        return -0.5, 0.5
    if weights is None:
        return float(values[ok].min()), float(values[ok].max())
    v, w = values[ok], weights[ok]
    return (
        weighted_quantile(v, w, WEIGHTED_TAIL),
        weighted_quantile(v, w, 1.0 - WEIGHTED_TAIL),
    )


def hist_edges(
    values: np.ndarray, bins: int, discrete: bool, weights: np.ndarray | None = None
) -> np.ndarray:
    """Bin edges: one bin per integer for discrete values with a small range, else
    ``bins`` equal bins over :func:`value_range` (NumPy's ``histogram_bin_edges``
    with ``range=``; a zero-width range becomes ``lo ± 0.5``)."""
    lo, hi = value_range(values, weights)
    if discrete and hi - lo <= _DISCRETE_MAX_RANGE:
        return np.arange(lo - 0.5, hi + 1.5)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.histogram_bin_edges(np.array([lo, hi]), bins=bins, range=(lo, hi))


def weighted_mean_sd(values: np.ndarray, weights: np.ndarray | None) -> tuple[float, float]:
    """Weighted mean ``Σ w x`` and standard deviation ``sqrt(Σ w (x − mean)²)``."""
    if weights is None:
        return float(values.mean()), float(values.std())
    m = float(np.sum(weights * values))
    return m, float(math.sqrt(max(float(np.sum(weights * (values - m) ** 2)), 0.0)))


def kish_ess(weights: np.ndarray | None, n: int) -> float:
    """Kish's effective sample size ``1 / Σ w̄²`` (``n`` for equal weights)."""
    if weights is None:
        return float(n)
    return float(1.0 / np.sum(weights**2))


def kde_bandwidth(values: np.ndarray, weights: np.ndarray | None) -> float:
    """Scott's rule with the effective sample size: ``h = σ̂_w · ESS^(-1/5)``.

    A zero spread (all values equal) falls back to ``1e-3 · max(1, |x|)``.
    """
    _, sd = weighted_mean_sd(values, weights)
    ess = kish_ess(weights, values.size)
    h = sd * ess ** (-0.2)
    if not h > 0:
        h = 1e-3 * max(1.0, float(np.abs(values).max()))
    return h


def weighted_kde(
    values: np.ndarray, weights: np.ndarray | None, grid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian kernel density estimate ``f(x) = Σ_i w_i φ((x − x_i)/h) / h``.

    ``w_i`` are the normalised weights (``1/N`` if ``None``) and ``h`` is
    :func:`kde_bandwidth`. The grid (default: 200 points from ``lo − 3h`` to
    ``hi + 3h``, ``[lo, hi]`` = :func:`value_range`) is evaluated in chunks of
    particles, so memory stays ``O(grid · 4096)`` for any ``N``.

    Returns:
        ``(grid, density)``.
    """
    h = kde_bandwidth(values, weights)
    if grid is None:
        lo, hi = value_range(values, weights)
        grid = np.linspace(lo - 3 * h, hi + 3 * h, _KDE_GRID)
    w = np.full(values.size, 1.0 / values.size) if weights is None else weights
    dens = np.zeros_like(grid, dtype=np.float64)
    norm = 1.0 / (h * math.sqrt(2.0 * math.pi))
    for start in range(0, values.size, _KDE_CHUNK):
        x = values[start : start + _KDE_CHUNK]
        z = (grid[:, None] - x[None, :]) / h
        dens += np.exp(-0.5 * z * z) @ w[start : start + _KDE_CHUNK]
    return grid, dens * norm
