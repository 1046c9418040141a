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
    "DistributionArgumentError",
    "GenMLXError",
    "ImproperPriorError",
    "InvalidAddressError",
    "InvalidKeyError",
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


class InvalidAddressError(AddressError, TypeError):
    """An address component that is neither a ``str`` nor an ``int`` (e.g. a float, a
    bool or an array). It is an :class:`AddressError` and, for older code, a
    ``TypeError``."""


class ConstraintError(GenMLXError, ValueError):
    """A constraint (or a choice given to ``assess``) was not used by the model."""


class ImproperPriorError(GenMLXError, TypeError):
    """A value was to be drawn from an improper prior (``flat``, ``half_flat``), which has
    no normalisable density to sample from (prior simulation, importance sampling with
    the prior as proposal, SMC from the prior). Give the choice a value, or use a
    gradient-based method (``logdensity``, ``mcmc``, MAP, ADVI).

    Attributes:
        op: the GFI operation that needed the draw (filled in by the model's body).
        path: the address of the choice (filled in as the error leaves each body).
    """

    def __init__(
        self, message: str, *, op: str | None = None, path: tuple[str | int, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.path = path

    def __str__(self) -> str:
        from genmlx.core.address import format_address

        where = self.op or ""
        if self.path:
            where = f"{where} at {format_address(self.path)}".strip()
        return f"{where}: {self.message}" if where else self.message


class InvalidKeyError(GenMLXError, TypeError):
    """A ``key=`` argument that is not an MLX key (``uint32``, shape ``(2,)``), an int
    seed or ``None``."""


class DistributionArgumentError(GenMLXError, ValueError, TypeError):
    """A distribution at a named address could not use its parameters (shapes that do
    not broadcast, a string or ``None`` where a number belongs, an empty probability
    vector, a plain number outside the parameter's domain)."""


class MissingChoiceError(AddressError):
    """``assess`` (or another operation that needs every choice) found none at an address."""


class NonFiniteScoreError(GenMLXError, FloatingPointError):
    """A log density came out NaN (or +inf, or -inf where a sampled value must be in support)."""


class BatchedControlFlowError(GenMLXError, ValueError):
    """A Python branch or ``float()``/``.item()`` met a value that is batched or traced."""


class PluginError(GenMLXError, ValueError):
    """A plugin registered an invalid object or a duplicate name."""
