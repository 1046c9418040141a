"""MCMC chains: trace plots and rank plots (Vehtari et al. 2021)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from genmlx.viz._common import PALETTE, check_bins, hist_edges, new_figure
from genmlx.viz._inputs import collect_chains, expand_chains

__all__ = ["binomial_interval", "plot_chains", "plot_ranks", "pooled_ranks"]


def _check_max_chains(max_chains: Any, op: str) -> int:
    if isinstance(max_chains, bool) or not isinstance(max_chains, int) or max_chains < 1:
        raise ValueError(f"{op}: max_chains must be a positive int, got {max_chains!r}")
    return max_chains


def _chain_note(n_chains: int, shown: int) -> str:
    if shown < n_chains:
        return f"chains 0-{shown - 1} of {n_chains}"
    return "1 chain" if n_chains == 1 else f"{n_chains} chains"


def plot_chains(
    chains: Any,
    addresses: Any = None,
    *,
    bins: int = 30,
    max_chains: int = 8,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Trace plots: each variable's draws against the draw index, one line per chain.

    One row per scalar variable with two axes: on the left each chain's marginal as a
    step histogram (``density=True``, shared bin edges, so chains that disagree stand
    out), on the right each chain's draws ``x_{c,d}`` against ``d``. Chains that mix
    well overlap on both sides.

    Args:
        chains: a chain result of ``genmlx.infer.chain`` (its trace's batch axis holds
            the chains) or a dict ``{address: [chains, draws, ...]}`` (a 1-D array is one
            chain).
        addresses: an address or a list of them (default: every recorded address).
        bins: histogram bins.
        max_chains: draw at most this many chains (the first ones).
        fig: an empty figure to draw into.
        figsize: the figure size (default: 8 x 2 inches per variable).
        title: the figure title.

    Returns:
        The figure, with ``2 × number of variables`` axes, row by row (histogram, trace).

    Example:
        >>> import numpy as np
        >>> draws = np.random.default_rng(0).normal(size=(4, 200))
        >>> fig = plot_chains({"mu": draws})
        >>> len(fig.axes), len(fig.axes[1].get_lines())
        (2, 4)
    """
    bins = check_bins(bins, "plot_chains")
    max_chains = _check_max_chains(max_chains, "plot_chains")
    ch = collect_chains(chains, addresses, "plot_chains")
    variables = expand_chains(ch, "plot_chains")
    n_show = min(ch.n_chains, max_chains)
    n = len(variables)
    fig = new_figure(fig, figsize or (8.0, 0.6 + 2.0 * n), "plot_chains")
    gs = fig.add_gridspec(n, 2, width_ratios=(1, 2.6))
    draw_idx = np.arange(ch.n_draws)
    for r, (label, x) in enumerate(variables):
        ax_h = fig.add_subplot(gs[r, 0])
        ax_t = fig.add_subplot(gs[r, 1], sharey=ax_h)
        edges = hist_edges(x[:n_show].ravel(), bins, False)
        for c in range(n_show):
            color = PALETTE[c % len(PALETTE)]
            ax_h.hist(
                x[c],
                bins=edges.tolist(),
                density=True,
                histtype="step",
                orientation="horizontal",
                color=color,
                lw=1.2,
            )
            ax_t.plot(draw_idx, x[c], color=color, lw=0.7, alpha=0.8)
        ax_h.set_ylabel(label)
        ax_h.set_xlabel("density")
        ax_h.invert_xaxis()
        ax_t.set_xlabel("draw")
        ax_t.set_title(label, fontsize=10)
        ax_t.tick_params(labelleft=False)
        ax_t.set_xlim(0, max(ch.n_draws - 1, 1))
    note = _chain_note(ch.n_chains, n_show)
    fig.suptitle(title if title is not None else f"chains ({note}, {ch.n_draws} draws each)")
    return fig


def pooled_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks ``1..S`` of all ``S = C·D`` draws pooled over chains (ties: average rank).

    Args:
        x: draws ``[C, D]``.

    Returns:
        Ranks with the same shape (float64).

    Example:
        >>> pooled_ranks(np.array([[3.0, 1.0], [2.0, 2.0]])).tolist()
        [[4.0, 1.0], [2.5, 2.5]]
    """
    flat = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    srt = flat[order]
    # first position of each run of equal values, and run lengths
    starts = np.flatnonzero(np.r_[True, srt[1:] != srt[:-1]])
    lengths = np.diff(np.r_[starts, srt.size])
    avg = starts + (lengths + 1) / 2.0  # average of the 1-based positions in the run
    ranks = np.empty_like(flat)
    ranks[order] = np.repeat(avg, lengths)
    return ranks.reshape(np.shape(x))


def binomial_interval(n: int, p: float, level: float = 0.99) -> tuple[int, int]:
    """The central ``level`` interval ``[lo, hi]`` of Binomial(``n``, ``p``) counts.

    ``lo`` is the largest ``k`` with ``P(X < k) ≤ (1 − level)/2`` and ``hi`` the
    smallest with ``P(X > hi) ≤ (1 − level)/2`` (exact, from the pmf in log space).

    Example:
        >>> binomial_interval(100, 0.5, 0.95)
        (40, 60)
    """
    k = np.arange(n + 1)
    # log pmf(k+1) - log pmf(k) = log((n - k) / (k + 1)) + log(p / (1 - p))
    steps = np.log((n - k[:-1]) / (k[:-1] + 1.0)) + math.log(p) - math.log1p(-p)
    logpmf = n * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)])
    pmf = np.exp(logpmf)
    cdf = np.cumsum(pmf)
    tail = (1.0 - level) / 2.0
    below = np.concatenate([[0.0], cdf[:-1]])  # P(X < k)
    lo = int(k[below <= tail].max())
    above = 1.0 - cdf  # P(X > k)
    hi = int(k[above <= tail + 1e-12].min())
    return lo, hi


def plot_ranks(
    chains: Any,
    addresses: Any = None,
    *,
    bins: int | None = None,
    max_chains: int = 8,
    level: float = 0.99,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Rank plots (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021).

    All ``S = C·D`` draws of a variable are ranked together (pooled over chains,
    average ranks for ties); each chain's ranks are then binned into ``B`` equal bins
    of the scaled rank ``(r − ½)/S ∈ (0, 1)``. If every chain samples the same
    distribution, each chain's ranks are uniform: its bin counts are about
    ``D/B`` (dashed line), within the central ``level`` Binomial(``D``, ``1/B``)
    interval (shaded band) for most bins. One axes per variable; chain ``c``'s
    histogram is stacked at height ``c`` (bars scaled by one factor per axes, so all
    chains compare directly).

    Args:
        chains: a chain result or a dict ``{address: [chains, draws, ...]}``.
        addresses: an address or a list of them (default: every recorded address).
        bins: ``B`` (default ``min(20, max(1, D // 10))``).
        max_chains: draw at most this many chains (ranks still pool all of them).
        level: probability of the shaded uniformity band.
        fig: an empty figure to draw into.
        figsize: the figure size.
        title: the figure title.

    Returns:
        The figure with one axes per scalar variable.

    Example:
        >>> import numpy as np
        >>> draws = np.random.default_rng(0).normal(size=(4, 400))
        >>> fig = plot_ranks({"mu": draws}, bins=10)
        >>> len(fig.axes), [len(bars) for bars in fig.axes[0].containers]
        (1, [10, 10, 10, 10])
    """
    max_chains = _check_max_chains(max_chains, "plot_ranks")
    if not 0.0 < level < 1.0:
        raise ValueError(f"plot_ranks: level must be in (0, 1), got {level!r}")
    ch = collect_chains(chains, addresses, "plot_ranks")
    variables = expand_chains(ch, "plot_ranks")
    d = ch.n_draws
    b = min(20, max(1, d // 10)) if bins is None else check_bins(bins, "plot_ranks")
    n_show = min(ch.n_chains, max_chains)
    n = len(variables)
    rows, cols = math.ceil(n / 3), min(n, 3)
    size = (4.2 * cols, 0.6 + (0.7 * n_show + 0.8) * rows)
    fig = new_figure(fig, figsize or size, "plot_ranks")
    gs = fig.add_gridspec(rows, cols)
    edges = np.linspace(0.0, 1.0, b + 1)
    lo, hi = binomial_interval(d, 1.0 / b, level)
    expected = d / b
    for v, (label, x) in enumerate(variables):
        ax = fig.add_subplot(gs[v // 3, v % 3])
        s = x.size
        scaled = (pooled_ranks(x) - 0.5) / s
        counts = np.stack([np.histogram(scaled[c], bins=edges)[0] for c in range(n_show)])
        scale = 0.9 / max(float(counts.max()), hi, 1.0)
        for c in range(n_show):
            ax.axhspan(c + lo * scale, c + hi * scale, color="0.85", lw=0)
            ax.bar(
                edges[:-1],
                counts[c] * scale,
                width=1.0 / b,
                bottom=c,
                align="edge",
                color=PALETTE[c % len(PALETTE)],
                edgecolor="white",
                lw=0.5,
            )
            ax.axhline(c + expected * scale, color="0.2", ls="--", lw=0.8)
        ax.set_yticks(np.arange(n_show) + 0.45, [str(c) for c in range(n_show)])
        ax.set_ylabel("chain")
        ax.set_xlabel("scaled rank (r − ½)/S")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(-0.05, n_show)
        ax.set_title(label, fontsize=10)
    note = _chain_note(ch.n_chains, n_show)
    fig.suptitle(title if title is not None else f"rank plots ({note}, {d} draws each, {b} bins)")
    return fig
