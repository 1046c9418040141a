"""Resolve cross-references to GenMLX objects by what they are, not where they live.

The API pages document each object where users import it (``genmlx.core.ChoiceMap``,
``genmlx.infer.advi``). Docstrings and type hints also name objects by their defining
module (``genmlx.core.choicemap.ChoiceMap``), by a module that re-exports them
(``genmlx.infer.vi.advi``) or, inside a module's own docstrings, by a short name
(``Trace``). Sphinx's Python domain finds only the exact documented name; this
extension, on ``missing-reference``, imports the target, finds the object, and
resolves the reference to the name under which that object *is* documented. A target
that does not import, or whose object is documented nowhere, stays missing, so
``nitpicky`` still reports every dead reference.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

_MISSING = object()


def _attribute_first(path: str) -> Any:
    """``from a.b import c`` semantics: ``c`` as an attribute of ``a.b`` when it is one
    (``genmlx.infer.advi`` is the function that ``genmlx.infer`` exports, not the
    submodule of that name)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                break
        else:
            return obj
    return _MISSING


def _lookup(path: str, module_first: bool = False) -> Any:
    """The object at dotted ``path``, or _MISSING."""
    if module_first:
        try:
            return importlib.import_module(path)
        except Exception:
            pass
    obj = _attribute_first(path)
    if obj is _MISSING and not module_first:
        try:
            return importlib.import_module(path)
        except Exception:
            return _MISSING
    return obj


def _documented_names(env: BuildEnvironment) -> dict[int, list[str]]:
    """id(object) -> the names it is documented under (computed once per build)."""
    cache = getattr(env, "_genmlx_ref_index", None)
    if cache is not None:
        return cache
    index: dict[int, list[str]] = {}
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    for name, entry in objects.items():
        obj = _lookup(name, module_first=entry.objtype == "module")
        if obj is not _MISSING and not isinstance(obj, (int, float, str, bool, type(None))):
            index.setdefault(id(obj), []).append(name)
    env._genmlx_ref_index = index  # type: ignore[attr-defined]
    return index


def _candidates(node: nodes.Element) -> list[str]:
    target = node["reftarget"].lstrip("~.")
    module = node.get("py:module")
    cls = node.get("py:class")
    out = []
    if module and cls:
        out.append(f"{module}.{cls}.{target}")
    if module:
        out.append(f"{module}.{target}")
    out.append(target)
    return out


def resolve(
    app: Sphinx, env: BuildEnvironment, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    index = _documented_names(env)
    for candidate in _candidates(node):
        if not candidate.startswith("genmlx"):
            continue
        obj = _lookup(candidate, module_first=node["reftype"] == "mod")
        if obj is _MISSING:
            continue
        names = index.get(id(obj), [])
        if not names and not (
            inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)
        ):
            # an instance documented through its class (a distribution such as
            # genmlx.dists.normal is described by genmlx.dists.Normal)
            names = index.get(id(type(obj)), [])
        for name in names:
            ref = domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
            )
            if ref is None:  # e.g. :func: on a class: any role of the object's kind
                ref = domain.resolve_xref(
                    env, node["refdoc"], app.builder, "obj", name, node, contnode
                )
            if ref is not None:
                return ref
    # a short name (``:func:`moving_average``` in the docstring of a function documented
    # under its package): the one documented object whose name ends with it
    target = node["reftarget"].lstrip("~.")
    if "." not in target:
        objects = domain.objects  # type: ignore[attr-defined]
        matches = {n for n in objects if n.startswith("genmlx") and n.endswith("." + target)}
        found = {id(_lookup(n, module_first=objects[n].objtype == "module")) for n in matches}
        if len(found) == 1:
            name = sorted(matches)[0]
            for role in (node["reftype"], "obj"):
                ref = domain.resolve_xref(
                    env, node["refdoc"], app.builder, role, name, node, contnode
                )
                if ref is not None:
                    return ref
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", resolve, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
