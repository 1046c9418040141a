"""Visualizers in the plugin registry: genmlx.viz's own and a third party's."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

import genmlx.viz as gv
import genmlx.viz._plugin as viz_plugin
from genmlx.core import PluginError
from genmlx.core.plugins import Registry, hookimpl


def ecdf_plot(samples: dict[str, Any]) -> Figure:
    """A third party's visualizer: the empirical CDF of each variable."""
    fig = Figure()
    ax = fig.add_subplot()
    for name, x in samples.items():
        xs = np.sort(np.asarray(x))
        ax.step(xs, np.arange(1, xs.size + 1) / xs.size, label=name)
    return fig


class ThirdPartyPlugin:
    @hookimpl
    def genmlx_register_visualizers(self, register: Any) -> None:
        register(ecdf_plot, aliases=("ecdf",))


def test_viz_registers_every_plot() -> None:
    reg = Registry(autoload=False)
    reg.register_plugin(viz_plugin, name="viz")
    assert sorted(reg.visualizers) == sorted(viz_plugin.VISUALIZER_NAMES)
    for name in viz_plugin.VISUALIZER_NAMES:
        assert reg.visualizers[name] is getattr(gv, name)
        assert reg.visualizers.provider(name) == "viz"


def test_third_party_visualizer_appears_next_to_viz() -> None:
    reg = Registry(autoload=False)
    reg.register_plugin(viz_plugin, name="viz")
    reg.register_plugin(ThirdPartyPlugin(), name="my-plots")
    assert reg.visualizers["ecdf"] is ecdf_plot
    assert reg.visualizers.provider("ecdf_plot") == "my-plots"
    assert reg.visualizers.provider("plot_posterior") == "viz"
    fig = reg.visualizers["ecdf"]({"a": [3.0, 1.0, 2.0]})
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_ydata()) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert "ecdf_plot" in reg.summary() and "my-plots" in reg.summary()


def test_name_clash_with_viz_is_an_error() -> None:
    class Clash:
        @hookimpl
        def genmlx_register_visualizers(self, register: Any) -> None:
            register(ecdf_plot, name="plot_trace")

    reg = Registry(autoload=False)
    reg.register_plugin(viz_plugin, name="viz")
    with pytest.raises(PluginError, match="'plot_trace', which plugin 'viz' already registered"):
        reg.register_plugin(Clash(), name="clash")


def test_entry_point_loads_viz_lazily() -> None:
    eps = [ep for ep in entry_points(group="genmlx") if ep.value == "genmlx.viz._plugin"]
    assert len(eps) == 1, "genmlx-viz's entry point is missing (reinstall the package)"
    reg = Registry(autoload=True)
    assert not reg.loaded
    assert reg.visualizers["plot_posterior"] is gv.plot_posterior
    assert reg.visualizers.provider("plot_posterior") == eps[0].name
