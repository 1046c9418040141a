"""Run-time switches.

``check_scores`` (default on, or ``GENMLX_CHECK_SCORES=0`` to turn it off): after each
outermost eager GFI operation, GenMLX evaluates the score/weight once and raises
:class:`~genmlx.core.errors.NonFiniteScoreError` naming the site when a log density is
NaN or +inf (or -inf for a sampled value). Inside ``vmap``/``compile``/``grad`` nothing
is checked, since nothing can be evaluated there.

Example:
    >>> from genmlx.core import config
    >>> with config.score_checks(False):
    ...     pass
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["check_scores_enabled", "score_checks"]

_CHECK: ContextVar[bool] = ContextVar(
    "genmlx_check_scores", default=os.environ.get("GENMLX_CHECK_SCORES", "1") != "0"
)


def check_scores_enabled() -> bool:
    """Whether non-finite scores raise."""
    return _CHECK.get()


@contextlib.contextmanager
def score_checks(enabled: bool) -> Iterator[None]:
    """Turn the non-finite score check on or off inside a ``with`` block."""
    token = _CHECK.set(enabled)
    try:
        yield
    finally:
        _CHECK.reset(token)
