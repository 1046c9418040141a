"""Addresses: where a random choice or a sub-call lives in a trace.

An address is a string, an int, or a tuple of strings and ints. A tuple is a *path*
through the hierarchy: ``("y", 3)`` is ``y`` → ``3``, the same place a choice map built
from ``{"y": {3: ...}}`` puts its leaf. Internally every address is normalised to a
tuple of components; :func:`format_address` turns one back into the form a user wrote.

Example:
    >>> from genmlx.core.address import to_path, format_address
    >>> to_path("x"), to_path(("y", 3))
    (('x',), ('y', 3))
    >>> format_address(("y", 3))
    "('y', 3)"
"""

from __future__ import annotations

from genmlx.core.errors import InvalidAddressError

Component = str | int
"""One step of an address path."""

Address = str | int | tuple[str | int, ...]
"""What users write: a component or a tuple path."""

Path = tuple[Component, ...]
"""The normalised form of an address."""

ROOT: Path = ()
"""The empty path: the address of a distribution's single choice."""


def _check_component(c: object, addr: object) -> Component:
    # bool is an int subclass; ``True`` as an address is almost always a bug.
    if isinstance(c, bool) or not isinstance(c, (str, int)):
        hint = (
            " Convert array indices with int(i)."
            if not isinstance(c, bool)
            else " (True/False as an address is almost always a bug)"
        )
        raise InvalidAddressError(
            f"invalid address {addr!r}: address components must be str or int, "
            f"got {type(c).__name__} {c!r}.{hint}"
        )
    return c


def to_path(addr: Address) -> Path:
    """Normalise an address to a tuple path.

    Args:
        addr: a string, an int, or a tuple of them.

    Returns:
        The tuple of components.

    Raises:
        InvalidAddressError: if a component is neither ``str`` nor ``int`` (an
            :class:`~genmlx.core.errors.AddressError`, also a ``TypeError``).
    """
    if isinstance(addr, tuple):
        return tuple(_check_component(c, addr) for c in addr)
    return (_check_component(addr, addr),)


def from_path(path: Path) -> Address:
    """The user-facing form of a path: a bare component for length-1 paths."""
    if len(path) == 1:
        return path[0]
    return path


def format_address(addr: Address | Path) -> str:
    """A readable rendering of an address for error messages."""
    if isinstance(addr, tuple):
        if len(addr) == 0:
            return "<root>"
        if len(addr) == 1:
            return repr(addr[0])
    return repr(addr)
