"""The hook the sharding-aware functions of genmlx.infer call first: which
``mx.distributed`` group (if any) a call runs over. The implementations live in
:mod:`genmlx.infer.distributed`, imported only when a group is in play."""

from __future__ import annotations

from typing import Any


def group_for(group: Any, op: str) -> Any:
    """``group``, else the :func:`genmlx.infer.distributed.use_group` default, else None.

    Raises:
        TypeError: ``group`` is not an ``mx.distributed.Group``.
    """
    from genmlx.infer.distributed._comm import resolve_group

    return resolve_group(group, op)
