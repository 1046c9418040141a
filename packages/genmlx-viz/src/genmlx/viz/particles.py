"""SMC particles over time: a static view of one step and an animation of all steps."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.animation import Animation, FuncAnimation, HTMLWriter, PillowWriter
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from genmlx.core import ChoiceMap, Trace
from genmlx.viz._common import PALETTE, check_bins, kish_ess, new_figure, weighted_mean_sd
from genmlx.viz._inputs import address_label, as_numpy, normalise_weights

__all__ = ["ParticleAnimation", "animate_particles", "plot_particles", "save_animation"]

AddressFn = Callable[[int], Any]


def _values_at(snapshot: Any, addr: Any, t: int, op: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(values [N], mask [N] or None)`` of ``addr`` in one snapshot."""
    if isinstance(snapshot, Trace):
        snapshot = snapshot.get_choices()
    if isinstance(snapshot, ChoiceMap):
        if not snapshot.has_value(addr):
            raise KeyError(f"{op}: step {t} holds no choice at {addr!r}")
        v = as_numpy(snapshot[addr])
        m = snapshot.get_mask(addr)
        mask = None if m is None else np.broadcast_to(as_numpy(m).astype(bool), v.shape[:1])
        return v, mask
    if isinstance(snapshot, Mapping):
        if addr not in snapshot:
            raise KeyError(f"{op}: step {t} has no entry {addr!r} (keys: {list(snapshot)[:8]})")
        return as_numpy(snapshot[addr]), None
    return as_numpy(snapshot), None


def _collect_history(
    history: Any, address: Any, weights: Any, op: str
) -> tuple[list[np.ndarray], list[np.ndarray | None], list[str]]:
    """Per step: values ``[N_t]`` (float64), normalised weights or ``None``, a label."""
    if not isinstance(history, Sequence) or isinstance(history, (str, bytes)) or not history:
        raise TypeError(
            f"{op}: history must be a non-empty list of snapshots (particle-filter states, "
            "batched traces or [N] arrays), one per step"
        )
    if weights is not None and (not isinstance(weights, Sequence) or len(weights) != len(history)):
        raise ValueError(f"{op}: weights must be a list with one [N] array per step")
    values: list[np.ndarray] = []
    ws: list[np.ndarray | None] = []
    labels: list[str] = []
    for t, snap in enumerate(history):
        log_w: Any = None
        if hasattr(snap, "traces") and hasattr(snap, "log_weights"):
            log_w = snap.log_weights
            snap = snap.traces
        is_array = not isinstance(snap, (Trace, ChoiceMap, Mapping))
        if is_array:
            addr = None
        else:
            if address is None:
                raise ValueError(
                    f"{op}: pass address= (an address, or a function of the step t returning "
                    "one, e.g. lambda t: (t, 'x') for an Unfold model)"
                )
            addr = address(t) if callable(address) else address
        v, mask = _values_at(snap, addr, t, op)
        if v.ndim != 1:
            raise ValueError(
                f"{op}: step {t}: expected one scalar per particle (shape [N]), got shape "
                f"{v.shape}; choose a scalar address"
            )
        n = v.shape[0]
        w: np.ndarray | None = None
        if log_w is not None:
            if weights is not None:
                raise ValueError(f"{op}: step {t} carries its own log_weights; drop weights=")
            w = normalise_weights(log_w, n, f"{op} (step {t})", log=True)
        elif weights is not None and weights[t] is not None:
            w = normalise_weights(weights[t], n, f"{op} (step {t})")
        if mask is not None:
            base = np.full(n, 1.0 / n) if w is None else w
            w = np.where(mask, base, 0.0)
            w = w / w.sum()
        values.append(v.astype(np.float64))
        ws.append(w)
        labels.append(address_label(addr) if addr is not None else "value")
    return values, ws, labels


class _ParticlePainter:
    """Draws step ``t`` of a particle history into a figure (used by the static plot
    and, frame by frame, by the animation). Axis limits and bins are fixed over all
    steps so frames are comparable."""

    def __init__(
        self,
        fig: Figure,
        values: list[np.ndarray],
        weights: list[np.ndarray | None],
        labels: list[str],
        bins: int,
        truth: Sequence[float] | None,
        point_size: float,
        title: str | None,
    ) -> None:
        self.values, self.weights, self.labels = values, weights, labels
        self.n_steps = len(values)
        self.title = title
        self.point_size = point_size
        allv = np.concatenate(values)
        finite = allv[np.isfinite(allv)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        if truth is not None:
            tv = np.asarray(truth, dtype=np.float64)
            if tv.shape != (self.n_steps,):
                raise ValueError(
                    f"animate_particles: truth must have one value per step "
                    f"({self.n_steps}), got shape {tv.shape}"
                )
            lo, hi = min(lo, float(tv.min())), max(hi, float(tv.max()))
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        self.edges = np.linspace(lo - pad, hi + pad, bins + 1)
        self.hists = [
            np.histogram(v, bins=self.edges, weights=w, density=True)[0]
            for v, w in zip(values, weights)
        ]
        stats = [weighted_mean_sd(v, w) for v, w in zip(values, weights)]
        self.means = np.array([m for m, _ in stats])
        self.ess = [kish_ess(w, v.size) for v, w in zip(values, weights)]

        gs = fig.add_gridspec(1, 2, width_ratios=(3, 1))
        self.ax_time = fig.add_subplot(gs[0, 0])
        self.ax_hist = fig.add_subplot(gs[0, 1], sharey=self.ax_time)
        ax = self.ax_time
        ax.set_xlim(-0.5, self.n_steps - 0.5)
        ax.set_ylim(self.edges[0], self.edges[-1])
        ax.set_xlabel("step")
        ax.set_ylabel(labels[-1] if len(set(labels)) == 1 else "particle value")
        self.past = ax.scatter([], [], s=point_size * 0.5, color="0.6", alpha=0.35, linewidths=0)
        self.current = ax.scatter([], [], s=point_size, color=PALETTE[0], alpha=0.6, linewidths=0)
        (self.mean_line,) = ax.plot([], [], color=PALETTE[1], lw=1.8, label="weighted mean")
        self.truth_line = None
        if truth is not None:
            (self.truth_line,) = ax.plot(
                np.arange(self.n_steps),
                np.asarray(truth, float),
                color=PALETTE[3],
                ls="--",
                lw=1.2,
                label="truth",
            )
        ax.legend(loc="upper left", fontsize=8)
        widths = np.diff(self.edges)
        self.bars = self.ax_hist.barh(
            self.edges[:-1],
            np.zeros(bins),
            height=widths,
            align="edge",
            color=PALETTE[0],
            alpha=0.7,
        )
        self.ax_hist.set_xlim(0.0, 1.05 * max(float(max(h.max() for h in self.hists)), 1e-12))
        self.ax_hist.set_xlabel("density")
        self.ax_hist.tick_params(labelleft=False)
        self.fig = fig

    def draw(self, t: int) -> list[Artist]:
        """Show step ``t``: the particles of steps ``< t`` in grey, step ``t`` coloured
        (marker area ∝ weight), the running weighted mean and step ``t``'s histogram."""
        t = int(t)
        if not 0 <= t < self.n_steps:
            raise ValueError(f"step must be in [0, {self.n_steps}), got {t}")
        if t:
            past = np.concatenate(
                [np.column_stack([np.full(v.size, s), v]) for s, v in enumerate(self.values[:t])]
            )
        else:
            past = np.empty((0, 2))
        self.past.set_offsets(past)
        v, w = self.values[t], self.weights[t]
        self.current.set_offsets(np.column_stack([np.full(v.size, t), v]))
        sizes = self.point_size * (np.ones(v.size) if w is None else v.size * w)
        self.current.set_sizes(sizes)
        self.mean_line.set_data(np.arange(t + 1), self.means[: t + 1])
        for bar, h in zip(self.bars, self.hists[t]):
            bar.set_width(float(h))
        n = v.size
        default = f"step {t}: {self.labels[t]}, {n} particles, ESS {self.ess[t]:.1f}"
        self.ax_time.set_title(default if self.title is None else f"{self.title} ({default})")
        return [self.past, self.current, self.mean_line, *self.bars]


def _painter(
    history: Any,
    address: Any,
    weights: Any,
    bins: int,
    truth: Sequence[float] | None,
    point_size: float,
    fig: Figure | None,
    figsize: tuple[float, float] | None,
    title: str | None,
    op: str,
) -> _ParticlePainter:
    bins = check_bins(bins, op)
    values, ws, labels = _collect_history(history, address, weights, op)
    fig = new_figure(fig, figsize or (8.0, 3.6), op)
    return _ParticlePainter(fig, values, ws, labels, bins, truth, point_size, title)


def plot_particles(
    history: Sequence[Any],
    address: Any | AddressFn = None,
    *,
    step: int | None = None,
    weights: Sequence[Any] | None = None,
    bins: int = 30,
    truth: Sequence[float] | None = None,
    point_size: float = 12.0,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """One frame of :func:`animate_particles`: the particle cloud up to step ``step``.

    Left: every particle's value against the step (earlier steps grey, step ``step``
    coloured with marker area ``point_size · N · w̄_i``) and the weighted mean
    ``Σ_i w̄_i x_i`` of each step so far. Right: step ``step``'s weighted histogram
    (``density=True``) on bins shared by all steps.

    Args:
        history: one snapshot per step: particle-filter states (``.traces`` and
            ``.log_weights``), batched traces, dicts of ``[N]`` arrays, or ``[N]``
            arrays.
        address: the address to show; a function ``t -> address`` when it changes with
            the step (``lambda t: (t, "x")`` for an ``Unfold`` model). Not needed for
            arrays.
        step: the step to show (default: the last).
        weights: for array/trace snapshots, one ``[N]`` weight array (or ``None``) per
            step.
        bins: histogram bins.
        truth: one true value per step, drawn as a dashed line.
        point_size: marker area (points²) of an average-weight particle.
        fig: an empty figure to draw into.
        figsize: the figure size.
        title: a title prefix.

    Returns:
        The figure (two axes, particles over time and the current histogram).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> steps = [rng.normal(t, 1.0, size=100) for t in range(5)]
        >>> fig = plot_particles(steps)
        >>> len(fig.axes), len(fig.axes[0].collections[0].get_offsets())
        (2, 400)
    """
    p = _painter(
        history, address, weights, bins, truth, point_size, fig, figsize, title, "plot_particles"
    )
    p.draw(p.n_steps - 1 if step is None else step)
    return p.fig


class ParticleAnimation(FuncAnimation):
    """A :class:`matplotlib.animation.FuncAnimation` of particle snapshots.

    A notebook shows it as an interactive JavaScript player (``_repr_html_`` returns
    ``to_jshtml``). Save it with :func:`save_animation` (``.gif`` or ``.html``) or
    matplotlib's own ``save``.

    Attributes:
        figure: the figure the frames are drawn into.
        n_frames: the number of frames (one per step).
    """

    def __init__(self, painter: _ParticlePainter, interval: int) -> None:
        self.painter = painter
        self.figure = painter.fig
        self.n_frames = painter.n_steps
        super().__init__(
            painter.fig,
            painter.draw,
            frames=painter.n_steps,
            init_func=lambda: painter.draw(0),
            interval=interval,
            blit=False,
            cache_frame_data=False,
        )

    def draw_frame(self, t: int) -> Figure:
        """Draw frame ``t`` into :attr:`figure` (e.g. to save one frame as an image)."""
        self.painter.draw(t)
        return self.figure

    def _repr_html_(self) -> str:
        html: str = self.to_jshtml()
        return html


def animate_particles(
    history: Sequence[Any],
    address: Any | AddressFn = None,
    *,
    weights: Sequence[Any] | None = None,
    bins: int = 30,
    truth: Sequence[float] | None = None,
    point_size: float = 12.0,
    interval: int = 400,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> ParticleAnimation:
    """Animate SMC particles step by step (frame ``t`` is :func:`plot_particles` at ``t``).

    Each frame shows all particles so far against the step, the current step's
    particles with marker area proportional to their normalised weight, the running
    weighted mean, and the current weighted histogram; bins and axis limits are the
    same in every frame. Save with :func:`save_animation` (GIF through Pillow, or a
    self-contained HTML player).

    Args:
        history: one snapshot per step (see :func:`plot_particles`); e.g. the states
            of a particle filter collected after each ``step``.
        address: the address, or a function ``t -> address``.
        weights: per-step ``[N]`` weights for array/trace snapshots.
        bins: histogram bins.
        truth: one true value per step.
        point_size: marker area of an average-weight particle.
        interval: milliseconds between frames.
        fig: an empty figure to draw into.
        figsize: the figure size.
        title: a title prefix.

    Returns:
        A :class:`ParticleAnimation` with ``n_frames == len(history)``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> anim = animate_particles([rng.normal(t, 1.0, size=50) for t in range(3)])
        >>> anim.n_frames, "<script" in anim.to_jshtml()
        (3, True)
    """
    p = _painter(
        history,
        address,
        weights,
        bins,
        truth,
        point_size,
        fig,
        figsize,
        title,
        "animate_particles",
    )
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(
            f"animate_particles: interval must be a positive int (ms), got {interval!r}"
        )
    return ParticleAnimation(p, interval)


def save_animation(
    animation: Animation, path: str | os.PathLike[str], *, fps: int = 2, dpi: float = 80.0
) -> Path:
    """Save an animation as an animated GIF (Pillow) or a self-contained HTML player.

    The format follows the suffix: ``.gif`` uses matplotlib's ``PillowWriter`` (Pillow
    is a matplotlib dependency); ``.html``/``.htm`` uses ``HTMLWriter``, the page
    :meth:`~matplotlib.animation.Animation.to_jshtml` returns (frames embedded as PNG,
    playable offline).

    Args:
        animation: any matplotlib animation (e.g. from :func:`animate_particles`).
        path: where to write (``.gif`` or ``.html``).
        fps: frames per second.
        dpi: resolution of the frames.

    Returns:
        The path written.

    Example:
        >>> import tempfile, numpy as np
        >>> anim = animate_particles([np.arange(5.0) + t for t in range(2)])
        >>> out = save_animation(anim, tempfile.mkdtemp() + "/pf.html")
        >>> out.suffix
        '.html'
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise ValueError(f"save_animation: fps must be a positive int, got {fps!r}")
    if suffix == ".gif":
        animation.save(str(out), writer=PillowWriter(fps=fps), dpi=dpi)
    elif suffix in (".html", ".htm"):
        animation.save(str(out), writer=HTMLWriter(fps=fps, embed_frames=True), dpi=dpi)
    else:
        raise ValueError(
            f"save_animation: unsupported suffix {out.suffix!r} in {str(out)!r}; use .gif or .html"
        )
    return out
