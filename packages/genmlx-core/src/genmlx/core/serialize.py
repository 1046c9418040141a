"""Saving results: pickling, deep copies and a portable file format.

**Pickle and deepcopy.** Choice maps, selections, traces (single and batched) and the
NamedTuple results built from them pickle and deep-copy. A generative function is
pickled *by reference* — as the module-level name it is bound to (a ``@gen`` function
is bound to its own name) — so an unpickled trace belongs to the very same model object
and can be updated with it. Generative functions that are not reachable as a module
global (say, a ``@gen`` function defined inside another function) pickle by value when
they can, and otherwise raise ``pickle.PicklingError`` saying so. Deep copies share the
generative functions (they are code, not data) and copy the arrays.

**Portable files.** :func:`save` writes any result built from arrays, numbers,
strings, lists, tuples, dicts, NamedTuples, choice maps, selections, diffs and traces
(plus classes registered with :func:`register_format`) to one ``.safetensors`` file:
the arrays as tensors and a small JSON document (addresses, structure, metadata and a
format version) in the file's metadata. Nothing is pickled and no code is stored, so
the file can be read by any safetensors reader and is safe to load. :func:`load` reads
it back; a trace comes back as a real :class:`~genmlx.core.Trace` by *replaying* its
saved choices through its generative function (``generate`` with every choice
constrained, which reproduces the trace exactly and is checked against the saved
score), or as a :class:`SavedTrace` record when the model is not available.

A file written by a newer, incompatible GenMLX raises :class:`FormatError` naming both
versions. Writes are atomic (a temporary file renamed over the target), so an
interrupted save never destroys the previous file.

Example:
    >>> import os, tempfile
    >>> import mlx.core as mx
    >>> from genmlx.core import choicemap, load, save
    >>> cm = choicemap({"a": 1.0, ("y", 0): mx.arange(3.0)})
    >>> path = os.path.join(tempfile.mkdtemp(), "cm.safetensors")
    >>> save(path, {"obs": cm, "note": "run 1"})
    >>> back = load(path)
    >>> back["note"], back["obs"][("y", 0)].tolist()
    ('run 1', [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from genmlx.core.address import Path
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.errors import GenMLXError
from genmlx.core.tree import TreeDef, flatten, unflatten

__all__ = [
    "FORMAT_VERSION",
    "FormatError",
    "SavedTrace",
    "load",
    "load_metadata",
    "reference",
    "register_format",
    "resolve_reference",
    "save",
]

FORMAT_VERSION = 1
"""Version of the file layout :func:`save` writes; :func:`load` reads versions up to it."""

_MAGIC = "genmlx"


class FormatError(GenMLXError, ValueError):
    """A file is not a GenMLX save file, comes from an incompatible version, or holds
    something that cannot be saved or rebuilt."""


# ---------------------------------------------------------------------------- references
def reference(obj: Any) -> str | None:
    """``"module:qualified.name"`` under which ``obj`` itself is importable, or None.

    Functions and ``@gen`` functions are found through their ``__module__`` and
    ``__qualname__``; other objects (distributions, combinators built at module level)
    by searching the globals of loaded modules for that very object.
    """
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if isinstance(mod, str) and isinstance(qual, str) and "<locals>" not in qual:
        ref = f"{mod}:{qual}"
        try:
            if resolve_reference(ref, import_=False) is obj:
                return ref
        except (FormatError, AttributeError, ImportError):
            pass
    cls_mod = getattr(type(obj), "__module__", None)
    first = [m for m in (cls_mod, "__main__") if isinstance(m, str)]
    for name in [*first, *sorted(sys.modules)]:
        module = sys.modules.get(name)
        if module is None:
            continue
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        for attr, value in items:
            if value is obj and not attr.startswith("__"):
                return f"{name}:{attr}"
    return None


def resolve_reference(ref: str, *, import_: bool = True) -> Any:
    """The object named by a :func:`reference` string (importing its module)."""
    mod_name, _, qual = ref.partition(":")
    if not qual:
        raise FormatError(f"{ref!r} is not a reference of the form 'module:name'")
    module = sys.modules.get(mod_name)
    if module is None:
        if not import_:
            raise FormatError(f"module {mod_name!r} is not loaded")
        module = importlib.import_module(mod_name)
    obj: Any = module
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _owned_part(owner: Any, path: tuple[Any, ...]) -> Any:
    obj = owner
    for step in path:
        obj = obj[step] if isinstance(step, int) else getattr(obj, step)
    return obj


def reduce_generative_function(gf: Any, protocol: int) -> Any:
    """Pickle support for generative functions: by reference when possible.

    A generative function built inside another one (say, the ``Switch`` inside a
    ``Mix``) may set ``_pickle_owner = (owner, path)``: it is then pickled as that part
    of its owner (``path`` of attribute names and indices), so that after unpickling it
    is again the very object its owner uses.
    """
    owned = getattr(gf, "_pickle_owner", None)
    if owned is not None:
        return (_owned_part, owned)
    ref = reference(gf)
    if ref is not None:
        return (resolve_reference, (ref,))
    if hasattr(gf, "fn") and getattr(type(gf), "__name__", "") == "DynamicGenerativeFunction":
        raise pickle.PicklingError(
            f"cannot pickle {gf!r}: the @gen function is not reachable as a module-level "
            "name (it is defined inside a function, or its name was rebound), so it can "
            "neither be pickled by reference nor by value. Define models at module level "
            "to pickle traces, or save results with genmlx.core.save(), which stores data "
            "only."
        )
    return object.__reduce_ex__(gf, protocol)


def _rebuild_tree(td: TreeDef, leaves: list[mx.array]) -> Any:
    return unflatten(td, leaves)


def reduce_trace(trace: Any) -> Any:
    """Pickle support for traces: their leaves and structure (opaque parts materialised)."""
    leaves, td = flatten(trace, thaw=True)
    return (_rebuild_tree, (td, leaves))


# ---------------------------------------------------------------------------- registry
class _Format(NamedTuple):
    cls: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_FORMATS: dict[str, _Format] = {}


def register_format(
    cls: type,
    encode: Callable[[Any], Any],
    decode: Callable[[Any], Any],
    name: str | None = None,
) -> None:
    """Teach :func:`save`/:func:`load` a class that is not built in.

    Args:
        cls: the class (instances of subclasses match too).
        encode: ``obj -> value`` made of things :func:`save` knows (arrays, numbers,
            strings, lists, dicts, NamedTuples, choice maps, traces, ...).
        decode: the inverse, ``value -> obj``.
        name: a stable name for the file (default ``"module:qualname"`` of ``cls``).
    """
    key = name or f"{cls.__module__}:{cls.__qualname__}"
    _FORMATS[key] = _Format(cls, encode, decode)


def _register_core_formats() -> None:
    from genmlx.core.params import ParamStore

    register_format(
        ParamStore,
        lambda store: dict(store.values_dict),
        lambda values: ParamStore(values),
        name="genmlx.core.ParamStore",
    )


# ---------------------------------------------------------------------------- records
class SavedTrace(NamedTuple):
    """A trace read back from a file without its generative function.

    Attributes:
        gen_fn: the reference (``"module:name"``) of the generative function, or None.
        name: its ``name`` when it was saved.
        args: the arguments (``None`` where they could not be saved).
        choices: the random choices (batched like the trace).
        score: the saved score.
        retval: the return value (``None`` where it could not be saved).
        batch_shape: ``()`` or ``(n,)``.
    """

    gen_fn: str | None
    name: str
    args: Any
    choices: ChoiceMap
    score: mx.array
    retval: Any
    batch_shape: tuple[int, ...]

    def restore(self, gen_fn: Any = None, args: Any = None) -> Any:
        """Rebuild the trace by replaying the saved choices through ``gen_fn``.

        Args:
            gen_fn: the generative function (default: the saved reference, imported).
            args: the arguments (default: the saved ones).

        Raises:
            FormatError: the generative function cannot be found, or replaying the
                choices does not reproduce the saved score (the model changed).
        """
        if gen_fn is None:
            if self.gen_fn is None:
                raise FormatError(
                    f"the trace of {self.name} was saved without a reference to its "
                    "generative function; pass it: saved.restore(gen_fn)"
                )
            try:
                gen_fn = resolve_reference(self.gen_fn)
            except Exception as e:
                raise FormatError(
                    f"cannot import {self.gen_fn!r} to rebuild the trace of {self.name} "
                    f"({type(e).__name__}: {e}); pass the model: saved.restore(gen_fn)"
                ) from e
        args = self.args if args is None else args
        if args is None or isinstance(args, _Unsaved):
            raise FormatError(
                f"the arguments of the trace of {self.name} could not be saved; pass them: "
                "saved.restore(gen_fn, args)"
            )
        from genmlx.core import config

        with config.score_checks(False):
            if self.batch_shape:
                tr, _ = gen_fn.vgenerate(tuple(args), self.choices, self.batch_shape[0], key=0)
            else:
                tr, _ = gen_fn.generate(tuple(args), self.choices, key=0)
        a = np.asarray(tr.score.astype(mx.float32))
        b = np.asarray(self.score.astype(mx.float32))
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-4, equal_nan=True):
            raise FormatError(
                f"replaying the saved choices through {gen_fn!r} gives score {a} but the "
                f"file holds {b}: the model (or its arguments) is not the one that made "
                "the trace. load(path, restore=False) returns the saved records."
            )
        return tr


class _Unsaved(NamedTuple):
    """A value that could not be saved (its type name)."""

    type_name: str


# ---------------------------------------------------------------------------- encoding
class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, mx.array] = {}

    def array(self, x: mx.array) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = x
        return key

    def enc(self, obj: Any, where: str, lenient: bool = False) -> Any:
        try:
            return self._enc(obj, where)
        except FormatError:
            if lenient:
                return {"$unsaved": type(obj).__name__}
            raise

    def _enc(self, obj: Any, where: str) -> Any:
        from genmlx.core.diff import Diff, NoChange, UnknownChange, VectorDiff
        from genmlx.core.gfi import GenerativeFunction
        from genmlx.core.selection import Selection
        from genmlx.core.trace import Trace

        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if isinstance(obj, mx.array):
            return {"$array": self.array(obj)}
        if isinstance(obj, np.ndarray):
            return {"$numpy": self.array(mx.array(obj)), "dtype": str(obj.dtype)}
        if isinstance(obj, (np.floating, np.integer, np.bool_)):
            return self._enc(obj.item(), where)
        for key, fmt in _FORMATS.items():
            if isinstance(obj, fmt.cls):
                return {"$registered": key, "value": self._enc(fmt.encode(obj), where)}
        if isinstance(obj, ChoiceMap):
            return {"$choicemap": self._choicemap(obj)}
        if isinstance(obj, Trace):
            return {"$trace": self._trace(obj, where)}
        if isinstance(obj, Selection):
            return {"$selection": _selection_enc(obj, where)}
        if isinstance(obj, Diff):
            if obj is NoChange or obj is UnknownChange:
                return {"$diff": repr(obj)}
            if isinstance(obj, VectorDiff):
                return {
                    "$vectordiff": [
                        obj.new_length,
                        obj.prev_length,
                        [[i, self._enc(d, where)] for i, d in obj.updated.items()],
                    ]
                }
        if isinstance(obj, GenerativeFunction):
            ref = reference(obj)
            if ref is None:
                raise FormatError(
                    f"save: {where} is {obj!r}, a generative function that is not a "
                    "module-level name, so the file could not refer to it"
                )
            return {"$ref": ref}
        if isinstance(obj, tuple) and hasattr(type(obj), "_fields"):
            cls = type(obj)
            return {
                "$namedtuple": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {
                    f: self._enc(v, f"{where}.{f}")
                    for f, v in zip(cls._fields, obj)  # type: ignore[attr-defined]
                },
            }
        if isinstance(obj, tuple):
            return {"$tuple": [self._enc(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return {"$list": [self._enc(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, dict):
            return {
                "$dict": [
                    [self._enc(k, f"{where} key"), self._enc(v, f"{where}[{k!r}]")]
                    for k, v in obj.items()
                ]
            }
        raise FormatError(
            f"save: {where} is a {type(obj).__module__}.{type(obj).__qualname__}, which "
            "the portable format does not know; convert it to arrays/numbers/dicts, or "
            "teach save about it with genmlx.core.serialize.register_format(cls, encode, "
            "decode) (or use pickle)"
        )

    def _choicemap(self, cm: ChoiceMap) -> Any:
        leaves = []
        for path, v, m in cm.masked_leaves():
            leaves.append(
                {
                    "path": list(path),
                    "value": self.array(v),
                    "mask": None if m is None else self.array(m),
                }
            )
        return {"batch_shape": list(cm.batch_shape), "leaves": leaves}

    def _trace(self, tr: Any, where: str) -> Any:
        return {
            "gen_fn": reference(tr.gen_fn),
            "name": str(getattr(tr.gen_fn, "name", None) or repr(tr.gen_fn)),
            "args": self.enc(tr.args, f"{where}.args", lenient=True),
            "choices": self._choicemap(tr.get_choices()),
            "score": self.array(tr.score),
            "retval": self.enc(tr.retval, f"{where}.retval", lenient=True),
            "batch_shape": list(tr.batch_shape),
        }


def _selection_enc(sel: Any, where: str) -> Any:
    from genmlx.core import selection as S

    if isinstance(sel, S._All):
        return "all"
    if isinstance(sel, S._None):
        return "none"
    if isinstance(sel, S._Addresses):
        return {"paths": [list(p) for p in sel.explicit_paths()]}
    if isinstance(sel, S._Complement):
        return {"not": _selection_enc(sel.inner, where)}
    if isinstance(sel, S._Union):
        return {"or": [_selection_enc(sel.a, where), _selection_enc(sel.b, where)]}
    if isinstance(sel, S._Intersection):
        return {"and": [_selection_enc(sel.a, where), _selection_enc(sel.b, where)]}
    raise FormatError(f"save: {where} is a selection of unknown kind {type(sel).__name__}")


def _selection_dec(d: Any) -> Any:
    from genmlx.core.selection import Selection, select

    if d == "all":
        return Selection.all()
    if d == "none":
        return Selection.none()
    if "paths" in d:
        return select(*[tuple(p) for p in d["paths"]]) if d["paths"] else Selection.none()
    if "not" in d:
        return ~_selection_dec(d["not"])
    if "or" in d:
        return _selection_dec(d["or"][0]) | _selection_dec(d["or"][1])
    return _selection_dec(d["and"][0]) & _selection_dec(d["and"][1])


# ---------------------------------------------------------------------------- decoding
class _Reader:
    def __init__(
        self,
        arrays: Mapping[str, mx.array],
        gen_fns: Mapping[str, Any],
        restore: bool,
    ) -> None:
        self.arrays = arrays
        self.gen_fns = gen_fns
        self.restore = restore

    def array(self, key: str) -> mx.array:
        try:
            return self.arrays[key]
        except KeyError:
            raise FormatError(f"load: the file is damaged (array {key!r} is missing)") from None

    def dec(self, d: Any) -> Any:
        from genmlx.core.diff import NoChange, UnknownChange, VectorDiff

        if d is None or isinstance(d, (bool, int, float, str)):
            return d
        if not isinstance(d, dict) or len(d) == 0:
            raise FormatError(f"load: the file is damaged (unexpected entry {d!r})")
        tag = next(iter(d))
        body = d[tag]
        if tag == "$float":
            return float(body)
        if tag == "$array":
            return self.array(body)
        if tag == "$numpy":
            return np.asarray(self.array(body)).astype(d.get("dtype", None))
        if tag == "$tuple":
            return tuple(self.dec(v) for v in body)
        if tag == "$list":
            return [self.dec(v) for v in body]
        if tag == "$dict":
            return {self.dec(k): self.dec(v) for k, v in body}
        if tag == "$choicemap":
            return self._choicemap(body)
        if tag == "$selection":
            return _selection_dec(body)
        if tag == "$diff":
            return NoChange if body == "NoChange" else UnknownChange
        if tag == "$vectordiff":
            return VectorDiff(body[0], body[1], {int(i): self.dec(x) for i, x in body[2]})
        if tag == "$unsaved":
            return _Unsaved(str(body))
        if tag == "$ref":
            return self._gen_fn(body, body)
        if tag == "$namedtuple":
            fields = {k: self.dec(v) for k, v in d["fields"].items()}
            try:
                cls = resolve_reference(body)
            except Exception:
                return fields  # the class is gone: its fields as a dict
            return cls(**fields)
        if tag == "$registered":
            fmt = _FORMATS.get(body)
            if fmt is None:
                raise FormatError(
                    f"load: the file holds a {body} saved by a registered format that is "
                    "not registered in this process (import the package that registers it)"
                )
            return fmt.decode(self.dec(d["value"]))
        if tag == "$trace":
            return self._trace(body)
        raise FormatError(f"load: the file is damaged (unknown entry kind {tag!r})")

    def _choicemap(self, body: Any) -> ChoiceMap:
        items = []
        for leaf in body["leaves"]:
            path: Path = tuple(leaf["path"])
            mask = None if leaf["mask"] is None else self.array(leaf["mask"])
            items.append((path, ChoiceMap(self.array(leaf["value"]), None, (), mask)))
        return ChoiceMap.from_nodes(items, tuple(body["batch_shape"]))

    def _gen_fn(self, ref: str | None, name: str) -> Any:
        for k in (ref, name):
            if k is not None and k in self.gen_fns:
                return self.gen_fns[k]
        if ref is None:
            return None
        try:
            return resolve_reference(ref)
        except Exception:
            return None

    def _trace(self, body: Any) -> Any:
        saved = SavedTrace(
            body["gen_fn"],
            body["name"],
            self.dec(body["args"]),
            self._choicemap(body["choices"]),
            self.array(body["score"]),
            self.dec(body["retval"]),
            tuple(body["batch_shape"]),
        )
        if not self.restore:
            return saved
        gf = self._gen_fn(saved.gen_fn, saved.name)
        if gf is None:
            raise FormatError(
                f"load: the file holds a trace of {saved.name} "
                f"({saved.gen_fn or 'no module-level name'}), which cannot be imported "
                "here; pass it as load(path, gen_fns={"
                f"{(saved.gen_fn or saved.name)!r}: model}}) or use load(path, "
                "restore=False) to get the saved records (SavedTrace)"
            )
        return saved.restore(gf)


# ---------------------------------------------------------------------------- API
def save(
    path: str | os.PathLike[str], obj: Any, *, metadata: Mapping[str, Any] | None = None
) -> None:
    """Write ``obj`` to ``path`` in GenMLX's portable format (a ``.safetensors`` file).

    Args:
        path: the file to write (replaced atomically if it exists).
        obj: choice maps, traces, inference results and containers of them (see the
            module docs for what is supported).
        metadata: optional JSON-serialisable data stored alongside (read it with
            :func:`load_metadata`).

    Raises:
        FormatError: ``obj`` holds something the format cannot store; the message
            names where it is in ``obj``.
    """
    from genmlx.core import __version__

    w = _Writer()
    tree = w.enc(obj, "the object")
    doc = {
        "format": _MAGIC,
        "version": FORMAT_VERSION,
        "genmlx_core": __version__,
        "tree": tree,
        "metadata": dict(metadata) if metadata is not None else {},
    }
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FormatError(f"save: the metadata must be JSON-serialisable ({e})") from e
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".genmlx-save-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            mx.save_safetensors(f, w.arrays, metadata={_MAGIC: text})
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, mx.array], dict[str, Any]]:
    target = os.fspath(path)
    try:
        with open(target, "rb") as f:
            loaded: Any = mx.load(f, format="safetensors", return_metadata=True)
        arrays: dict[str, mx.array] = dict(loaded[0])
        meta: dict[str, str] = dict(loaded[1])
    except FileNotFoundError:
        raise
    except Exception as e:
        raise FormatError(
            f"load: {target} is not a GenMLX save file (not readable as safetensors: {e})"
        ) from e
    text = meta.get(_MAGIC)
    if text is None:
        raise FormatError(
            f"load: {target} is a safetensors file but not one written by genmlx.core.save "
            "(it has no 'genmlx' metadata)"
        )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"load: {target} is damaged (its GenMLX metadata: {e})") from e
    version = doc.get("version")
    if doc.get("format") != _MAGIC or not isinstance(version, int):
        raise FormatError(f"load: {target} is damaged (no format version)")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"load: {target} was written in GenMLX save format version {version} (by "
            f"genmlx-core {doc.get('genmlx_core', '?')}); this genmlx-core reads versions "
            f"up to {FORMAT_VERSION}. Upgrade genmlx-core to read it."
        )
    if version < 1:
        raise FormatError(f"load: {target} has an unknown format version {version}")
    return arrays, doc


def load(
    path: str | os.PathLike[str],
    *,
    gen_fns: Mapping[str, Any] | None = None,
    restore: bool = True,
) -> Any:
    """Read what :func:`save` wrote.

    Args:
        path: the file.
        gen_fns: generative functions to rebuild traces with, keyed by the reference
            (``"module:name"``) or the name (``gen_fn.name``) recorded in the file; by
            default the reference is imported.
        restore: rebuild traces (replaying their choices); ``False`` returns
            :class:`SavedTrace` records instead, which need no model code.

    Raises:
        FormatError: not a GenMLX file, an incompatible version, or a trace whose
            model cannot be found or no longer reproduces it.
    """
    arrays, doc = _read(path)
    return _Reader(arrays, dict(gen_fns or {}), restore).dec(doc["tree"])


def load_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata`` given to :func:`save`, plus ``"version"`` and ``"genmlx_core"``."""
    _, doc = _read(path)
    return {
        **doc.get("metadata", {}),
        "version": doc["version"],
        "genmlx_core": doc.get("genmlx_core"),
    }


_register_core_formats()
