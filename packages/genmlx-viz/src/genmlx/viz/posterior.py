"""Posterior marginals and pairwise plots from samples or weighted particles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from genmlx.viz._common import (
    PALETTE,
    axes_grid,
    check_bins,
    grid_shape,
    hist_edges,
    kish_ess,
    new_figure,
    value_range,
    weighted_kde,
    weighted_mean_sd,
)
from genmlx.viz._inputs import Column, Samples, collect_samples

__all__ = ["plot_pairs", "plot_posterior"]

_KINDS = ("hist", "kde", "both")


def _source_text(samples: Samples) -> str:
    if samples.weights is None:
        return f"{samples.n} samples"
    return f"{samples.n} weighted particles, ESS {kish_ess(samples.weights, samples.n):.1f}"


def _present(col: Column, samples: Samples) -> tuple[np.ndarray, np.ndarray | None]:
    """The column's values where the choice exists, and their normalised weights."""
    w = samples.column_weights(col)
    if col.present is None:
        return col.values, w
    keep = col.present
    x = col.values[keep]
    if w is None:
        return x, None
    wk = w[keep]
    return x, wk / wk.sum()


def _padded(lim: tuple[float, float]) -> tuple[float, float]:
    pad = 0.05 * (lim[1] - lim[0]) if lim[1] > lim[0] else 0.5
    return lim[0] - pad, lim[1] + pad


def _truth_for(truths: Mapping[Any, float] | None, col: Column) -> float | None:
    if not truths:
        return None
    for key in (col.label, col.base):
        if key in truths:
            v = truths[key]
            arr = np.asarray(v, dtype=np.float64)
            return float(arr[col.index] if arr.ndim else arr)
    return None


def _marginal(
    ax: Axes,
    x: np.ndarray,
    w: np.ndarray | None,
    discrete: bool,
    kind: str,
    bins: int,
    color: str,
) -> None:
    """A density-normalised (weighted) histogram and/or KDE of ``x`` on ``ax``."""
    if kind in ("hist", "both") or discrete:  # a KDE of integers would invent mass between them
        edges = hist_edges(x, bins, discrete, w)
        ax.hist(x, bins=edges.tolist(), weights=w, density=True, color=color, alpha=0.55)
    if kind in ("kde", "both") and not discrete:
        grid, dens = weighted_kde(x, w)
        ax.plot(grid, dens, color=color, lw=1.6)


def plot_posterior(
    traces_or_samples: Any,
    addresses: Any = None,
    *,
    weights: Any = None,
    kind: str = "hist",
    bins: int = 30,
    truths: Mapping[Any, float] | None = None,
    ncols: int | None = None,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Plot the posterior marginal of each address (weighted histogram and/or KDE).

    Each panel estimates the marginal density of one scalar variable,
    ``p̂(x) = Σ_i w̄_i δ(x − x_i)`` smoothed into a histogram (``density=True``: bar
    height = weight in the bin / bin width) or a Gaussian KDE
    ``Σ_i w̄_i φ((x − x_i)/h)/h`` (Scott's ``h`` with the Kish ESS). The weights
    ``w̄_i`` are the normalised importance weights of weighted particles (``ISResult``,
    ``ParticleFilterState``: ``softmax(log_weights)``), the ``weights`` given, or
    ``1/N``. Vector-valued choices are split into components (``ys[0]``, ...); integer
    and boolean choices always get a histogram with one bin per value (no KDE). For
    weighted particles the bins (and the KDE's grid) span the central range holding
    all but 0.1 % of the weight on each side, so far-out particles of negligible
    weight do not squash the plot; the histogram's density is then normalised over
    that range. A masked choice (a ``Switch`` branch) is
    drawn over the particles that have it. The panel's title gives the weighted mean
    and standard deviation.

    Args:
        traces_or_samples: a batched trace (leaves ``[N, ...]``), a list of traces, a
            ChoiceMap with batched leaves, a dict ``{address: [N, ...]}``, a weighted
            particle collection (``.traces`` and ``.log_weights``) or a chain result of
            ``genmlx.infer.chain`` (its chains pooled).
        addresses: an address or a list of them (default: every address).
        weights: non-negative weights ``[N]`` for plain samples (any scale).
        kind: ``"hist"``, ``"kde"`` or ``"both"``.
        bins: number of histogram bins (continuous values).
        truths: ``{address or label: value}`` drawn as dashed vertical lines.
        ncols: panels per row (default up to 3).
        fig: an empty figure to draw into (default: a new one).
        figsize: the figure size (default: 3.2 x 2.6 inches per panel).
        title: the figure title (default: how many samples, and the ESS if weighted).

    Returns:
        The figure (one axes per scalar variable).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=1000)
        >>> fig = plot_posterior({"mu": x}, ["mu"])
        >>> len(fig.axes), fig.axes[0].get_xlabel()
        (1, 'mu')
    """
    if kind not in _KINDS:
        raise ValueError(f"plot_posterior: kind must be one of {_KINDS}, got {kind!r}")
    bins = check_bins(bins, "plot_posterior")
    samples = collect_samples(traces_or_samples, addresses, weights, "plot_posterior")
    cols = samples.columns("plot_posterior")
    n_rows, n_cols = grid_shape(len(cols), ncols, "plot_posterior")
    fig = new_figure(fig, figsize or (3.2 * n_cols, 0.6 + 2.6 * n_rows), "plot_posterior")
    axes = axes_grid(fig, len(cols), ncols, "plot_posterior")
    for ax, col in zip(axes, cols):
        x, w = _present(col, samples)
        _marginal(ax, x, w, col.discrete, kind, bins, PALETTE[0])
        t = _truth_for(truths, col)
        if t is not None:
            ax.axvline(t, color=PALETTE[3], ls="--", lw=1.4)
        m, sd = weighted_mean_sd(x, w)
        ax.set_title(f"{col.label}: mean {m:.3g}, sd {sd:.3g}", fontsize=10)
        ax.set_xlabel(col.label)
        ax.set_ylabel("density")
    fig.suptitle(title if title is not None else f"posterior marginals ({_source_text(samples)})")
    return fig


def plot_pairs(
    traces_or_samples: Any,
    addresses: Any = None,
    *,
    weights: Any = None,
    kind: str = "scatter",
    bins: int = 30,
    point_size: float = 6.0,
    max_points: int | None = 5000,
    truths: Mapping[Any, float] | None = None,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Pairwise joint plots: marginals on the diagonal, pairs below it.

    A lower-triangular grid over ``k ≥ 2`` scalar variables. The diagonal holds each
    marginal's (weighted) density histogram as in :func:`plot_posterior`. Below it,
    panel ``(i, j)`` shows variable ``j`` (x axis) against variable ``i`` (y axis):

    * ``kind="scatter"``: one point per sample; with weights, point ``i``'s area is
      ``point_size · N · w̄_i`` (equal weights give ``point_size``), so the cloud shows
      the weighted posterior. ``max_points`` keeps the first that many samples
      (``None``: all).
    * ``kind="hist2d"``: a 2-D histogram of the weights, ``density=True`` (the colour
      is the estimated joint density), from all samples.

    Args:
        traces_or_samples: as for :func:`plot_posterior`.
        addresses: the addresses (at least two scalar variables after splitting
            vector-valued choices; default: every address).
        weights: non-negative weights ``[N]`` for plain samples.
        kind: ``"scatter"`` or ``"hist2d"``.
        bins: bins per axis (histograms).
        point_size: marker area in points² for an average-weight sample.
        max_points: most points per scatter panel.
        truths: ``{address or label: value}`` marked on every panel.
        fig: an empty figure to draw into.
        figsize: the figure size (default: 2.4 inches per variable).
        title: the figure title.

    Returns:
        The figure with ``k (k + 1) / 2`` axes (diagonal first in each row).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> fig = plot_pairs({"a": rng.normal(size=500), "b": rng.normal(size=500)})
        >>> len(fig.axes)
        3
    """
    if kind not in ("scatter", "hist2d"):
        raise ValueError(f"plot_pairs: kind must be 'scatter' or 'hist2d', got {kind!r}")
    bins = check_bins(bins, "plot_pairs")
    if max_points is not None and (
        isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1
    ):
        raise ValueError(
            f"plot_pairs: max_points must be a positive int or None, got {max_points!r}"
        )
    samples = collect_samples(traces_or_samples, addresses, weights, "plot_pairs")
    cols = samples.columns("plot_pairs", max_variables=12)
    k = len(cols)
    if k < 2:
        raise ValueError(
            f"plot_pairs: needs at least two scalar variables, got {k} "
            f"({', '.join(c.label for c in cols)}); use plot_posterior for one"
        )
    fig = new_figure(fig, figsize or (2.4 * k + 0.4, 2.4 * k + 0.4), "plot_pairs")
    gs = fig.add_gridspec(k, k)
    axes: dict[tuple[int, int], Axes] = {}
    for i in range(k):
        for j in range(i + 1):
            share_x = axes.get((j, j)) if i != j else None
            share_y = axes.get((i, 0)) if 0 < j < i else None
            ax = fig.add_subplot(gs[i, j], sharex=share_x, sharey=share_y)
            axes[(i, j)] = ax
    for i, ci in enumerate(cols):
        x, w = _present(ci, samples)
        _marginal(axes[(i, i)], x, w, ci.discrete, "hist", bins, PALETTE[0])
        axes[(i, i)].set_yticks([])
        t = _truth_for(truths, ci)
        if t is not None:
            axes[(i, i)].axvline(t, color=PALETTE[3], ls="--", lw=1.2)
        for j in range(i):
            cj = cols[j]
            ax = axes[(i, j)]
            both = np.ones(samples.n, bool)
            for c in (ci, cj):
                if c.present is not None:
                    both &= c.present
            xs, ys = cj.values[both], ci.values[both]
            ww = None if samples.weights is None else samples.weights[both]
            if ww is not None:
                ww = ww / ww.sum()
            if kind == "scatter":
                m = xs.size if max_points is None else min(xs.size, max_points)
                sizes: Any = point_size if ww is None else point_size * xs.size * ww[:m]
                ax.scatter(xs[:m], ys[:m], s=sizes, color=PALETTE[0], alpha=0.5, linewidths=0)
                if ww is not None:  # keep the weighted range, as on the diagonal
                    ax.set_xlim(*_padded(value_range(xs, ww)))
                    ax.set_ylim(*_padded(value_range(ys, ww)))
            else:
                ex = hist_edges(xs, bins, cj.discrete, ww)
                ey = hist_edges(ys, bins, ci.discrete, ww)
                h, _, _ = np.histogram2d(xs, ys, bins=(ex, ey), weights=ww, density=True)
                ax.pcolormesh(ex, ey, h.T, cmap="Blues", shading="flat")
            tx, ty = _truth_for(truths, cj), _truth_for(truths, ci)
            if tx is not None and ty is not None:
                ax.plot([tx], [ty], marker="x", color=PALETTE[3], ms=8, mew=2)
    for (i, j), ax in axes.items():
        if i == k - 1:
            ax.set_xlabel(cols[j].label)
        else:
            ax.tick_params(labelbottom=False)
        if j == 0 and i > 0:
            ax.set_ylabel(cols[i].label)
        elif i != j:
            ax.tick_params(labelleft=False)
    # the diagonal of the first row carries the first variable's name
    axes[(0, 0)].set_title(cols[0].label, fontsize=10)
    for i in range(1, k):
        axes[(i, i)].set_title(cols[i].label, fontsize=10)
    fig.suptitle(title if title is not None else f"pairs ({_source_text(samples)})")
    return fig
