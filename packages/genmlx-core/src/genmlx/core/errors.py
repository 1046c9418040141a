"""Exceptions raised by GenMLX.

Every message names the operation, the address involved and what to do about it.
All of them derive from :class:`GenMLXError`, so ``except GenMLXError`` catches any
modelling mistake GenMLX detects.
"""

from __future__ import annotations

__all__ = [
    "AddressError",
    "BatchedControlFlowError",
    "ConstraintError",
    "GenMLXError",
    "MissingChoiceError",
    "NonFiniteScoreError",
    "PluginError",
]


class GenMLXError(Exception):
    """Base class of GenMLX's errors."""


class AddressError(GenMLXError, KeyError):
    """An address was repeated, is not in a trace or choice map, or has the wrong kind.

    It is also a ``KeyError`` so dictionary-style code keeps working.
    """

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ConstraintError(GenMLXError, ValueError):
    """A constraint (or a choice given to ``assess``) was not used by the model."""


class MissingChoiceError(AddressError):
    """``assess`` (or another operation that needs every choice) found none at an address."""


class NonFiniteScoreError(GenMLXError, FloatingPointError):
    """A log density came out NaN (or +inf, or -inf where a sampled value must be in support)."""


class BatchedControlFlowError(GenMLXError, ValueError):
    """A Python branch or ``float()``/``.item()`` met a value that is batched or traced."""


class PluginError(GenMLXError, ValueError):
    """A plugin registered an invalid object or a duplicate name."""
