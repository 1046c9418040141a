"""The plugin system: hooks, validation, duplicates, laziness and real entry points."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from genmlx.core import GenerativeFunction, PluginError
from genmlx.core.plugins import KINDS, Registry, hookimpl, hookspecs
from genmlx.core.testing.models import bernoulli, normal

FIXTURE = Path(__file__).parent / "fixtures" / "genmlx-example-plugin"

HOOK_NAMES = [f"genmlx_register_{k}" for k in KINDS]


def test_every_hook_is_documented() -> None:
    specs = {
        n: f
        for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if n.startswith("genmlx_")
    }
    assert sorted(specs) == sorted(HOOK_NAMES)
    for name, fn in specs.items():
        doc = inspect.getdoc(fn) or ""
        assert len(doc) > 40, f"hook {name} needs a docstring saying what to register"
        assert list(inspect.signature(fn).parameters) == ["register"]


class AllHooks:
    """A plugin implementing every hook with one object each."""

    @hookimpl
    def genmlx_register_distributions(self, register: Any) -> None:
        register(normal, aliases=("gaussian",))

    @hookimpl
    def genmlx_register_combinators(self, register: Any) -> None:
        register(lambda g: g, name="identity_combinator")

    @hookimpl
    def genmlx_register_inference(self, register: Any) -> None:
        def my_kernel(trace: Any) -> Any:
            return trace

        register(my_kernel)

    @hookimpl
    def genmlx_register_nn(self, register: Any) -> None:
        register(lambda x: x, name="net")

    @hookimpl
    def genmlx_register_visualizers(self, register: Any) -> None:
        register(print, name="printer")


def test_every_hook_is_exercised() -> None:
    reg = Registry(autoload=False)
    reg.register_plugin(AllHooks(), name="all-hooks")
    assert reg.distributions["normal"] is normal
    assert reg.distributions["gaussian"] is normal
    assert reg.distributions.provider("gaussian") == "all-hooks"
    assert list(reg.combinators) == ["identity_combinator"]
    assert list(reg.inference) == ["my_kernel"]
    assert list(reg.nn) == ["net"]
    assert reg.visualizers["printer"] is print
    for kind in KINDS:
        assert len(reg.category(kind).entries()) == 1, kind
    text = reg.summary()
    assert "normal" in text and "all-hooks" in text and "aliases: gaussian" in text


def test_register_validates_distributions() -> None:
    class Bad:
        @hookimpl
        def genmlx_register_distributions(self, register: Any) -> None:
            register(object(), name="not_a_distribution")

    reg = Registry(autoload=False)
    with pytest.raises(PluginError, match="'bad'.*not an instance of genmlx.core.Distribution"):
        reg.register_plugin(Bad(), name="bad")


def test_register_validates_combinator_classes_and_callables() -> None:
    class NotGF:
        """A class that is not a GenerativeFunction (registering it must fail)."""

    class BadClass:
        @hookimpl
        def genmlx_register_combinators(self, register: Any) -> None:
            register(NotGF)

    class BadInference:
        @hookimpl
        def genmlx_register_inference(self, register: Any) -> None:
            register(42, name="answer")

    with pytest.raises(PluginError, match="does not subclass genmlx.core.GenerativeFunction"):
        Registry(autoload=False).register_plugin(BadClass(), name="c")
    with pytest.raises(PluginError, match="needs a callable"):
        Registry(autoload=False).register_plugin(BadInference(), name="i")

    class GoodClass:
        @hookimpl
        def genmlx_register_combinators(self, register: Any) -> None:
            register(GenerativeFunction, name="base")

    reg = Registry(autoload=False)
    reg.register_plugin(GoodClass(), name="g")
    assert reg.combinators["base"] is GenerativeFunction


def test_duplicate_names_raise_naming_both_plugins() -> None:
    class First:
        @hookimpl
        def genmlx_register_distributions(self, register: Any) -> None:
            register(normal)

    class Second:
        @hookimpl
        def genmlx_register_distributions(self, register: Any) -> None:
            register(bernoulli, name="normal")

    class AliasClash:
        @hookimpl
        def genmlx_register_distributions(self, register: Any) -> None:
            register(bernoulli, aliases=("normal",))

    reg = Registry(autoload=False)
    reg.register_plugin(First(), name="first")
    with pytest.raises(PluginError, match="'second'.*'normal'.*'first' already registered"):
        reg.register_plugin(Second(), name="second")
    with pytest.raises(PluginError, match="'normal'"):
        reg.register_plugin(AliasClash(), name="third")
    # the failed registrations left the table as it was
    assert reg.distributions["normal"] is normal
    assert len(reg.distributions) == 1


def test_unknown_name_error_lists_known() -> None:
    reg = Registry(autoload=False)
    reg.register_plugin(AllHooks(), name="all-hooks")
    with pytest.raises(KeyError, match="no distribution named 'gama'.*'gaussian', 'normal'"):
        reg.distributions["gama"]


def _run(code: str, env: dict[str, str]) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_does_not_load_plugins() -> None:
    code = "import genmlx.core, json\nr = genmlx.core.registry()\nprint(json.dumps(r.loaded))\n"
    assert json.loads(_run(code, {})) is False


def _installed_plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin pip-installed into a target directory.

    nox installs it (``GENMLX_EXAMPLE_PLUGIN_DIR``); run by hand, the test installs it
    with pip, or uv when the environment has no pip.
    """
    given = os.environ.get("GENMLX_EXAMPLE_PLUGIN_DIR")
    if given:
        return Path(given)
    target = tmp_path_factory.mktemp("plugin-site")
    base = ["--no-deps", "--target", str(target), str(FIXTURE)]
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
    return _installed_plugin_dir(tmp_path_factory)


def test_plugin_loads_through_its_entry_point(plugin_dir: Path) -> None:
    code = (
        "import json\n"
        "from genmlx.core import registry\n"
        "r = registry()\n"
        "assert not r.loaded\n"
        "d = r.distributions\n"
        "out = {k: {n: r.category(k).provider(n) for n in r.category(k) "
        "if r.category(k).provider(n) == 'example'} for k in "
        "('distributions', 'combinators', 'inference', 'nn', 'visualizers')}\n"
        "out['loaded'] = r.loaded\n"
        "out['dist_type'] = type(d['example_exp']).__name__\n"
        "print(json.dumps(out))\n"
    )
    got = json.loads(_run(code, {"PYTHONPATH": str(plugin_dir)}))
    assert got["loaded"] is True
    assert got["distributions"] == {"example_exponential": "example", "example_exp": "example"}
    assert got["combinators"] == {"example_twice": "example"}
    assert got["inference"] == {"example_mean_of": "example", "example_resimulate": "example"}
    assert got["nn"] == {"example_identity_net": "example"}
    assert got["visualizers"] == {"example_text_summary": "example"}
    assert got["dist_type"] == "Exponential"


def test_autoload_can_be_disabled(plugin_dir: Path) -> None:
    code = "from genmlx.core import registry\nprint(len(registry().distributions))\n"
    env = {"PYTHONPATH": str(plugin_dir), "GENMLX_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert _run(code, env).strip() == "0"


def test_cli_lists_plugins(plugin_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "genmlx.core", "plugins"],
        env={**os.environ, "PYTHONPATH": str(plugin_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "example_exponential" in out.stdout and "example" in out.stdout
    # other installed plugins (e.g. genmlx-dists in a development venv) may be listed too
    assert "example_twice" in out.stdout and "combinators (" in out.stdout


def test_conformance_cli_runs_over_the_plugin(plugin_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "genmlx.core.testing", "2"],
        env={**os.environ, "PYTHONPATH": str(plugin_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok   distribution example_exponential (example)" in out.stdout
    assert "ok   combinator example_twice (example)" in out.stdout
    assert "ok   kernel example_resimulate (example)" in out.stdout
    assert "skip visualizer example_text_summary (example): declares no accepts=" in out.stdout
    assert "example_mean_of" in out.stdout  # listed as an algorithm, not a kernel
    assert "0 failure(s)" in out.stdout


# --------------------------------------------------------------------------- metadata
def test_registration_metadata_is_kept_and_checked() -> None:
    from genmlx.core.plugins import METADATA_KEYS

    def factory(model: Any) -> Any:
        return None

    def plot(x: Any) -> Any:
        return x

    plot.accepts = ("trace",)  # type: ignore[attr-defined]

    class WithMeta:
        @hookimpl
        def genmlx_register_inference(self, register: Any) -> None:
            register(print, name="k", conformance_kernel=factory)

        @hookimpl
        def genmlx_register_visualizers(self, register: Any) -> None:
            register(plot, name="from_attr")
            register(plot, name="from_meta", accepts=["chain_result", "vi_result"])

    reg = Registry(autoload=False)
    reg.register_plugin(WithMeta(), name="meta")
    assert reg.inference.entry("k").info("conformance_kernel") is factory
    assert reg.inference.entry("k").metadata == {"conformance_kernel": factory}
    assert reg.visualizers.entry("from_attr").info("accepts") == ("trace",)  # attribute
    assert reg.visualizers.entry("from_meta").info("accepts") == ("chain_result", "vi_result")
    assert reg.visualizers.entry("from_attr").info("missing", 3) == 3
    assert "accepts" in METADATA_KEYS["visualizers"]
    # an Entry built the old way (four fields) still works
    from genmlx.core.plugins import Entry

    old = Entry("n", print, "p", ())
    assert old.metadata == {} and old.info("accepts") is None


@pytest.mark.parametrize(
    ("kind", "meta", "match"),
    [
        ("visualizers", {"acepts": ("trace",)}, "unknown metadata 'acepts'.*accept: accepts"),
        ("visualizers", {"accepts": ("traces",)}, "unknown result types \\['traces'\\]"),
        ("visualizers", {"accepts": "trace"}, "must be a tuple of result-type names"),
        ("inference", {"conformance_kernel": 3}, "conformance_kernel= .* must be a callable"),
        ("nn", {"accepts": ("trace",)}, "nn accept: none"),
    ],
)
def test_bad_metadata_is_rejected(kind: str, meta: dict[str, Any], match: str) -> None:
    hook = f"genmlx_register_{kind}"

    def impl(register: Any) -> None:
        register(print, name="thing", **meta)

    plugin = type("Bad", (), {hook: staticmethod(hookimpl(impl))})()
    with pytest.raises(PluginError, match=match):
        Registry(autoload=False).register_plugin(plugin, name="bad")


# --------------------------------------------------------------------------- the kits' CLI
def _cli(plugin: Any, *argv: str) -> tuple[int, str]:
    import contextlib
    import io

    from genmlx.core.testing.__main__ import main

    reg = Registry(autoload=False)
    reg.register_plugin(plugin, name="p")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(argv), reg=reg)
    return code, buf.getvalue()


def test_cli_fails_a_broken_kernel_and_a_combinator_without_builder() -> None:
    import functools

    import mlx.core as mx

    from genmlx.core.batching import where_particles

    def greedy(trace: Any, *, key: Any, selection: Any) -> Any:  # accepts with 2× the ratio
        k1, k2 = mx.random.split(key)
        new, w, _ = trace.gen_fn.regenerate(trace, selection, key=k1)
        acc = mx.log(mx.random.uniform(shape=w.shape, key=k2)) < 2.0 * w
        return where_particles(acc, new, trace), acc

    class Broken:
        @hookimpl
        def genmlx_register_inference(self, register: Any) -> None:
            register(
                greedy,
                conformance_kernel=lambda m: functools.partial(greedy, selection=m.selection),
            )

        @hookimpl
        def genmlx_register_combinators(self, register: Any) -> None:
            register(lambda g: g, name="no_builder")

    code, out = _cli(Broken(), "1", "--kits", "combinators", "kernels")
    assert code == 1
    assert "FAIL kernel greedy (p)" in out and "FAIL stationarity[" in out
    assert "FAIL combinator no_builder (p): declares no conformance_build" in out
    code, out = _cli(Broken(), "1", "--kits", "kernels", "--only", "nothing")
    assert code == 0 and "0 failure(s)" in out


def test_cli_strict_fails_skipped_visualizers() -> None:
    class Plots:
        @hookimpl
        def genmlx_register_visualizers(self, register: Any) -> None:
            register(print, name="undeclared")

    assert _cli(Plots(), "--kits", "visualizers")[0] == 0
    code, out = _cli(Plots(), "--kits", "visualizers", "--strict")
    assert code == 1 and "skip visualizer undeclared (p)" in out
