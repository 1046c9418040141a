"""Import every public module of an installed GenMLX package (used by ``nox -s isolation``).

    python tools/import_all.py genmlx.infer
    python tools/import_all.py --expect-missing genmlx.infer

A public module is one whose dotted name has no component starting with ``_`` (so
``__main__`` and private helpers are skipped; they are imported by the public modules
that use them). Exits non-zero, listing every failure, if any import fails.

With ``--expect-missing``, the package must *not* be installed, and importing it after
``genmlx.core`` must fail with an ``ImportError`` that names the distribution to install
(``genmlx.infer`` -> ``genmlx-infer``) instead of a bare "No module named ...".
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback


def public_modules(package: str) -> list[str]:
    """``package`` and every public module below it, in import order."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def expect_missing(package: str) -> int:
    """``package`` is absent and importing it says which distribution to install."""
    importlib.import_module("genmlx.core")
    dist = package.replace(".", "-")
    try:
        importlib.import_module(package)
    except ImportError as e:
        if f"pip install {dist}" in str(e) or f'pip install "{dist}' in str(e):
            print(f"ok  import {package} fails and says: {e}")
            return 0
        print(f"FAILED  import {package} fails without naming {dist}: {e}", file=sys.stderr)
        return 1
    print(f"FAILED  {package} is installed; this check needs it absent", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="e.g. genmlx.infer")
    parser.add_argument("--expect-missing", action="store_true")
    opts = parser.parse_args(argv)
    if opts.expect_missing:
        return expect_missing(opts.package)
    failures: list[str] = []
    try:
        names = public_modules(opts.package)
    except Exception:
        print(traceback.format_exc(), file=sys.stderr)
        return 1
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # report every failure, then exit non-zero
            failures.append(f"{name}: {type(e).__name__}: {e}")
        else:
            print(f"ok  {name}")
    for line in failures:
        print(f"FAILED  {line}", file=sys.stderr)
    print(f"{len(names) - len(failures)} of {len(names)} modules of {opts.package} import")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
