"""The visualizer kit: every genmlx.viz visualizer passes it, broken visualizers fail.

Each registered visualizer declares the result types it draws (``accepts=``); the kit
(:mod:`genmlx.core.testing.visualizers`) draws real results of genmlx.infer of each
type and checks that a Figure comes back, that ``fig=`` is drawn into, and that
nothing warns when the figure is rendered with Agg.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

from genmlx.core import registry
from genmlx.core.plugins import RESULT_TYPES
from genmlx.core.testing.visualizers import check_visualizer, example_results
from genmlx.viz._plugin import ACCEPTS, VISUALIZER_NAMES


@pytest.mark.parametrize("name", VISUALIZER_NAMES)
def test_visualizer_passes_the_kit(name: str, genmlx_visualizer_kit: Any) -> None:
    report = genmlx_visualizer_kit(name)
    kinds = {r.name.split("[")[1].split(":")[0] for r in report.results}
    assert kinds == set(ACCEPTS[name])


def test_every_visualizer_declares_what_it_accepts() -> None:
    for name in VISUALIZER_NAMES:
        assert registry().visualizers.entry(name).info("accepts") == ACCEPTS[name]


@pytest.mark.parametrize("kind", list(RESULT_TYPES))
def test_example_results_are_real_results(kind: str) -> None:
    examples = example_results(kind)
    assert examples and all(e.kind == kind for e in examples)
    labels = {e.label for e in examples}
    if kind == "weighted_particles":
        assert labels == {"ISResult", "ParticleFilterState"}
        for e in examples:
            lw = np.array(e.result.log_weights)
            assert lw.shape == (e.result.traces.batch_shape[0],)
    if kind == "vi_result":
        assert labels == {"ADVIResult", "VIResult"}
        assert all(e.result.elbo_history.shape == (30,) for e in examples)
    if kind == "chain_result":
        (e,) = examples
        assert e.result.samples["slope"].shape == (40, 4)


def _scatter(result: Any, *, fig: Figure | None = None) -> Figure:
    fig = fig if fig is not None else Figure()
    ax = fig.add_subplot()
    ax.scatter(np.array(result.score), np.arange(result.score.shape[0]))
    return fig


def test_a_good_visualizer_passes() -> None:
    report = check_visualizer(_scatter, ("batched_trace",))
    assert [r.name for r in report.results] == [
        "returns_figure[batched_trace:batched Trace]",
        "draws_into_figure[batched_trace:batched Trace]",
        "renders_without_warnings[batched_trace:batched Trace]",
    ]


def test_broken_visualizers_are_flagged() -> None:
    def returns_none(result: Any, *, fig: Any = None) -> None:
        return None

    def ignores_fig(result: Any, *, fig: Any = None) -> Figure:
        return _scatter(result)

    def warns(result: Any, *, fig: Any = None) -> Figure:
        warnings.warn("careful", UserWarning, stacklevel=1)
        return _scatter(result, fig=fig)

    def empty(result: Any, *, fig: Any = None) -> Figure:
        fig = fig if fig is not None else Figure()
        fig.add_subplot()
        return fig

    def via_pyplot(result: Any, *, fig: Any = None) -> Any:
        import matplotlib.pyplot as plt

        f = plt.figure() if fig is None else fig
        f.add_subplot().plot([1, 2])
        return f

    def failed(fn: Any) -> dict[str, str]:
        report = check_visualizer(fn, ("batched_trace",), raise_on_failure=False)
        return {r.name.split("[")[0]: r.detail for r in report.failures}

    assert "not a matplotlib Figure" in failed(returns_none)["returns_figure"]
    assert "another figure than the fig= given" in failed(ignores_fig)["draws_into_figure"]
    assert "UserWarning: careful" in failed(warns)["renders_without_warnings"]
    assert "no axes with anything drawn" in failed(empty)["returns_figure"]
    assert "open in pyplot" in failed(via_pyplot)["returns_figure"]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_kit_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown result types"):
        check_visualizer(_scatter, ("samples",))
    with pytest.raises(AssertionError, match="visualizer kit: _scatter"):
        check_visualizer(_scatter, ("vi_result",))  # a VI result has no .score


def test_the_kits_docstring_example_runs() -> None:
    import doctest

    import genmlx.core.testing.visualizers as kit

    assert doctest.testmod(kit, optionflags=doctest.ELLIPSIS).failed == 0
