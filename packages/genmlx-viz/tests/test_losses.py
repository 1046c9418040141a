"""plot_losses: raw curves, labelled series, moving averages and the ELBO attribute."""

from __future__ import annotations

from types import SimpleNamespace

import mlx.core as mx
import numpy as np
import pytest

import genmlx.viz as gv
from genmlx.viz.losses import moving_average


def test_single_series_from_mlx_scalars() -> None:
    y = [mx.array(v) for v in (5.0, 3.0, 2.5, 2.0)]
    fig = gv.plot_losses(y)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), [5.0, 3.0, 2.5, 2.0])
    np.testing.assert_array_equal(line.get_xdata(), np.arange(4))
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    assert ax.get_legend() is None


def test_labelled_series_and_smoothing() -> None:
    rng = np.random.default_rng(0)
    a = np.linspace(10, 1, 50) + rng.normal(size=50)
    b = np.linspace(12, 3, 40) + rng.normal(size=40)
    fig = gv.plot_losses([a, b], labels=["adam", "sgd"], window=5, logy=True)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 4  # raw + smoothed per series
    np.testing.assert_array_equal(lines[0].get_ydata(), a)
    np.testing.assert_allclose(lines[1].get_ydata(), np.convolve(a, np.ones(5) / 5, "valid"))
    np.testing.assert_array_equal(lines[1].get_xdata(), np.arange(4, 50))
    np.testing.assert_allclose(lines[3].get_ydata(), np.convolve(b, np.ones(5) / 5, "valid"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["adam", "sgd"]
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "moving average over 5 steps"


def test_elbo_history_attribute_and_dict() -> None:
    approx = SimpleNamespace(elbo_history=mx.array([-50.0, -20.0, -12.0]))
    fig = gv.plot_losses(approx)
    assert fig.axes[0].get_ylabel() == "ELBO"
    fig2 = gv.plot_losses({"vi": [3.0, 2.0], "vimco": [3.5, 1.0]}, ylabel="-ELBO")
    assert [t.get_text() for t in fig2.axes[0].get_legend().get_texts()] == ["vi", "vimco"]
    assert fig2.axes[0].get_ylabel() == "-ELBO"


def test_moving_average() -> None:
    y = np.arange(10.0) ** 2
    np.testing.assert_allclose(moving_average(y, 3), [np.mean(y[k : k + 3]) for k in range(8)])


def test_loss_errors() -> None:
    with pytest.raises(ValueError, match="logy=True needs positive values"):
        gv.plot_losses([-1.0, -2.0], logy=True)
    with pytest.raises(ValueError, match="window=5 is longer than"):
        gv.plot_losses([1.0, 2.0], window=5)
    with pytest.raises(ValueError, match="labels must be a list of 2 names"):
        gv.plot_losses([[1.0], [2.0]], labels=["a"])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        gv.plot_losses(np.zeros((3, 3)))
