"""Check that no GenMLX package uses another package's private names (``nox -s lint``).

    python tools/check_private_api.py            # every package under packages/
    python tools/check_private_api.py --list     # also print what each package exports

A package (``packages/genmlx-<name>/src/genmlx/<name>``) may use only the public API of
the packages it builds on. Reported, for the source files of every package:

* ``from genmlx.<other>.<module> import _name`` and ``import``/``from`` of a module whose
  dotted name has a component starting with ``_`` (``genmlx.core._display``), where
  ``<other>`` is not the file's own package;
* ``alias._name`` where ``alias`` is a module of another package bound by an import
  (``from genmlx.core import handlers as H`` then ``H._check_arity``);
* ``obj._name`` where ``_name`` is a private attribute that only another package defines
  (a method or attribute of one of its classes, e.g. ``ChoiceMap._set``): a private
  member of a class the file does not own. Names a package defines itself (its own
  classes' private members, or overrides of them) are its own business, and the
  NamedTuple API (``_replace``, ``_fields``, ``_asdict``, ``_make``) is public.

Exits 1 and lists ``path:line: message`` for each finding; exits 0 when there is none.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
# The NamedTuple API and the pickling/copy protocol: public despite the underscore.
PUBLIC_UNDERSCORE = {"_replace", "_fields", "_asdict", "_make", "_field_defaults"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def package_sources() -> dict[str, list[Path]]:
    """Package name -> its source files."""
    out: dict[str, list[Path]] = {}
    for pkg in sorted(PACKAGES.glob("genmlx-*")):
        name = pkg.name.removeprefix("genmlx-")
        src = pkg / "src" / "genmlx" / name
        if src.is_dir():
            out[name] = sorted(src.rglob("*.py"))
    return out


def owner(module: str) -> str | None:
    """``genmlx.core.choicemap`` -> ``core``; None outside ``genmlx``."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[0] == "genmlx" else None


def private_members(files: list[Path]) -> set[str]:
    """Private names a package defines as class members (methods, attributes)."""
    names: set[str] = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if is_private(item.name):
                        names.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    for t in targets:
                        if isinstance(t, ast.Name) and is_private(t.id):
                            names.add(t.id)
                # __slots__ entries
                if isinstance(item, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets
                ):
                    for elt in ast.walk(item.value):
                        if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                            if is_private(elt.value):
                                names.add(elt.value)
            for sub in ast.walk(node):  # self._x = ... in methods
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.ctx, ast.Store)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id in ("self", "cls")
                    and is_private(sub.attr)
                ):
                    names.add(sub.attr)
    return names


def findings(pkg: str, path: Path, foreign_members: dict[str, set[str]]) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT)
    module_aliases: dict[str, str] = {}  # local name -> foreign package
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            other = owner(node.module)
            if other is None or other == pkg:
                continue
            if any(is_private(p) for p in node.module.split(".")):
                yield f"{rel}:{node.lineno}: imports the private module {node.module}"
                continue
            for a in node.names:
                if is_private(a.name):
                    yield (
                        f"{rel}:{node.lineno}: imports the private name {a.name} from "
                        f"{node.module} (genmlx-{other})"
                    )
                else:
                    module_aliases[a.asname or a.name] = other
        elif isinstance(node, ast.Import):
            for a in node.names:
                other = owner(a.name)
                if other is None or other == pkg:
                    continue
                if any(is_private(p) for p in a.name.split(".")):
                    yield f"{rel}:{node.lineno}: imports the private module {a.name}"
                elif a.asname:
                    module_aliases[a.asname] = other
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not is_private(node.attr):
            continue
        if node.attr in PUBLIC_UNDERSCORE:
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in module_aliases:
            yield (
                f"{rel}:{node.lineno}: uses the private name {base.id}.{node.attr} of "
                f"genmlx-{module_aliases[base.id]}"
            )
            continue
        if isinstance(base, ast.Name) and base.id in ("self", "cls"):
            continue
        others = sorted(p for p, names in foreign_members.items() if node.attr in names)
        if others:
            yield (
                f"{rel}:{node.lineno}: uses {node.attr}, a private member of a class of "
                f"genmlx-{others[0]}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    sources = package_sources()
    members = {p: private_members(files) for p, files in sources.items()}
    problems: list[str] = []
    for pkg, files in sources.items():
        own = members[pkg]
        foreign = {p: names - own for p, names in members.items() if p != pkg}
        for f in files:
            problems.extend(findings(pkg, f, foreign))
    for line in problems:
        print(line)
    if problems:
        print(
            f"{len(problems)} use(s) of another package's private names; use its public "
            "API (or make the name public there)",
            file=sys.stderr,
        )
        return 1
    print(f"no cross-package private names in {sum(map(len, sources.values()))} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
