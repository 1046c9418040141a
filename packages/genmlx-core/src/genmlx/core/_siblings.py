"""A missing first-party package says which distribution to install.

``genmlx`` is a namespace shared by separately installed distributions, so without
help ``import genmlx.infer`` on a machine that only has genmlx-core fails with a bare
``No module named 'genmlx.infer'``. :func:`install` (run when ``genmlx.core`` is
imported) appends a finder to the *end* of :data:`sys.meta_path`: it is asked only
after every other finder has failed to find ``genmlx.<name>`` for one of the sibling
packages, and then raises :class:`ModuleNotFoundError` naming the distribution.
Installed packages are never affected (their own finder answers first).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["SIBLINGS", "MissingSiblingFinder", "install"]

#: import name under ``genmlx`` -> what the distribution holds (for the message).
SIBLINGS: dict[str, str] = {
    "dists": "distributions",
    "combinators": "combinators (Map, Unfold, Switch, ...)",
    "infer": "inference (importance sampling, MCMC, SMC, VI)",
    "nn": "neural networks and amortized inference",
    "viz": "plots and ArviZ export",
}


class MissingSiblingFinder:
    """Meta-path finder of last resort for ``genmlx.<sibling>`` (see the module doc)."""

    @classmethod
    def find_spec(
        cls,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        parts = fullname.split(".")
        if len(parts) != 2 or parts[0] != "genmlx" or parts[1] not in SIBLINGS:
            return None
        dist = f"genmlx-{parts[1]}"
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: it comes with the {dist} package "
            f"({SIBLINGS[parts[1]]}), which is not installed. Install it with `pip install {dist}` "
            f"(from a clone of GenMLX: `python3 -m nox -s build` then "
            f"`pip install --find-links dist {dist}`).",
            name=fullname,
        )


def install() -> None:
    """Append :class:`MissingSiblingFinder` to :data:`sys.meta_path` once."""
    if MissingSiblingFinder not in sys.meta_path:
        sys.meta_path.append(MissingSiblingFinder)
