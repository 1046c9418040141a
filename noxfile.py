"""Developer and CI sessions for the GenMLX monorepo.

    python3 -m nox -s tests isolation    # what CI runs (.ci/run): the default sessions
    python3 -m nox -s "tests(dists)"     # one package
    python3 -m nox -s "tests(infer)" -- -k distributed   # sharded inference, 2 ring processes
    python3 -m nox -s build              # every package's wheel and sdist into dist/
    python3 -m nox -s isolation          # each wheel installed alone, every public module imported
    python3 -m nox -s tests-slow conformance lint typecheck docs bench demo
    python3 -m nox -s example-plugin     # the example plugins, as a user installs them

Every install is non-editable and each test venv holds only the package's declared
dependencies and test extras, so an undeclared dependency fails the tests. Sessions
run on the interpreter that runs nox (no ``python=`` pin), so a machine with only
``python3`` works.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2024.3.2"  # "uv|venv" backend fallback
nox.options.default_venv_backend = "uv|venv"
nox.options.sessions = ["tests", "isolation"]

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
SHARED = ROOT.parent / "shared"
EXAMPLE_PLUGIN = ROOT / "packages/genmlx-core/tests/fixtures/genmlx-example-plugin"
EXAMPLE_DISTS_PLUGIN = ROOT / "examples/genmlx-example-dists-plugin"
EXAMPLE_MCMC_PLUGIN = ROOT / "examples/genmlx-example-mcmc-plugin"
# the plugin how-tos show excerpts of the example plugins, which the docs tests run
EXAMPLE_SOURCES = os.pathsep.join(
    str(p / "src") for p in (EXAMPLE_DISTS_PLUGIN, EXAMPLE_MCMC_PLUGIN)
)

# Short name -> local (monorepo) packages it needs, for its dependencies and test extra.
# Order matters: dependencies come before dependents.
PACKAGES: dict[str, tuple[str, ...]] = {
    "core": (),
    "dists": ("core",),
    "combinators": ("core", "dists"),  # runtime: core; the docs pages in its tests: dists
    "infer": ("core", "dists", "combinators"),  # runtime: core, dists; tests: combinators
    # nn and viz: runtime deps are core only; their tests also use dists and infer
    "nn": ("core", "dists", "combinators", "infer"),
    "viz": ("core", "dists", "combinators", "infer"),
}


def _path(name: str, extras: list[str]) -> str:
    path = f"packages/genmlx-{name}"
    return f"{path}[{','.join(extras)}]" if extras else path


def install_local(session: nox.Session, *names: str, test: bool = False) -> None:
    """Install local packages ``names`` (non-editable) plus the local packages they need.

    genmlx-core always gets the ``cpu`` extra on Linux (plain ``mlx`` is Metal on macOS).
    Local dependencies are installed first, by path, since they are not on PyPI; then
    ``names`` themselves, with their ``test`` extra when ``test`` is true.
    """
    wanted = [dep for name in names for dep in (*PACKAGES[name], name)]
    ordered = [name for name in PACKAGES if name in wanted]

    def spec(name: str) -> str:
        extras = []
        if name == "core" and sys.platform == "linux":
            extras.append("cpu")
        if test and (name == "core" or name in names):
            extras.append("test")
        return _path(name, extras)

    deps = [name for name in ordered if name not in names]
    targets = [name for name in ordered if name in names]
    for batch in (deps, targets):
        if not batch:
            continue
        # uv keeps an installed local package of the same version even if its sources
        # changed (matters with `nox -R`); pip always reinstalls local paths. Only
        # this batch is refreshed: an installed dependency must still satisfy it.
        refresh: list[str] = []
        if session.venv_backend == "uv":
            for name in batch:
                refresh += ["--reinstall-package", f"genmlx-{name}"]
        session.install(*refresh, *map(spec, batch))


def _env() -> dict[str, str]:
    """Environment for test runs: where the shared conformance data lives, if present."""
    return {"GENMLX_SHARED_DIR": str(SHARED)} if SHARED.is_dir() else {}


# What the docs build needs (MathJax bundled from a pip package: formulas render offline).
DOCS_TOOLS = ("sphinx>=8", "sphinx-mathjax-offline>=0.0.2")
# The test targets: every package, and "docs" (docs/tests/: the docs truth test and the
# dead-reference check).
TEST_TARGETS = [*PACKAGES, "docs"]


@nox.session
@nox.parametrize("package", TEST_TARGETS, ids=TEST_TARGETS)
def tests(session: nox.Session, package: str) -> None:
    """Run one package's fast tests in a venv with only its declared dependencies.

    ``tests(docs)`` runs every code block of the README and the tutorial pages, with
    every package (and the optional tqdm and ArviZ) installed, as a reader would.
    """
    if package == "docs":
        install_local(session, *PACKAGES, test=True)
        session.install("tqdm", *DOCS_TOOLS)
        env = {
            **_env(),  # the how-to's plugin excerpts import the example plugin's module
            "PYTHONPATH": EXAMPLE_SOURCES,
        }
        session.run("pytest", "--import-mode=importlib", "docs/tests", *session.posargs, env=env)
        return
    install_local(session, package, test=True)
    env = _env()
    if package == "core":
        # The plugin-loading test needs a third-party plugin installed for real (its
        # entry point, from its own wheel) but kept out of this venv's site-packages,
        # so it goes to a target directory the test puts on PYTHONPATH.
        target = Path(session.create_tmp()) / "example-plugin"
        shutil.rmtree(target, ignore_errors=True)
        session.install("--no-deps", "--target", str(target), str(EXAMPLE_PLUGIN))
        env["GENMLX_EXAMPLE_PLUGIN_DIR"] = str(target)
    session.run(
        "pytest",
        "--import-mode=importlib",
        f"packages/genmlx-{package}/tests",
        *session.posargs,
        env=env,
    )


@nox.session
def build(session: nox.Session) -> None:
    """Build every package's wheel and sdist into ``dist/`` and check them with twine."""
    session.install("build[uv]" if session.venv_backend == "uv" else "build", "twine")
    shutil.rmtree(DIST, ignore_errors=True)
    installer = ["--installer", "uv"] if session.venv_backend == "uv" else []
    for name in PACKAGES:
        session.run(
            "python", "-m", "build", *installer, "--outdir", str(DIST), f"packages/genmlx-{name}"
        )
    built = sorted(str(f) for f in DIST.iterdir())
    session.log(f"built {len(built)} files into {DIST}")
    session.run("twine", "check", "--strict", *built)


@nox.session(requires=["build"])
@nox.parametrize("package", list(PACKAGES), ids=list(PACKAGES))
def isolation(session: nox.Session, package: str) -> None:
    """Install one package's wheel from ``dist/`` as a user would, with only its declared
    runtime dependencies, and import every public module.

    ``pip install --find-links dist genmlx-<package>``: the sibling packages it declares
    come from ``dist/`` as well, everything else from the package index. An undeclared
    dependency on a sibling package fails the import. Then, with genmlx-core alone, a
    missing sibling must fail with an error that says which package to install.
    """
    backend = ["genmlx-core[cpu]"] if sys.platform == "linux" else []  # mlx's CPU backend
    session.install("--find-links", str(DIST), *backend, f"genmlx-{package}")
    session.run("python", "tools/import_all.py", f"genmlx.{package}")
    if package == "core":
        session.run("python", "tools/import_all.py", "--expect-missing", "genmlx.infer")


@nox.session(name="tests-slow")
def tests_slow(session: nox.Session) -> None:
    """Run the slow statistical tests (marker ``slow``) of every package."""
    install_local(session, *PACKAGES, test=True)
    session.install("tqdm", *DOCS_TOOLS)
    session.run(
        "pytest",
        "--import-mode=importlib",
        "-m",
        "slow",
        "packages",
        "docs/tests",  # the tutorial pages that train compiled models
        *session.posargs,
        env={**_env(), "PYTHONPATH": EXAMPLE_SOURCES},
        success_codes=[0, 5],  # 5: no slow tests collected yet
    )


@nox.session
def conformance(session: nox.Session) -> None:
    """Run the conformance kit over everything in the plugin registry."""
    install_local(session, *PACKAGES, test=True)  # the kit uses hypothesis
    session.run("python", "-m", "genmlx.core.testing", *session.posargs, env=_env())


# Example plugin -> (its directory, the local packages a user would install with it, the
# names of what it registers: the kits check those).
EXAMPLE_PLUGINS: dict[str, tuple[Path, tuple[str, ...], tuple[str, ...]]] = {
    # a distribution: core only, so the plugin cannot lean on genmlx-dists
    "dists": (EXAMPLE_DISTS_PLUGIN, (), ("gompertz",)),
    # a kernel, a combinator, a visualizer: the visualizer kit draws genmlx-infer results
    "mcmc": (EXAMPLE_MCMC_PLUGIN, ("infer",), ("barker", "Iterate", "plot_autocorrelation")),
}


@nox.session(name="example-plugin")
@nox.parametrize("plugin", list(EXAMPLE_PLUGINS), ids=list(EXAMPLE_PLUGINS))
def example_plugin(session: nox.Session, plugin: str) -> None:
    """Install an example plugin as a user would; run its tests and the conformance kits.

    genmlx-core comes with its test extra (the kits use hypothesis; its pytest plugin
    gives the tests their ``genmlx_*_kit`` fixtures), plus only the GenMLX packages the
    plugin's users need.
    """
    path, local, names = EXAMPLE_PLUGINS[plugin]
    install_local(session, "core", test=True)
    if local:
        install_local(session, *local)
    session.install(f"{path}[test]")
    session.run("pytest", "--import-mode=importlib", str(path / "tests"), *session.posargs)
    session.run("python", "-m", "genmlx.core.testing", "3", "--strict", "--only", *names)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff (formatting is not enforced yet), and check that no package uses
    another package's private names (tools/check_private_api.py: packages build on each
    other's public API only)."""
    session.install("ruff")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("python", "tools/check_private_api.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the installed packages; genmlx.core is strict (see pyproject.toml)."""
    install_local(session, *PACKAGES, test=True)  # the conformance kit imports hypothesis
    session.install("mypy")
    session.run("mypy", "-p", "genmlx.core")
    session.run(
        "mypy",
        *("-p", "genmlx.dists", "-p", "genmlx.combinators", "-p", "genmlx.infer"),
        *("-p", "genmlx.nn", "-p", "genmlx.viz"),
    )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx site; warnings are errors."""
    install_local(session, *PACKAGES)
    session.install(*DOCS_TOOLS)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks; arguments after ``--`` go to benchmarks/run.py."""
    install_local(session, *PACKAGES)
    # benchmark-only dependencies (the mcmc benchmark compares with NumPyro on JAX/CPU)
    session.install("numpyro", "jax")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the README's end-to-end example (under a minute on 2 CPU cores)."""
    install_local(session, *PACKAGES)
    session.install("tqdm")  # the MCMC part's progress bar
    session.run("python", "examples/demo.py", *session.posargs)
