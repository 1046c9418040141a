"""The example kernel/combinator/visualizer plugin (examples/genmlx-example-mcmc-plugin)
works for real, in CI.

genmlx-viz's test environment has everything the plugin's users have (genmlx-core,
genmlx-infer, matplotlib), so this is where CI checks it: the plugin is installed from
its own wheel into a target directory kept out of site-packages (with pip, or uv when
the environment has no pip), then its test suite — the three kits through the
``genmlx_*_kit`` fixtures — and the conformance CLI run in subprocesses with that
directory on ``PYTHONPATH``, as for a user who ``pip install``-ed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = REPO_ROOT / "examples" / "genmlx-example-mcmc-plugin"
PYTEST = [sys.executable, "-m", "pytest", "--import-mode=importlib", "-p", "no:cacheprovider"]
KIT_CLI = [sys.executable, "-m", "genmlx.core.testing", "2", "--strict"]


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not EXAMPLE.is_dir():
        pytest.skip(f"the example plugin is not in this checkout ({EXAMPLE})")
    target = tmp_path_factory.mktemp("mcmc-plugin-site")
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


def _env(plugin_dir: Path) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    entries = [str(plugin_dir), *([path] if path else [])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(entries), "MPLBACKEND": "Agg"}


def test_example_plugin_test_suite_passes(plugin_dir: Path) -> None:
    out = subprocess.run(
        [*PYTEST, "-q", str(EXAMPLE / "tests")],
        env=_env(plugin_dir),
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "9 passed" in out.stdout


def test_conformance_cli_checks_every_kind_of_object(plugin_dir: Path) -> None:
    out = subprocess.run(
        [*KIT_CLI, "--only", "barker", "Iterate", "plot_autocorrelation"],
        env=_env(plugin_dir),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    for line in (
        "ok   kernel barker (example_mcmc)",
        "ok   combinator Iterate (example_mcmc)",
        "ok   visualizer plot_autocorrelation (example_mcmc)",
        "0 failure(s), 0 skipped",
    ):
        assert line in out.stdout
