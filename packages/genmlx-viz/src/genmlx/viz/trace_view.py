"""The trace view: every random choice of a trace with its value and log density."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from genmlx.core import Trace
from genmlx.core.address import Path
from genmlx.viz._common import PALETTE, new_figure
from genmlx.viz._inputs import address_label, as_numpy

__all__ = ["plot_trace", "trace_sites"]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _value_text(v: np.ndarray) -> str:
    """A short rendering of a value: ``0.123``, ``[0.1, 2, 3.4]``, ``[5x3] mean 0.2``."""
    if v.ndim == 0:
        return str(bool(v)) if v.dtype == np.bool_ else _fmt(float(v))
    if v.size <= 4 and v.ndim == 1:
        return "[" + ", ".join(_fmt(float(x)) for x in v) + "]"
    shape = "x".join(map(str, v.shape))
    return f"[{shape}] mean {_fmt(float(v.astype(np.float64).mean()))}"


def trace_sites(trace: Trace, particle: int | None = None) -> list[tuple[str, str, float, float]]:
    """The rows of the trace view: ``(address, value text, log density, spread)``.

    For an unbatched trace (or ``particle=i`` of a batched one) the log density is the
    site's ``log p(value)`` from :meth:`~genmlx.core.Trace.site_scores` and the spread
    is 0. For a batched trace without ``particle`` it is the mean over particles and the
    spread their standard deviation; the value text is the particles' mean ± sd.
    A site whose path is a sub-call (a generative function that reports one score for
    all its choices) shows how many choices it holds.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     normal(0.0, 1.0) @ "x"
        >>> rows = trace_sites(model.simulate((), key=mx.random.key(0)))
        >>> [r[0] for r in rows]
        ['x']
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"plot_trace: expected a Trace, got {type(trace).__name__}")
    bs = trace.batch_shape
    if particle is not None:
        if len(bs) != 1:
            raise ValueError(
                f"plot_trace: particle={particle} needs a trace batched over one axis, "
                f"this one has batch_shape {bs}"
            )
        if (
            isinstance(particle, bool)
            or not isinstance(particle, int)
            or not (0 <= particle < bs[0])
        ):
            raise ValueError(
                f"plot_trace: particle must be an int in [0, {bs[0]}), got {particle!r}"
            )
    choices = trace.get_choices()
    leaves: dict[Path, tuple[np.ndarray, np.ndarray | None]] = {
        p: (as_numpy(v), None if m is None else as_numpy(m)) for p, v, m in choices.masked_leaves()
    }
    rows: list[tuple[str, str, float, float]] = []
    for path, score in trace.site_scores():
        s = as_numpy(score).astype(np.float64)
        if path in leaves:
            value, mask = leaves[path]
        else:
            value, mask = None, None
        label = address_label(path if len(path) != 1 else path[0])
        if bs and particle is None:
            s = s.reshape(-1) if s.ndim else np.full(int(np.prod(bs)), float(s))
            present = np.ones(s.shape, bool) if mask is None else np.broadcast_to(mask, bs).ravel()
            if not present.any():
                continue
            s = s[present]
            if value is not None:
                flat = value.reshape(int(np.prod(bs)), -1).astype(np.float64)[present]
                if flat.shape[1] == 1:
                    text = f"{_fmt(flat.mean())} ± {_fmt(flat.std())}"
                else:
                    text = f"[{'x'.join(map(str, value.shape[len(bs) :]))}] per particle"
            else:
                text = _subcall_text(choices, path)
            rows.append((label, text, float(s.mean()), float(s.std())))
            continue
        if particle is not None:
            if mask is not None and not bool(np.broadcast_to(mask, bs)[particle]):
                continue
            s = s[particle] if s.ndim else s
            value = None if value is None else value[particle]
        text = _value_text(value) if value is not None else _subcall_text(choices, path)
        rows.append((label, text, float(s), 0.0))
    return rows


def _subcall_text(choices: Any, path: Path) -> str:
    sub = choices.get_submap(path) if path else choices
    n = len(sub)
    return f"{n} choice{'s' if n != 1 else ''}"


def plot_trace(
    trace: Trace,
    *,
    particle: int | None = None,
    max_sites: int = 40,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Show a trace: each random choice's address, value and log density.

    One horizontal bar per site: its length is the site's log density
    ``log p(value | parents)`` (the terms of ``trace.score = Σ_sites log p``), the
    label is ``address = value``, and the number at the bar's end is the log density.
    For a batched trace, ``particle=i`` shows particle ``i``; without it each bar is
    the mean over particles, with an error bar of ± one standard deviation, and the
    value is the particles' mean ± sd. Masked-out choices (branches a particle did
    not take) are left out.

    Args:
        trace: any trace (a ``@gen`` function's, a combinator's, a distribution's).
        particle: which particle of a batched trace to show (``None``: the summary).
        max_sites: show at most this many sites (the title says how many were left out).
        fig: an empty figure to draw into (default: a new one).
        figsize: the figure size (default: grows with the number of sites).
        title: the title (default: the generative function's name and the score).

    Returns:
        The figure (one axes).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 0.5) @ "y"
        >>> fig = plot_trace(model.simulate((), key=mx.random.key(0)))
        >>> [t.get_text().split(" =")[0] for t in fig.axes[0].get_yticklabels()]
        ['mu', 'y']
    """
    if isinstance(max_sites, bool) or not isinstance(max_sites, int) or max_sites < 1:
        raise ValueError(f"plot_trace: max_sites must be a positive int, got {max_sites!r}")
    rows = trace_sites(trace, particle)
    shown = rows[:max_sites]
    hidden = len(rows) - len(shown)
    n = max(len(shown), 1)
    fig = new_figure(fig, figsize or (7.0, 1.2 + 0.32 * n), "plot_trace")
    ax = fig.add_subplot()
    y = np.arange(len(shown))[::-1]
    dens = np.array([r[2] for r in shown])
    spread = np.array([r[3] for r in shown])
    batched_summary = bool(trace.batch_shape) and particle is None
    colors = [PALETTE[0] if d >= 0 else PALETTE[3] for d in dens]
    bars = ax.barh(
        y,
        dens,
        color=colors,
        alpha=0.8,
        xerr=spread if batched_summary else None,
        error_kw={"ecolor": "0.3", "capsize": 2, "lw": 1},
    )
    ax.bar_label(bars, labels=[_fmt(d) for d in dens], padding=3, fontsize=8)
    ax.set_yticks(y, [f"{r[0]} = {r[1]}" for r in shown])
    ax.axvline(0.0, color="0.4", lw=0.8)
    ax.set_xlabel("log density" + (" (mean ± sd over particles)" if batched_summary else ""))
    lo, hi = (
        (float((dens - spread).min()), float((dens + spread).max())) if dens.size else (-1.0, 0.0)
    )
    pad = 0.25 * max(hi - lo, abs(lo), abs(hi), 1e-9)
    ax.set_xlim(min(lo, 0.0) - pad, max(hi, 0.0) + pad)
    ax.margins(y=0.02)
    if title is None:
        name = getattr(trace.gen_fn, "name", None) or type(trace.gen_fn).__name__
        score = as_numpy(trace.score).astype(np.float64)
        if trace.batch_shape and particle is None:
            stext = f"score {_fmt(float(score.mean()))} ± {_fmt(float(score.std()))}"
            who = f", {int(np.prod(trace.batch_shape))} particles"
        else:
            sval = float(score.reshape(-1)[particle]) if particle is not None else float(score)
            stext = f"score {_fmt(sval)}"
            who = f", particle {particle}" if particle is not None else ""
        title = f"trace of {name}{who}: {stext}"
        if hidden:
            title += f" ({hidden} more sites not shown)"
    ax.set_title(title)
    return fig
