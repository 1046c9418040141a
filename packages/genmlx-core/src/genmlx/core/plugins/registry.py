"""The plugin registry: what every installed plugin provides, loaded lazily.

``registry()`` returns the process-wide :class:`Registry`. Its categories
(``.distributions``, ``.combinators``, ``.inference``, ``.nn``, ``.visualizers``) are
read-only mappings from name to object; ``.provider(name)`` says which plugin
registered a name. Plugins are loaded from the ``genmlx`` entry-point group the first
time a category is read — never at ``import genmlx.core`` — unless the environment
variable ``GENMLX_DISABLE_PLUGIN_AUTOLOAD=1`` is set. Plugins can also be added by hand
with :meth:`Registry.register_plugin`.

A plugin that cannot be loaded — its module fails to import, its entry point is
malformed, it registers an invalid object or a name another plugin already has, or it
defines a function that looks like a hook but is not one (a misspelt hook name) — is
skipped as a whole: nothing it registered is kept, a :class:`PluginLoadWarning` names
it, and ``Registry.load_errors`` lists it (``python -m genmlx.core plugins`` prints
the list and exits with status 1). Every other plugin, the built-in ones included,
keeps working. First-party ``genmlx.*`` plugins load first, so a third-party plugin
can never displace a built-in name.

``register`` also takes keyword *metadata* that the conformance kit reads (see
:data:`METADATA_KEYS`): what a visualizer accepts, how to build a kernel or a
combinator on the kit's test models. Each key may instead be an attribute of the
registered object; metadata given at registration wins (:meth:`Entry.info`).

Example:
    >>> from genmlx.core.plugins import Registry, hookimpl
    >>> from genmlx.core.testing.models import normal
    >>> class MyPlugin:
    ...     @hookimpl
    ...     def genmlx_register_distributions(self, register):
    ...         register(normal, name="my_normal", aliases=("mn",))
    >>> reg = Registry(autoload=False)
    >>> reg.register_plugin(MyPlugin(), name="mine")
    >>> reg.distributions["mn"] is normal, reg.distributions.provider("my_normal")
    (True, 'mine')
"""

from __future__ import annotations

import difflib
import inspect
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata as importlib_metadata
from types import MappingProxyType
from typing import Any, NamedTuple

import pluggy

from genmlx.core.errors import PluginError
from genmlx.core.plugins import hookspecs

__all__ = [
    "KINDS",
    "METADATA_KEYS",
    "Category",
    "Entry",
    "PluginLoadError",
    "PluginLoadWarning",
    "Registry",
    "registry",
]

KINDS: tuple[str, ...] = ("distributions", "combinators", "inference", "nn", "visualizers")
"""The categories, in the order of their hooks."""

_HOOKS = {kind: f"genmlx_register_{kind}" for kind in KINDS}

ENTRY_POINT_GROUP = "genmlx"


METADATA_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "distributions": frozenset({"examples", "example_params", "conformance_batched"}),
        "combinators": frozenset(
            {"examples", "conformance_examples", "conformance_build", "conformance_batched"}
        ),
        "inference": frozenset({"conformance_kernel", "info_fields"}),
        "nn": frozenset(),
        "visualizers": frozenset({"accepts", "conformance_call"}),
    }
)
"""The registration metadata each kind accepts (``register(obj, ..., key=value)``).

* distributions: ``examples`` (parameter tuples for the kit; ``example_params`` is the
  older name), ``conformance_batched`` (False: skip the batched laws);
* combinators: ``examples`` (``[(gen_fn, args), ...]`` or a function returning it;
  ``conformance_examples`` is the older name),
  ``conformance_build`` (``kernel -> [(gen_fn, args), ...]``: the combinator applied to
  one of the kit's kernels, see :mod:`genmlx.core.testing.combinators`),
  ``conformance_batched``;
* inference: ``conformance_kernel`` (``test_model -> kernel | None``: the kernel set up
  for one of the kit's test models, see :mod:`genmlx.core.testing.kernels`),
  ``info_fields`` (attributes the kernel's info must carry besides ``accepted``);
* visualizers: ``accepts`` (the result types it draws, names from
  :data:`genmlx.core.plugins.result_types.RESULT_TYPES`), ``conformance_call``
  (``(visualizer, example, **kwargs) -> figure`` when it needs more than the result,
  see :mod:`genmlx.core.testing.visualizers`).
"""


class Entry(NamedTuple):
    """One registered object: its name, the object, its provider, aliases and metadata."""

    name: str
    obj: Any
    plugin: str
    aliases: tuple[str, ...]
    metadata: Mapping[str, Any] = MappingProxyType({})

    def info(self, key: str, default: Any = None) -> Any:
        """Conformance information ``key``: registration metadata, else the object's
        attribute of that name, else ``default``."""
        if key in self.metadata:
            return self.metadata[key]
        return getattr(self.obj, key, default)

    def examples(self) -> list[Any]:
        """The conformance examples registered with the object (``examples=``): parameter
        tuples for a distribution, ``(generative_function, args)`` pairs for a
        combinator. Plugins written before ``examples=`` existed give them as
        ``example_params`` / ``conformance_examples`` (metadata or an attribute of the
        object); those are read too."""
        found = self.metadata.get("examples")
        if found is None:
            for old in ("example_params", "conformance_examples"):
                found = self.info(old)
                if found is not None:
                    break
        if found is None:
            return []
        return list(found() if callable(found) else found)


class PluginLoadError(NamedTuple):
    """A plugin that was skipped, and why.

    Attributes:
        plugin: the plugin's name (its entry-point name, or the name given to
            :meth:`Registry.register_plugin`).
        source: where it comes from (``"module:attr (distribution 1.0)"``).
        message: what went wrong and what to do about it.
    """

    plugin: str
    source: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.source}) was skipped: {self.message}"


class PluginLoadWarning(UserWarning):
    """Warned once per plugin that failed to load (see ``Registry.load_errors``)."""


_HOOK_NAMES = frozenset(_HOOKS.values())


def _misspelt_hooks(plugin: Any) -> list[str]:
    """Messages for attributes that look like hooks but are not (or are not marked)."""
    out = []
    for attr in dir(plugin):
        if not attr.startswith("genmlx_"):
            continue
        fn = getattr(plugin, attr, None)
        if not callable(fn):
            continue
        marked = getattr(fn, "genmlx_impl", None) is not None
        if attr in _HOOK_NAMES:
            if not marked:
                out.append(
                    f"{attr} is not decorated with @hookimpl (from genmlx.core.plugins), so "
                    "it would never be called"
                )
            continue
        close = difflib.get_close_matches(attr, sorted(_HOOK_NAMES), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        out.append(f"{attr} is not a GenMLX hook (hooks: {', '.join(sorted(_HOOK_NAMES))}){hint}")
    return out


def _validate(kind: str, obj: Any, plugin: str) -> None:
    from genmlx.core.distribution import Distribution
    from genmlx.core.gfi import GenerativeFunction

    if kind == "distributions":
        if not isinstance(obj, Distribution):
            raise PluginError(
                f"plugin {plugin!r} registered {obj!r} as a distribution, but it is not an "
                "instance of genmlx.core.Distribution (subclass it and implement sample and "
                "log_prob)"
            )
        return
    if kind == "combinators" and inspect.isclass(obj):
        if not issubclass(obj, GenerativeFunction):
            raise PluginError(
                f"plugin {plugin!r} registered class {obj.__name__} as a combinator, but it "
                "does not subclass genmlx.core.GenerativeFunction"
            )
        return
    if not callable(obj):
        raise PluginError(
            f"plugin {plugin!r} registered {obj!r} under {kind}, which needs a callable"
        )


_CALLABLE_METADATA = frozenset(
    {"conformance_kernel", "conformance_build", "conformance_examples", "conformance_call"}
)


def _validate_metadata(kind: str, metadata: Mapping[str, Any], plugin: str, name: str) -> None:
    unknown = sorted(set(metadata) - METADATA_KEYS[kind])
    if unknown:
        known = ", ".join(sorted(METADATA_KEYS[kind])) or "none"
        raise PluginError(
            f"plugin {plugin!r} registered {kind} {name!r} with unknown metadata "
            f"{', '.join(map(repr, unknown))}; {kind} accept: {known}"
        )
    if "accepts" in metadata:
        from genmlx.core.plugins.result_types import RESULT_TYPES

        accepts = metadata["accepts"]
        if isinstance(accepts, str) or not all(isinstance(a, str) for a in accepts):
            raise PluginError(
                f"plugin {plugin!r}: accepts= of visualizer {name!r} must be a tuple of "
                f"result-type names, got {accepts!r}"
            )
        bad = sorted(set(accepts) - set(RESULT_TYPES))
        if bad or not accepts:
            raise PluginError(
                f"plugin {plugin!r}: visualizer {name!r} accepts unknown result types "
                f"{bad or '(none given)'}; use some of {', '.join(RESULT_TYPES)}"
            )
    for key in sorted(_CALLABLE_METADATA):
        if key in metadata and not callable(metadata[key]):
            raise PluginError(
                f"plugin {plugin!r}: {key}= of {kind} {name!r} must be a callable, "
                f"got {metadata[key]!r}"
            )


def _default_name(kind: str, obj: Any) -> str:
    name = getattr(obj, "name", None) if kind == "distributions" else None
    if not name:
        name = getattr(obj, "__name__", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"cannot infer a name for {obj!r}; pass register(obj, name=...)")
    return name


class Category(Mapping[str, Any]):
    """Read-only view of one kind of registered object (names and aliases → objects)."""

    def __init__(self, registry: Registry, kind: str) -> None:
        self._registry = registry
        self.kind = kind

    def _table(self) -> dict[str, Entry]:
        self._registry._ensure_loaded()
        return self._registry._tables[self.kind]

    def __getitem__(self, name: str) -> Any:
        table = self._table()
        if name not in table:
            raise KeyError(
                f"no {self.kind[:-1] if self.kind.endswith('s') else self.kind} named "
                f"{name!r} is registered (known: {sorted(table)}); is the plugin that "
                "provides it installed?"
            )
        return table[name].obj

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` (object, provider, aliases) for a name or alias."""
        self[name]
        return self._table()[name]

    def provider(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self.entry(name).plugin

    def entries(self) -> list[Entry]:
        """Every registration once (aliases folded into their entry)."""
        seen: dict[int, Entry] = {}
        for e in self._table().values():
            seen.setdefault(id(e), e)
        return list(seen.values())


class Registry:
    """Holds the plugin manager and the registered objects of every kind.

    Args:
        autoload: load entry points on first use (default: unless
            ``GENMLX_DISABLE_PLUGIN_AUTOLOAD=1``).

    The list ``load_errors`` holds a :class:`PluginLoadError` for every plugin that was
    skipped while loading.
    """

    def __init__(self, autoload: bool | None = None) -> None:
        if autoload is None:
            autoload = os.environ.get("GENMLX_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true")
        self.autoload = autoload
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._tables: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()
        self.load_errors: list[PluginLoadError] = []

    # ------------------------------------------------------------------ categories
    @property
    def distributions(self) -> Category:
        """Registered distributions."""
        return Category(self, "distributions")

    @property
    def combinators(self) -> Category:
        """Registered combinators."""
        return Category(self, "combinators")

    @property
    def inference(self) -> Category:
        """Registered inference algorithms and kernels."""
        return Category(self, "inference")

    @property
    def nn(self) -> Category:
        """Registered neural-network generative functions."""
        return Category(self, "nn")

    @property
    def visualizers(self) -> Category:
        """Registered visualizers."""
        return Category(self, "visualizers")

    def category(self, kind: str) -> Category:
        """The category called ``kind`` (one of :data:`KINDS`)."""
        if kind not in KINDS:
            raise KeyError(f"unknown plugin category {kind!r}; use one of {KINDS}")
        return Category(self, kind)

    # ------------------------------------------------------------------ loading
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:
                return  # loaded meanwhile, or a plugin reads the registry while loading
            self._loading = True
            try:
                if self.autoload:
                    self._load_entry_points()
            finally:
                self._loading = False
                self._loaded = True

    @property
    def loaded(self) -> bool:
        """Whether entry points have been loaded (lazy loading has happened)."""
        return self._loaded

    def _load_entry_points(self) -> None:
        try:
            eps = list(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP))
        except Exception as e:  # a broken installed distribution's metadata
            self._fail("<entry points>", "importlib.metadata", f"cannot list entry points: {e}")
            return
        # first-party plugins first, then the others by name: deterministic, and a
        # third-party plugin can never take a built-in name
        eps.sort(key=lambda ep: (not ep.value.startswith("genmlx."), ep.name, ep.value))
        seen: set[str] = set()
        for ep in eps:
            dist = getattr(ep, "dist", None)
            source = ep.value + (f" ({dist.name} {dist.version})" if dist is not None else "")
            if ep.name in seen:
                self._fail(
                    ep.name,
                    source,
                    "another installed package declares a 'genmlx' entry point with the same "
                    "name; rename one of them",
                )
                continue
            seen.add(ep.name)
            if importlib_metadata.EntryPoint.pattern.match(ep.value) is None:
                self._fail(
                    ep.name,
                    source,
                    f"its entry point value {ep.value!r} is malformed; write "
                    "'package.module' or 'package.module:attribute' (group 'genmlx')",
                )
                continue
            try:
                plugin = ep.load()
            except Exception as e:
                self._fail(
                    ep.name,
                    source,
                    f"importing it raised {type(e).__name__}: {e}. Check that the package is "
                    "installed completely and that its 'genmlx' entry point names an "
                    "importable module",
                )
                continue
            try:
                self._add_plugin(plugin, ep.name)
            except PluginError as e:
                self._fail(ep.name, source, str(e))
            except Exception as e:  # the plugin's own hook code raised
                self._fail(ep.name, source, f"its hook raised {type(e).__name__}: {e}")

    def _fail(self, plugin: str, source: str, message: str) -> None:
        err = PluginLoadError(plugin, source, message)
        self.load_errors.append(err)
        warnings.warn(str(err), PluginLoadWarning, stacklevel=4)

    def register_plugin(self, plugin: Any, name: str | None = None) -> None:
        """Add a plugin by hand (a module or object with ``@hookimpl`` functions).

        Raises:
            PluginError: the plugin is invalid (see the module docs); nothing it
                registered is kept.
        """
        self._ensure_loaded()
        self._add_plugin(plugin, name)

    def _add_plugin(self, plugin: Any, name: str | None) -> None:
        """Register ``plugin`` with pluggy and collect its objects, all or nothing."""
        label = name or getattr(plugin, "__name__", None) or repr(plugin)
        problems = _misspelt_hooks(plugin)
        if problems:
            raise PluginError(f"plugin {label!r}: " + "; ".join(problems))
        try:
            registered = self.pm.register(plugin, name=name)
        except ValueError as e:  # pluggy: the same object or name twice
            raise PluginError(f"plugin {label!r} is already registered ({e})") from e
        except pluggy.PluginValidationError as e:
            raise PluginError(f"plugin {label!r}: {e}") from e
        if registered is None:
            raise PluginError(f"plugin {label!r} is already registered")
        try:
            self._collect(plugin)
        except BaseException:
            self.pm.unregister(plugin)
            raise

    def _collect(self, plugin: Any) -> None:
        pname = self.pm.get_name(plugin) or repr(plugin)
        staged: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        for kind, hook_name in _HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=self._register_fn(kind, pname, staged[kind]))
        # every registration was valid: commit them together
        for kind, entries in staged.items():
            self._tables[kind].update(entries)

    def _register_fn(self, kind: str, plugin: str, staged: dict[str, Entry]) -> Callable[..., None]:
        def register(
            obj: Any, name: str | None = None, aliases: tuple[str, ...] = (), **metadata: Any
        ) -> None:
            if isinstance(aliases, str):
                raise PluginError(
                    f"plugin {plugin!r}: aliases must be a tuple of names, got the string "
                    f"{aliases!r} (write aliases=({aliases!r},))"
                )
            self._add(kind, obj, name, tuple(aliases), plugin, metadata, staged)

        return register

    def _add(
        self,
        kind: str,
        obj: Any,
        name: str | None,
        aliases: tuple[str, ...],
        plugin: str,
        metadata: Mapping[str, Any] | None = None,
        staged: dict[str, Entry] | None = None,
    ) -> None:
        _validate(kind, obj, plugin)
        name = name or _default_name(kind, obj)
        meta = dict(metadata or {})
        _validate_metadata(kind, meta, plugin, name)
        if "accepts" in meta:
            meta["accepts"] = tuple(meta["accepts"])
        entry = Entry(name, obj, plugin, aliases, MappingProxyType(meta))
        table = self._tables[kind]
        target = table if staged is None else staged
        for n in (name, *aliases):
            if not isinstance(n, str) or not n:
                raise PluginError(f"plugin {plugin!r}: names must be non-empty strings, got {n!r}")
            if n in table or n in target:
                other = (table.get(n) or target[n]).plugin
                raise PluginError(
                    f"plugin {plugin!r} registered {kind} name {n!r}, which plugin "
                    f"{other!r} already registered; choose another name or alias"
                )
        for n in (name, *aliases):
            target[n] = entry

    def summary(self) -> str:
        """A printable table of everything registered, with providers."""
        lines = []
        for kind in KINDS:
            entries = self.category(kind).entries()
            lines.append(f"{kind} ({len(entries)})")
            for e in sorted(entries, key=lambda e: e.name):
                alias = f" (aliases: {', '.join(e.aliases)})" if e.aliases else ""
                lines.append(f"  {e.name:<28} {e.plugin}{alias}")
        if not self.autoload:
            lines.append("(entry-point autoloading is off: GENMLX_DISABLE_PLUGIN_AUTOLOAD)")
        if self.load_errors:
            lines.append(f"skipped plugins ({len(self.load_errors)})")
            for err in self.load_errors:
                lines.append(f"  {err.plugin:<28} {err.source}")
                lines.append(f"    {err.message}")
        return "\n".join(lines)


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry (plugins load on first use of a category)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY
