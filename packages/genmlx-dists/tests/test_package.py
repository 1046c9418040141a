"""Packaging checks for genmlx-dists.

The module imports and lists its public names — every distribution DESIGN §6 names, the
constructors and ``validation`` — ``genmlx`` stays a PEP 420 namespace, and the
installed package registers every distribution with the plugin registry through its
real ``genmlx`` entry point (checked in a fresh interpreter, so that the lazy loading
is the one a user gets).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import genmlx
import genmlx.dists
from genmlx.core import Distribution
from genmlx.dists._plugin import ALIASES, DISTRIBUTION_NAMES
from genmlx.dists.examples import examples

# DESIGN §6's table and "the rest of GenJAX's list" as the library implements it.
DESIGN_NAMES = {
    "normal", "uniform", "bernoulli", "flip", "beta", "gamma", "inv_gamma", "exponential",
    "categorical", "categorical_logits", "poisson", "geometric", "binomial", "neg_binomial",
    "uniform_discrete", "laplace", "cauchy", "student_t", "log_normal", "truncated_normal",
    "mv_normal", "dirichlet", "piecewise_uniform", "beta_uniform", "von_mises", "wishart",
    "inv_wishart", "half_normal", "chi2", "weibull", "gumbel", "multinomial",
    "beta_binomial", "logistic", "half_cauchy", "pareto", "wrapped_cauchy", "kumaraswamy",
    "wrapped_normal",
    "dirichlet_multinomial", "zipf", "delta",
}  # fmt: skip
CONSTRUCTORS = {"mixture", "product", "iid", "transformed", "from_functions"}


def test_public_names_are_listed_and_defined() -> None:
    assert isinstance(genmlx.dists.__all__, list)
    assert len(set(genmlx.dists.__all__)) == len(genmlx.dists.__all__), "duplicates"
    for public_name in genmlx.dists.__all__:
        assert hasattr(genmlx.dists, public_name), public_name


def test_every_design_name_is_exported() -> None:
    missing = (DESIGN_NAMES | CONSTRUCTORS | {"validation"}) - set(genmlx.dists.__all__)
    assert not missing, f"not exported from genmlx.dists: {sorted(missing)}"
    for name in DESIGN_NAMES:
        d = getattr(genmlx.dists, name)
        assert isinstance(d, Distribution), name
        assert d.name == ("bernoulli" if name == "flip" else name)
        assert len(examples(d)) >= 2, f"{name} needs examples for the kit"
    assert genmlx.dists.flip is genmlx.dists.bernoulli
    for name in CONSTRUCTORS:
        assert callable(getattr(genmlx.dists, name))


def test_plugin_registers_every_distribution() -> None:
    assert set(DISTRIBUTION_NAMES) == DESIGN_NAMES - {"flip"}
    for name, aliases in ALIASES.items():
        assert name in DISTRIBUTION_NAMES and not set(aliases) & set(DISTRIBUTION_NAMES)


def test_genmlx_is_a_namespace_package() -> None:
    # No distribution may ship genmlx/__init__.py (PEP 420).
    assert getattr(genmlx, "__file__", None) is None
    assert len(list(genmlx.__path__)) >= 1


def test_entry_point_is_declared() -> None:
    eps = importlib.metadata.entry_points(group="genmlx")
    assert [ep.value for ep in eps if ep.name == "dists"] == ["genmlx.dists._plugin"]


def test_registry_lists_every_distribution_through_the_entry_point() -> None:
    code = (
        "import json\n"
        "from genmlx.core import registry\n"
        "r = registry()\n"
        "loaded_before = r.loaded\n"
        "d = r.distributions\n"
        "out = {n: [d.provider(n), type(d[n]).__module__] for n in d}\n"
        "print(json.dumps({'before': loaded_before, 'names': out}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GENMLX_DISABLE_PLUGIN_AUTOLOAD"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["before"] is False  # importing genmlx.core loads no plugin
    names = got["names"]
    ours = {n: v for n, v in names.items() if v[0] == "dists"}
    expected = set(DISTRIBUTION_NAMES) | {a for al in ALIASES.values() for a in al}
    assert set(ours) == expected
    for name, (_, module) in ours.items():
        assert module.startswith("genmlx.dists."), (name, module)


def _doc_table() -> dict[str, tuple[str, str]]:
    """``name -> (reparam, enumerable)`` from docs/api/dists.rst's list-table."""
    from pathlib import Path

    import pytest

    doc = Path(__file__).resolve().parents[3] / "docs" / "api" / "dists.rst"
    if not doc.is_file():
        pytest.skip("docs/api/dists.rst is not in this checkout")
    rows: list[list[str]] = []
    for line in doc.read_text().splitlines():
        s = line.strip()
        if s.startswith("* - "):
            rows.append([s[4:]])
        elif s.startswith("- ") and rows and line.startswith("     -"):
            rows[-1].append(s[2:])
    out = {}
    for r in rows[1:]:  # the header row first
        name = r[0].split("``")[1]
        out[name] = (r[3], r[4])
    return out


def test_reference_table_matches_the_classes() -> None:
    table = _doc_table()
    assert set(table) == set(DISTRIBUTION_NAMES)
    for name, (reparam, enumerable) in table.items():
        d = getattr(genmlx.dists, name)
        assert reparam == ("yes" if d.has_reparam else "no"), f"{name}: reparam column"
        assert enumerable == ("yes" if d.is_enumerable else "no"), f"{name}: enumerable column"
