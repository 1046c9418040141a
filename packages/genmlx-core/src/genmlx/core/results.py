"""The result records of the GFI operations (NamedTuples, so they unpack like tuples)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import mlx.core as mx

from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff
from genmlx.core.trace import Trace

if TYPE_CHECKING:
    from genmlx.core.edit import EditRequest

__all__ = [
    "AssessResult",
    "EditResult",
    "GenerateResult",
    "ProposeResult",
    "RegenerateResult",
    "UpdateResult",
]


class GenerateResult(NamedTuple):
    """Result of ``generate``: the trace and its importance weight."""

    trace: Trace
    weight: mx.array


class AssessResult(NamedTuple):
    """Result of ``assess``: ``log p(choices; args)`` and the return value."""

    log_density: mx.array
    retval: Any


class ProposeResult(NamedTuple):
    """Result of ``propose``: sampled choices, their log density and the return value."""

    choices: ChoiceMap
    weight: mx.array
    retval: Any


class UpdateResult(NamedTuple):
    """Result of ``update``."""

    trace: Trace
    weight: mx.array
    retdiff: Diff
    discard: ChoiceMap


class RegenerateResult(NamedTuple):
    """Result of ``regenerate``."""

    trace: Trace
    weight: mx.array
    retdiff: Diff


class EditResult(NamedTuple):
    """Result of ``edit``: the request that undoes the edit comes back as well."""

    trace: Trace
    weight: mx.array
    retdiff: Diff
    backward_request: EditRequest
