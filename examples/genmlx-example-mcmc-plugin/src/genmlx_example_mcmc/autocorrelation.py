"""``plot_autocorrelation``: how fast each chain forgets, lag by lag."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["autocorrelation", "plot_autocorrelation"]


def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation ``ρ_k = Σ_t (x_t − x̄)(x_{t+k} − x̄) / Σ_t (x_t − x̄)²``.

    Args:
        x: draws ``[draws, chains]`` (each column one chain).
        max_lag: the largest lag ``k`` (``< draws``).

    Returns:
        ``[max_lag + 1, chains]``; ``ρ_0 = 1`` (a constant chain gives NaN).

    Example:
        >>> import numpy as np
        >>> np.round(autocorrelation(np.array([[1.0], [-1.0], [1.0], [-1.0]]), 2)[:, 0], 3)
        array([ 1.  , -0.75,  0.5 ])
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    c = x - x.mean(axis=0)
    f = np.fft.rfft(c, n=2 * n, axis=0)  # zero-padded: no wrap-around
    acov = np.fft.irfft(f * np.conj(f), axis=0)[: max_lag + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = acov / acov[:1]
    return out


def _samples(chains: Any) -> Mapping[Any, Any]:
    samples = getattr(chains, "samples", None)
    if not isinstance(samples, Mapping) or not samples:
        raise TypeError(
            "plot_autocorrelation: pass a chain result (genmlx.infer.chain(...) with "
            f"addresses=...), got {type(chains).__name__}"
        )
    return samples


def plot_autocorrelation(
    chains: Any,
    addresses: Sequence[Any] | None = None,
    *,
    max_lag: int = 30,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Autocorrelation of each recorded variable: one faint line per chain, their mean bold.

    The band is ``±1.96/√D`` (``D`` draws), where the autocorrelation of independent
    draws falls 95% of the time.

    Args:
        chains: a chain result (``.samples[address]`` of shape ``[draws, chains, ...]``).
        addresses: which recorded addresses (default: all).
        max_lag: the largest lag shown (capped at ``draws − 1``).
        fig: an empty figure to draw into (default: a new one).
        figsize: the new figure's size.
        title: the figure's title.

    Returns:
        The figure.
    """
    samples = _samples(chains)
    keys = list(samples) if addresses is None else list(addresses)
    columns: list[tuple[str, np.ndarray]] = []
    for a in keys:
        arr = np.asarray(samples[a], dtype=np.float64)
        flat = arr.reshape(arr.shape[0], arr.shape[1] if arr.ndim > 1 else 1, -1)
        for j in range(flat.shape[2]):
            columns.append((str(a) if flat.shape[2] == 1 else f"{a}[{j}]", flat[:, :, j]))
    if fig is None:
        fig = Figure(figsize=figsize or (5.0, 2.2 * len(columns)), layout="constrained")
    elif fig.axes:
        raise ValueError("plot_autocorrelation: fig must be empty")
    axes = fig.subplots(len(columns), 1, squeeze=False)[:, 0]
    for ax, (label, x) in zip(axes, columns):
        lag = min(max_lag, x.shape[0] - 1)
        rho = autocorrelation(x, lag)
        lags = np.arange(lag + 1)
        for c in range(rho.shape[1]):
            ax.plot(lags, rho[:, c], color="#1f77b4", alpha=0.3, linewidth=0.8)
        ax.plot(lags, np.nanmean(rho, axis=1), color="#1f77b4", linewidth=2.0, label="mean")
        band = 1.96 / np.sqrt(x.shape[0])
        ax.axhspan(-band, band, color="0.85", zorder=0)
        ax.axhline(0.0, color="0.3", linewidth=0.6)
        ax.set_ylabel(f"ρ ({label})")
        ax.set_ylim(-1.05, 1.05)
    axes[-1].set_xlabel("lag")
    if title:
        fig.suptitle(title)
    return fig
