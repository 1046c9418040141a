"""Shared by the GPU benchmark sections: one failing cell is reported, the rest runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def guard(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or ``{"error": ...}`` naming the exception (so that one failing
    cell of a table is reported and the rest of the section still runs)."""
    try:
        return fn(*args)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:400]}
