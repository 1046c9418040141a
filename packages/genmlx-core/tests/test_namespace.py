"""genmlx is a PEP 420 namespace shared by separately installed distributions."""

from __future__ import annotations

from pathlib import Path

import genmlx
import genmlx.core

PACKAGES = Path(__file__).resolve().parents[2]


def test_no_package_ships_genmlx_init() -> None:
    sources = sorted(PACKAGES.glob("genmlx-*/src/genmlx"))
    assert len(sources) == 6, sources
    for src in sources:
        assert not (src / "__init__.py").exists(), f"{src} must not have __init__.py"
        assert (src / src.parent.parent.name.removeprefix("genmlx-") / "py.typed").exists()


def test_installed_namespace_has_no_init() -> None:
    assert getattr(genmlx, "__file__", None) is None
    for entry in genmlx.__path__:
        assert not (Path(entry) / "__init__.py").exists()
    assert genmlx.core.__name__ == "genmlx.core"


def test_import_does_not_import_other_genmlx_packages() -> None:
    import subprocess
    import sys

    code = (
        "import sys, genmlx.core; print(sorted(m for m in sys.modules "
        "if m.startswith('genmlx.') and not m.startswith('genmlx.core')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
