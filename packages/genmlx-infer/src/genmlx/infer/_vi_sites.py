"""Finding a generative function's random choices together with their distributions.

A trace records each choice's value and log density but not the distribution that made
it. Variational inference needs more: ADVI picks a constraining bijection from each
latent choice's support, and the reparameterised ELBO needs to know that every guide
choice has a reparameterised sampler. :func:`find_sites` runs a ``@gen`` body once under
its own handler, which records every ``dist(params) @ addr`` site with its distribution
and parameters, and descends into ``@gen`` sub-calls. Other generative functions
(combinators, custom ones) are run with ``generate`` and their choices reported without
a distribution (``dist is None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import interpreter as H
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.distribution import Distribution
from genmlx.core.dsl import DynamicGenerativeFunction
from genmlx.core.errors import ConstraintError
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.random import KeyStream

__all__ = ["Site", "find_sites"]


class Site(NamedTuple):
    """One random choice found by :func:`find_sites`.

    Attributes:
        path: its address, as a tuple path.
        dist: its distribution, or ``None`` inside a generative function that is not a
            ``@gen`` function (its body cannot be inspected).
        params: the distribution's parameters at this execution (``None`` with ``dist``).
        value: the value taken (the constraint where observed, else a sample).
        observed: whether the value came from the constraints.
        call: for a choice without a distribution, the path of the generative function
            call that made it (``None`` otherwise).
    """

    path: Path
    dist: Distribution | None
    params: tuple[Any, ...] | None
    value: mx.array
    observed: bool
    call: Path | None = None


def _observed_value(constraints: ChoiceMap, path: Path, op: str) -> mx.array | None:
    if not constraints.has_value(path):
        return None
    if constraints.get_mask(path) is not None:
        raise ConstraintError(
            f"{op}: the observation at {format_address(path)} is masked; variational "
            "inference needs each observation given in full (leave it out instead)"
        )
    return as_array(constraints[path])


def _handler(
    prefix: Path, constraints: ChoiceMap, sites: list[Site], op: str
) -> Callable[..., tuple[KeyStream, Any]]:
    def handler(
        state: KeyStream, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]
    ) -> tuple[KeyStream, Any]:
        full = (*prefix, *path)
        state, sub = state.site()
        if isinstance(gf, Distribution):
            value = _observed_value(constraints, full, op)
            observed = value is not None
            if value is None:
                value = gf.placeholder(*args) if gf.is_improper else gf.sample(sub, *args)
            sites.append(Site(full, gf, tuple(args), value, observed))
            return state, value
        if isinstance(gf, DynamicGenerativeFunction):
            inner = _handler(full, constraints, sites, op)
            _, retval = H.run_body(op, gf.name, gf.fn, tuple(args), inner, KeyStream.start(sub))
            return state, retval
        cons = constraints.get_submap(full)
        tr, _ = gf.generate(tuple(args), cons, key=sub)
        for p, v in tr.get_choices().leaves():
            sites.append(Site((*full, *p), None, None, v, cons.has_value(p), full))
        return state, tr.retval

    return handler


def find_sites(
    gf: GenerativeFunction,
    args: tuple[Any, ...],
    constraints: ChoiceMap,
    key: mx.array,
    op: str,
) -> list[Site]:
    """Every random choice of one execution of ``gf`` consistent with ``constraints``.

    Raises:
        ConstraintError: a constraint names an address the execution did not visit.
    """
    sites: list[Site] = []
    if isinstance(gf, Distribution):
        value = _observed_value(constraints, (), op)
        observed = value is not None
        if value is None:
            value = gf.placeholder(*args) if gf.is_improper else gf.sample(key, *args)
        sites.append(Site((), gf, tuple(args), value, observed))
    elif isinstance(gf, DynamicGenerativeFunction):
        H.run_body(
            op,
            gf.name,
            gf.fn,
            tuple(args),
            _handler((), constraints, sites, op),
            KeyStream.start(key),
        )
    else:
        _handler((), constraints, sites, op)(KeyStream.start(key), (), gf, tuple(args))
    seen = {s.path for s in sites if s.observed}
    for path, _ in constraints.leaves():
        if path not in seen:
            raise ConstraintError(
                f"{op}: the observation at address {format_address(path)} was not used — "
                f"{gf!r} made no random choice there. Check the address for typos."
            )
    return sites
