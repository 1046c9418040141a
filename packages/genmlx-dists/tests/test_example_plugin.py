"""The example distribution plugin (examples/genmlx-example-dists-plugin) works for real.

It is installed from its own wheel into a target directory kept out of this
environment's site-packages (``GENMLX_EXAMPLE_DISTS_PLUGIN_DIR`` when a nox session has
installed it already; otherwise with pip, or uv when the environment has no pip), then
its own test suite and the conformance CLI run in subprocesses with that directory on
``PYTHONPATH``, exactly as a user who ``pip install``-ed the plugin would run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = REPO_ROOT / "examples" / "genmlx-example-dists-plugin"


def _install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("GENMLX_EXAMPLE_DISTS_PLUGIN_DIR")
    if given:
        return Path(given)
    if not EXAMPLE.is_dir():
        pytest.skip(f"the example plugin is not in this checkout ({EXAMPLE})")
    target = tmp_path_factory.mktemp("dists-plugin-site")
    base = ["--no-deps", "--target", str(target), str(EXAMPLE)]
    has_pip = (
        subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode
        == 0
    )
    if has_pip:
        cmd = [sys.executable, "-m", "pip", "install", "-q", *base]
    elif shutil.which("uv"):
        cmd = ["uv", "pip", "install", "-q", "--python", sys.executable, *base]
    else:
        pytest.skip("neither pip nor uv is available to install the example plugin")
    subprocess.run(cmd, check=True, timeout=600)
    return target


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install(tmp_path_factory)


def _env(plugin_dir: Path) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    entries = [str(plugin_dir), *([path] if path else [])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(entries)}


def test_example_plugin_test_suite_passes(plugin_dir: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--import-mode=importlib",
            "-p",
            "no:cacheprovider",
            "-q",
            str(EXAMPLE / "tests"),
        ],
        env=_env(plugin_dir),
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert " passed" in out.stdout and "failed" not in out.stdout


def test_conformance_cli_checks_the_example_plugin(plugin_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "genmlx.core.testing", "2", "--only", "gompertz"],
        env=_env(plugin_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert out.stdout.count("ok   distribution gompertz (gompertz)") == 2
    assert "0 failure(s)" in out.stdout
