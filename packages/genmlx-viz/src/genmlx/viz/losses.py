"""ELBO and loss curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from genmlx.viz._common import PALETTE, new_figure
from genmlx.viz._inputs import as_numpy

__all__ = ["moving_average", "plot_losses"]

# what a result's history is called: VI results (elbo_history), then any result's
# history (genmlx's result vocabulary), then the deprecated loss_history of old results
_HISTORY_ATTRS = (("elbo_history", "ELBO"), ("history", "loss"), ("loss_history", "loss"))


def moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average: entry ``k`` is ``mean(y[k : k + window])``.

    The result has ``len(y) − window + 1`` entries and belongs to steps
    ``window − 1, ..., len(y) − 1`` (each point averages the ``window`` steps ending
    there).

    Example:
        >>> moving_average(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()
        [1.5, 2.5, 3.5]
    """
    c = np.cumsum(np.concatenate([[0.0], np.asarray(y, dtype=np.float64)]))
    return (c[window:] - c[:-window]) / window


def _series(history: Any, labels: Sequence[str] | None) -> tuple[list[tuple[str, np.ndarray]], str]:
    """``[(label, values)]`` and the default y label."""
    ylabel = "loss"
    for attr, name in _HISTORY_ATTRS:
        if not isinstance(history, Mapping) and hasattr(history, attr):
            history = getattr(history, attr)
            ylabel = name
            break
    items: list[tuple[str | None, Any]]
    if isinstance(history, Mapping):
        items = [(str(k), v) for k, v in history.items()]
    elif (
        isinstance(history, (list, tuple))
        and history
        and all(np.ndim(as_numpy(h)) >= 1 for h in history)
    ):
        items = [(None, h) for h in history]
    else:
        items = [(None, history)]
    if labels is not None:
        if isinstance(labels, str) or len(labels) != len(items):
            raise ValueError(
                f"plot_losses: labels must be a list of {len(items)} names (one per series), "
                f"got {labels!r}"
            )
        items = [(str(lab), v) for lab, (_, v) in zip(labels, items)]
    out: list[tuple[str, np.ndarray]] = []
    for i, (lab, v) in enumerate(items):
        arr = as_numpy(v).astype(np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"plot_losses: series {lab or i} must be a non-empty 1-D sequence of numbers, "
                f"got shape {arr.shape}"
            )
        out.append((lab if lab is not None else ("" if len(items) == 1 else f"series {i}"), arr))
    return out, ylabel


def plot_losses(
    history: Any,
    *,
    labels: Sequence[str] | None = None,
    window: int | None = None,
    logy: bool = False,
    xlabel: str = "step",
    ylabel: str | None = None,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Plot one or several training curves (ELBO, loss) against the step.

    Series ``k`` is drawn at steps ``0..len−1``. With ``window``, the raw curve is
    drawn faint and a trailing moving average (:func:`moving_average`: the mean of the
    ``window`` values ending at each step, from step ``window − 1`` on) on top.

    Args:
        history: a 1-D array or list of numbers, a list of such series, a dict
            ``{label: series}``, or a result with ``elbo_history`` or ``history``
            (a VI or training result).
        labels: names for the series (legend), one per series.
        window: moving-average window (``None``: no smoothing).
        logy: logarithmic y axis (every value must be positive).
        xlabel: x-axis label.
        ylabel: y-axis label (default ``"ELBO"`` for an ``elbo_history``, else
            ``"loss"``).
        fig: an empty figure to draw into.
        figsize: the figure size.
        title: the title.

    Returns:
        The figure (one axes; one line per series, two with smoothing).

    Example:
        >>> fig = plot_losses({"run a": [3.0, 2.0, 1.5, 1.2], "run b": [3.0, 2.5, 2.0, 1.9]})
        >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        ['run a', 'run b']
    """
    series, default_ylabel = _series(history, labels)
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"plot_losses: window must be a positive int, got {window!r}")
        short = [lab or "the series" for lab, y in series if y.size < window]
        if short:
            raise ValueError(
                f"plot_losses: window={window} is longer than {', '.join(short)}; "
                "use a smaller window"
            )
    if logy and any((y <= 0).any() for _, y in series):
        raise ValueError(
            "plot_losses: logy=True needs positive values (an ELBO is usually negative; "
            "plot -ELBO or use logy=False)"
        )
    fig = new_figure(fig, figsize or (6.4, 3.6), "plot_losses")
    ax = fig.add_subplot()
    for k, (lab, y) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        steps = np.arange(y.size)
        if window is None or window == 1:
            ax.plot(steps, y, color=color, lw=1.5, label=lab or None)
        else:
            ax.plot(steps, y, color=color, lw=0.8, alpha=0.3)
            ax.plot(
                steps[window - 1 :],
                moving_average(y, window),
                color=color,
                lw=1.8,
                label=lab or None,
            )
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel if ylabel is not None else default_ylabel)
    if any(lab for lab, _ in series):
        ax.legend()
    ax.grid(True, alpha=0.3)
    if title is not None:
        ax.set_title(title)
    elif window is not None and window > 1:
        ax.set_title(f"moving average over {window} steps")
    return fig
