"""Run-time switches.

``check_scores`` (default on, or ``GENMLX_CHECK_SCORES=0`` to turn it off): after each
outermost eager GFI operation, GenMLX evaluates the score/weight once and raises
:class:`~genmlx.core.errors.NonFiniteScoreError` naming the site when a log density is
NaN or +inf (or -inf for a sampled value). Inside ``vmap``/``compile``/``grad`` nothing
is checked, since nothing can be evaluated there.

``lazy_particles`` (default on, or ``GENMLX_LAZY_PARTICLES=0``): batched traces may
keep parts of themselves out of ``mx.vmap`` and gather them lazily when particles are
resampled (:class:`~genmlx.core.tree.Opaque`; sequence combinators use it so that a
particle-filter step costs the same at every time step). Turning it off gives the
same numbers through a plain flatten of every array, which is slower for long traces.

``memory_checks`` (default on, or ``GENMLX_CHECK_MEMORY=0``): batched operations
estimate the memory their result needs before computing it and raise ``MemoryError``
when it cannot fit (see :mod:`genmlx.core.memory`), instead of letting MLX crash.

Example:
    >>> from genmlx.core import config
    >>> with config.score_checks(False):
    ...     pass
    >>> with config.lazy_particles(False):
    ...     config.lazy_particles_enabled()
    False
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = [
    "check_scores_enabled",
    "lazy_particles",
    "lazy_particles_enabled",
    "memory_checks",
    "memory_checks_enabled",
    "score_checks",
]

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


_LAZY: ContextVar[bool] = ContextVar(
    "genmlx_lazy_particles", default=os.environ.get("GENMLX_LAZY_PARTICLES", "1") != "0"
)


def lazy_particles_enabled() -> bool:
    """Whether batched traces may keep parts out of ``vmap`` (see the module docs)."""
    return _LAZY.get()


@contextlib.contextmanager
def lazy_particles(enabled: bool) -> Iterator[None]:
    """Turn lazy particle data on or off inside a ``with`` block."""
    token = _LAZY.set(enabled)
    try:
        yield
    finally:
        _LAZY.reset(token)


_MEMORY: ContextVar[bool] = ContextVar(
    "genmlx_check_memory", default=os.environ.get("GENMLX_CHECK_MEMORY", "1") != "0"
)


def memory_checks_enabled() -> bool:
    """Whether batched operations check their memory needs before computing."""
    return _MEMORY.get()


@contextlib.contextmanager
def memory_checks(enabled: bool) -> Iterator[None]:
    """Turn the memory estimate check on or off inside a ``with`` block."""
    token = _MEMORY.set(enabled)
    try:
        yield
    finally:
        _MEMORY.reset(token)
