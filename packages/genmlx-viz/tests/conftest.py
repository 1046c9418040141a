"""Shared test setup: the Agg backend and a pinned matplotlib style.

Every test runs inside ``rc_context`` with matplotlib's defaults plus the settings
below, so a user's matplotlibrc cannot change what the tests see, and figures are
rendered the same way every time (the image comparisons depend on it).
"""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib as mpl
import pytest

PINNED_RC = {
    "font.family": "DejaVu Sans",
    "figure.dpi": 72,
    "savefig.dpi": 72,
    "text.hinting": "none",
    "axes.formatter.use_locale": False,
    "svg.hashsalt": "genmlx-viz",
}


@pytest.fixture(autouse=True)
def pinned_style() -> Iterator[None]:
    """Matplotlib's default style with fixed fonts and resolution, restored afterwards."""
    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(PINNED_RC)
        yield
