"""Every distribution takes its parameters by keyword, under DESIGN's names."""

from __future__ import annotations

import mlx.core as mx
import pytest

import genmlx.dists as D
from genmlx.core import Distribution, gen
from genmlx.dists.examples import examples

# DESIGN §6's parameterisation table (the rest keep the names of their docstrings)
DESIGN_NAMES = {
    "normal": ("mu", "sigma"),
    "uniform": ("low", "high"),
    "bernoulli": ("p",),
    "beta": ("alpha", "beta"),
    "gamma": ("shape", "rate"),
    "inv_gamma": ("shape", "scale"),
    "exponential": ("rate",),
    "categorical": ("probs",),
    "categorical_logits": ("logits",),
    "poisson": ("rate",),
    "geometric": ("p",),
    "binomial": ("n", "p"),
    "neg_binomial": ("r", "p"),
    "uniform_discrete": ("low", "high"),
    "laplace": ("loc", "scale"),
    "cauchy": ("loc", "scale"),
    "student_t": ("df", "loc", "scale"),
    "log_normal": ("mu", "sigma"),
    "truncated_normal": ("mu", "sigma", "low", "high"),
    "mv_normal": ("mean", "cov"),
    "dirichlet": ("alpha",),
    "piecewise_uniform": ("bounds", "probs"),
    "beta_uniform": ("theta", "alpha", "beta"),
    "von_mises": ("mu", "kappa"),
    "wishart": ("df", "scale"),
    "inv_wishart": ("df", "scale"),
}

FIRST_PARTY = sorted(
    name for name in D.__all__ if isinstance(getattr(D, name), Distribution)
)


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_every_distribution_declares_its_parameters(name: str) -> None:
    d = getattr(D, name)
    assert d.params is not None, f"{name} declares no params"
    if d.name in DESIGN_NAMES:
        assert tuple(p.name for p in d.params) == DESIGN_NAMES[d.name]


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_keywords_give_the_positional_results(name: str) -> None:
    d = getattr(D, name)
    for example in examples(d)[:1]:
        kw = {p.name: v for p, v in zip(d.params, example)}
        key = mx.random.key(7)
        sample_kw = {k: v for k, v in kw.items() if k != "shape"}
        pos = d.sample(key, *example)
        if "shape" in kw:  # gamma / inv_gamma: shape= is the sample shape in sample()
            alias = next(p.aliases[0] for p in d.params if p.name == "shape")
            sample_kw[alias] = kw["shape"]
        assert mx.array_equal(d.sample(key, **sample_kw), pos, equal_nan=True)
        assert mx.array_equal(d.log_prob(pos, **kw), d.log_prob(pos, *example), equal_nan=True)
        assert d(**kw).args == tuple(example)


def test_a_model_written_with_keywords() -> None:
    @gen
    def model():
        rate = D.gamma(shape=2.0, rate=1.0) @ "rate"
        D.poisson(rate=rate) @ "count"

    tr, w = model.generate((), {"count": 3}, key=mx.random.key(0))
    expected = D.poisson.log_prob(3, tr["rate"])
    assert float(w) == pytest.approx(float(expected), rel=1e-6)
