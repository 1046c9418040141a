"""The visualizer kit: a visualizer draws every result type it declares, cleanly.

A visualizer registers with ``accepts=(...)``, names from
:data:`~genmlx.core.plugins.result_types.RESULT_TYPES` (``"trace"``,
``"batched_trace"``, ``"chain_result"``, ``"weighted_particles"``,
``"particle_history"``, ``"vi_result"``, ``"train_result"``). For each declared type
the kit builds real results of ``genmlx.infer`` (:func:`example_results`: a chain
result of resimulation MH on four chains, importance-sampling and particle-filter
particles, ADVI and black-box VI fits, a training run) and checks, for every one:

* ``returns_figure`` — ``visualizer(result)`` returns a :class:`matplotlib.figure.Figure`
  (or an animation whose ``.figure`` is one) with at least one axes holding something
  drawn, and leaves no figure open in ``pyplot``;
* ``draws_into_figure`` — ``visualizer(result, fig=fig)`` draws into the empty figure
  it is given and returns it;
* ``renders_without_warnings`` — both calls, and rendering the figures to PNG with the
  Agg canvas (every frame of an animation, through ``to_jshtml``), raise no warning
  (``warnings`` filter ``"always"``).

A visualizer that needs more than the result (e.g. the address to follow through a
particle history) registers ``conformance_call=``: a function
``(visualizer, example, **kwargs) -> figure`` where ``example`` is a
:class:`ResultExample` (``.result``, ``.addresses``, ``.step_address``) and
``kwargs`` holds ``fig=`` when the kit passes a figure.

The results need ``genmlx-infer`` (and matplotlib); results are built once per process.

Example:
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from genmlx.core.testing.visualizers import check_visualizer
    >>> def plot_scores(trace, *, fig=None):
    ...     fig = fig or Figure()
    ...     ax = fig.add_subplot()
    ...     ax.hist(np.asarray(trace.score), bins=10)
    ...     return fig
    >>> check_visualizer(plot_scores, ("batched_trace",)).passed
    True
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import mlx.core as mx

from genmlx.core.address import Address
from genmlx.core.plugins.result_types import RESULT_TYPES
from genmlx.core.testing.distributions import CheckResult
from genmlx.core.testing.report import KitReport

__all__ = [
    "RESULT_TYPES",
    "VISUALIZER_CHECKS",
    "ResultExample",
    "check_visualizer",
    "example_results",
]

VISUALIZER_CHECKS: tuple[str, ...] = (
    "returns_figure",
    "draws_into_figure",
    "renders_without_warnings",
)
"""The checks :func:`check_visualizer` runs on each example result."""

CallFn = Callable[..., Any]


@dataclass(frozen=True)
class ResultExample:
    """One example result the visualizer kit draws.

    Attributes:
        kind: its result type (a key of ``RESULT_TYPES``).
        label: which one (e.g. ``"ISResult"``).
        result: the object.
        addresses: the latent addresses it holds samples of.
        step_address: for particle histories, step ``t`` → the address of that step's
            state (``None`` otherwise).
    """

    kind: str
    label: str
    result: Any = field(repr=False)
    addresses: tuple[Address, ...] = ()
    step_address: Callable[[int], Address] | None = field(default=None, repr=False)


def _infer() -> Any:
    try:
        import genmlx.infer as infer
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the visualizer kit builds its example results with genmlx-infer: "
            "pip install genmlx-infer"
        ) from e
    return infer


_XS = (-1.0, 1.5)
_YS = (-1.2, 1.9)


def _regression_data() -> tuple[Any, tuple[Any, ...], dict[Address, float]]:
    from genmlx.core.testing.models import linear_regression

    obs: dict[Address, float] = {f"y{i}": v for i, v in enumerate(_YS)}
    return linear_regression, (mx.array(_XS),), obs


@cache
def _build(kind: str) -> tuple[ResultExample, ...]:
    """Example results of one type (built on first use, then cached)."""
    from functools import partial

    from genmlx.core import ParamStore, choicemap, gen, param, select
    from genmlx.core.testing.models import normal

    model, args, obs = _regression_data()
    latents: tuple[Address, ...] = ("slope", "intercept")
    if kind == "trace":
        tr, _ = model.generate(args, obs, key=mx.random.key(0))
        return (ResultExample(kind, "Trace", tr, latents),)
    if kind == "batched_trace":
        tr, _ = model.vgenerate(args, obs, 64, key=mx.random.key(1))
        return (ResultExample(kind, "batched Trace", tr, latents),)
    infer = _infer()
    if kind == "chain_result":
        tr, _ = model.vgenerate(args, obs, 4, key=mx.random.key(2))
        kernel = partial(infer.mh, selection_or_proposal=select(*latents))
        res = infer.chain(kernel, tr, 40, key=mx.random.key(3), addresses=list(latents))
        return (ResultExample(kind, "ChainResult", res, latents),)
    if kind in ("weighted_particles", "particle_history"):
        if kind == "weighted_particles":
            isr = infer.importance_sampling(model, args, obs, 200, key=mx.random.key(4))
            out = [ResultExample(kind, "ISResult", isr, latents)]
        else:
            out = []

        @gen
        def walk(n_steps: int) -> Any:
            x = mx.array(0.0)
            for t in range(n_steps):
                x = normal(x, 1.0) @ ("x", t)
                normal(x, 0.5) @ ("y", t)
            return x

        ys = (0.3, 0.9)
        keys = mx.random.split(mx.random.key(5), 2 * len(ys))
        state = infer.particle_filter(walk, (1,), {("y", 0): ys[0]}, 100, key=keys[0])
        history = [state]
        for t in range(1, len(ys)):
            state = state.resample(key=keys[2 * t - 1])
            state = state.step((t + 1,), {("y", t): ys[t]}, key=keys[2 * t])
            history.append(state)
        steps = tuple(("x", t) for t in range(len(ys)))
        if kind == "weighted_particles":
            out.append(ResultExample(kind, "ParticleFilterState", state, steps))
            return tuple(out)
        return (
            ResultExample(kind, "list of ParticleFilterState", history, steps, lambda t: ("x", t)),
        )
    if kind == "vi_result":
        fit = infer.advi(model, args, obs, n_steps=30, key=mx.random.key(6))

        @gen
        def guide() -> None:
            loc, log_scale = param("slope_loc", mx.array(0.0)), param("slope_ls", mx.array(0.0))
            normal(loc, mx.exp(log_scale)) @ "slope"
            normal(param("icpt_loc", mx.array(0.0)), 1.0) @ "intercept"

        bb = infer.black_box_vi(model, args, obs, guide, n_steps=30, key=mx.random.key(7))
        return (
            ResultExample(kind, "ADVIResult", fit, latents),
            ResultExample(kind, "VIResult", bb, latents),
        )
    if kind == "train_result":

        @gen
        def location() -> None:
            normal(param("mu", mx.array(0.0)), 1.0) @ "y"

        data = choicemap({"y": mx.array([0.5, 1.0, 1.5, 2.0])}).with_batch_shape((4,))
        store = ParamStore({"mu": mx.array(0.0)})
        res = infer.train(location, data, store, n_steps=30, key=mx.random.key(8))
        return (ResultExample(kind, "TrainResult", res, ()),)
    raise ValueError(f"unknown result type {kind!r}; known: {', '.join(RESULT_TYPES)}")


def example_results(kind: str) -> list[ResultExample]:
    """The kit's example results of type ``kind`` (built once per process).

    Raises:
        ValueError: ``kind`` is not a result type.
        ImportError: ``genmlx.infer`` is needed and not installed.
    """
    if kind not in RESULT_TYPES:
        raise ValueError(f"unknown result type {kind!r}; known: {', '.join(RESULT_TYPES)}")
    return list(_build(kind))


def _figure_of(out: Any) -> Any:
    from matplotlib.figure import Figure

    if isinstance(out, Figure):
        return out
    fig = getattr(out, "figure", None)
    if isinstance(fig, Figure):
        return fig
    raise AssertionError(
        f"returned {type(out).__name__}, not a matplotlib Figure (or an animation with .figure)"
    )


def _drawn(fig: Any) -> bool:
    for ax in fig.axes:
        if ax.lines or ax.collections or ax.patches or ax.images or ax.texts or ax.tables:
            return True
    return bool(fig.texts or fig.images)


def _open_pyplot_figures() -> set[int]:
    plt = sys.modules.get("matplotlib.pyplot")
    return set(plt.get_fignums()) if plt is not None else set()


def _render(fig: Any, out: Any = None) -> int:
    """Render with the Agg canvas (every frame, for an animation); the PNG's size."""
    from matplotlib.animation import Animation
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if isinstance(out, Animation):
        return len(out.to_jshtml())
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return len(buf.getvalue())


def _check_one(
    report: KitReport, fn: CallFn, call: CallFn | None, ex: ResultExample, checks: Sequence[str]
) -> None:
    from matplotlib.figure import Figure

    def invoke(**kwargs: Any) -> Any:
        if call is not None:
            return call(fn, ex, **kwargs)
        return fn(ex.result, **kwargs)

    label = f"{ex.kind}:{ex.label}"
    caught: list[warnings.WarningMessage] = []
    problems: dict[str, list[str]] = {c: [] for c in VISUALIZER_CHECKS}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        before = _open_pyplot_figures()
        try:
            out = invoke()
            fig = _figure_of(out)
            if not _drawn(fig):
                problems["returns_figure"].append("the figure has no axes with anything drawn")
            _render(fig, out)
        except Exception as e:
            problems["returns_figure"].append(f"raised {type(e).__name__}: {e}")
        leaked = _open_pyplot_figures() - before
        if leaked:
            problems["returns_figure"].append(
                f"left {len(leaked)} figure(s) open in pyplot (make Figures directly)"
            )
        given = Figure()
        try:
            out = invoke(fig=given)
            if _figure_of(out) is not given:
                problems["draws_into_figure"].append("returned another figure than the fig= given")
            elif not _drawn(given):
                problems["draws_into_figure"].append("drew nothing into the fig= given")
            _render(given, out)
        except Exception as e:
            problems["draws_into_figure"].append(f"raised {type(e).__name__}: {e}")
        caught = list(rec)
    if caught:
        problems["renders_without_warnings"] = [
            f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught[:5]
        ]
    for check in VISUALIZER_CHECKS:
        if check in checks:
            errs = problems[check]
            report.results.append(
                CheckResult(f"{check}[{label}]", not errs, "; ".join(errs) or "ok")
            )


def check_visualizer(
    fn: CallFn,
    accepts: Sequence[str],
    *,
    name: str | None = None,
    call: CallFn | None = None,
    checks: Sequence[str] | None = None,
    raise_on_failure: bool = True,
) -> KitReport:
    """Run the visualizer kit on ``fn`` for every result type in ``accepts``.

    Args:
        fn: the visualizer.
        accepts: the result types it declares (keys of ``RESULT_TYPES``).
        name: its name in the report.
        call: ``call(fn, example, **kwargs)`` for visualizers that need more than the
            result (the ``conformance_call`` metadata); default ``fn(example.result,
            **kwargs)``.
        checks: a subset of :data:`VISUALIZER_CHECKS` (default: all).
        raise_on_failure: raise ``AssertionError`` with the report on a failure.

    Returns:
        The :class:`~genmlx.core.testing.report.KitReport`.
    """
    if isinstance(accepts, str):
        accepts = (accepts,)
    unknown = [a for a in accepts if a not in RESULT_TYPES]
    if unknown or not accepts:
        raise ValueError(
            f"check_visualizer: unknown result types {unknown or '(none given)'}; "
            f"known: {', '.join(RESULT_TYPES)}"
        )
    wanted = list(VISUALIZER_CHECKS if checks is None else checks)
    report = KitReport("visualizer", name or str(getattr(fn, "__name__", repr(fn))))
    for kind in accepts:
        try:
            examples = example_results(kind)
        except Exception as e:
            report.results.append(
                CheckResult(f"examples[{kind}]", False, f"raised {type(e).__name__}: {e}")
            )
            continue
        for ex in examples:
            _check_one(report, fn, call, ex, wanted)
    if raise_on_failure and not report.passed:
        raise AssertionError(str(report))
    return report
