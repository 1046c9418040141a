"""Readable ``repr`` of traces and choice maps."""

from __future__ import annotations

import mlx.core as mx

from genmlx.core import choicemap, gen
from genmlx.core._display import MAX_LINES, format_value
from genmlx.core.testing.models import bernoulli, normal

K = mx.random.key


@gen
def line(xs):
    slope = normal(0.0, 1.0) @ "slope"
    normal(slope * xs, 0.5) @ "ys"
    bernoulli(0.25) @ "flag"
    return slope


XS = mx.linspace(0, 1, 10)


def test_a_trace_shows_its_score_and_every_choice():
    tr = line.simulate((XS,), key=K(0))
    lines = repr(tr).splitlines()
    assert lines[0] == f"DynamicTrace(line, score={float(tr.score):.6g}, 3 choices)"
    assert lines[1] == f"  'slope': {float(tr['slope']):.6g}"
    ys = tr["ys"]
    assert lines[2].startswith("  'ys': float32[10] [")
    assert lines[2].endswith(f", ..., {float(ys[-1]):.6g}]")
    assert lines[3] == f"  'flag': {bool(tr['flag'])}"


def test_a_batched_trace_is_compact():
    tr = line.vsimulate((XS,), 2000, key=K(1))
    lines = repr(tr).splitlines()
    assert lines[0].startswith("DynamicTrace(line, batch_shape=(2000,), score mean ")
    assert len(lines) == 4
    slope = tr["slope"]
    mean, sd = float(mx.mean(slope)), float(mx.std(slope))
    assert lines[1] == f"  'slope': float32[2000] mean {mean:.4g}, sd {sd:.4g}"
    assert lines[2] == "  'ys': float32[2000, 10]"  # one event per particle: the shape
    frac = float(mx.mean(tr["flag"].astype(mx.float32)))
    assert lines[3] == f"  'flag': bool[2000] {100 * frac:.3g}% true"


def test_choice_maps_show_values_and_long_ones_are_cut():
    assert repr(choicemap({"a": 1.0, ("y", 0): mx.arange(3)})) == (
        "ChoiceMap({'a': 1.0, ('y', 0): [0, 1, 2]})"
    )
    big = choicemap({("x", i): float(i) for i in range(MAX_LINES + 5)})
    text = repr(big)
    assert f"('x', {MAX_LINES - 1}): {float(MAX_LINES - 1)}" in text
    assert "... and 5 more" in text
    assert f"('x', {MAX_LINES})" not in text


def test_format_value_previews_large_arrays():
    assert format_value(mx.arange(10.0)) == "float32[10] [0.0, 1.0, 2.0, ..., 9.0]"
    assert format_value(mx.array(1e-9)) == "1e-09"
    assert format_value(mx.array([[1, 2], [3, 4]])) == "[[1, 2], [3, 4]]"
