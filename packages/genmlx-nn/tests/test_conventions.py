"""The calling convention holds for every public function of genmlx.infer and genmlx.nn.

DESIGN §6 and docs/conventions.rst: ``key`` keyword-only and optional (``None``: a fresh
key); ``args`` and ``observations`` for the model's arguments and constraints;
``n_particles``, ``n_chains``, ``n_steps``, ``n_samples`` each with one meaning; one
``compile=`` flag; kernels ``kernel(trace, ..., key=) -> (trace, info)`` with
``info.accepted`` per chain; one result vocabulary (``traces``, ``log_weights``,
``log_ml_estimate`` as a property, ``params``, ``history``). The old names keep working
for one release with a ``DeprecationWarning`` naming the new one — tested at the end.

The walk is over ``__all__``: a new public function that breaks the convention fails
here, with its name.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any

import mlx.core as mx
import pytest

import genmlx.infer as infer
import genmlx.nn as gnn
from genmlx.core import Trace, gen, param, select
from genmlx.dists import bernoulli, normal

K = mx.random.key

# names that mean something else than the convention's (each with the reason)
OLD_NAMES = {
    "n_iters": "n_steps",
    "num_steps": "n_steps",
    "num_samples": "n_samples",
    "num_particles": "n_particles",
    "num_chains": "n_chains",
    "observed": "observations",
    "model_args": "args",
    "compiled": "compile",
    "jit": "compile",
    "rng_key": "key",
    "seed": "key",
}
# a bare ``n`` is ambiguous (particles? samples? draws?): only these take it, for the
# reason given
BARE_N_ALLOWED: dict[str, str] = {}
# parameters named like the convention's but holding something else, with the reason
OBSERVE_FUNCTIONS = {
    "nn.elbo": "observe(x) maps one datum to its observations (amortized over data)",
    "nn.make_elbo_step": "as nn.elbo",
    "nn.train_amortized": "as nn.elbo",
    "nn.amortized_elbo_objective": "as nn.elbo",
}


def _public_functions(module: Any) -> list[tuple[str, Any]]:
    out = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) and not getattr(obj, "__deprecated_alias_of__", None):
            out.append((name, obj))
    return out


def _public_classes(module: Any) -> list[tuple[str, type]]:
    return [
        (name, getattr(module, name))
        for name in module.__all__
        if inspect.isclass(getattr(module, name))
    ]


FUNCTIONS = [(f"infer.{n}", f) for n, f in _public_functions(infer)] + [
    (f"nn.{n}", f) for n, f in _public_functions(gnn)
]


def test_the_walk_sees_the_api() -> None:
    names = {n for n, _ in FUNCTIONS}
    for expected in (
        "infer.mh",
        "infer.nuts",
        "infer.importance_sampling",
        "infer.particle_filter",
        "infer.optimize",
        "infer.black_box_vi",
        "infer.train",
        "nn.train_amortized",
        "nn.elbo",
    ):
        assert expected in names
    assert len(FUNCTIONS) > 80


@pytest.mark.parametrize("name, fn", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_parameter_names(name: str, fn: Any) -> None:
    sig = inspect.signature(fn)
    params = sig.parameters
    for pname in params:
        assert pname not in OLD_NAMES, (
            f"{name}: parameter {pname!r} is the old name; the convention's is "
            f"{OLD_NAMES[pname]!r}"
        )
        if pname == "n":
            assert name in BARE_N_ALLOWED, (
                f"{name}: a bare 'n' is ambiguous; use n_particles, n_chains, n_steps or "
                "n_samples"
            )
        if "compile" in pname:
            assert pname == "compile", f"{name}: the compile flag is spelled compile="
    if "model" in params:
        names = list(params)
        after = names[names.index("model") + 1 :]
        if after and after[0] in ("args", "observations"):
            assert after[0] == "args", f"{name}: the model's arguments come first, as args"
        if "observations" not in params and name not in OBSERVE_FUNCTIONS:
            for pname in params:
                assert not pname.startswith("obs"), (
                    f"{name}: the model's constraints are called observations, not {pname}"
                )


@pytest.mark.parametrize(
    "name, fn", [(n, f) for n, f in FUNCTIONS if "key" in inspect.signature(f).parameters]
)
def test_key_is_keyword_only_and_optional(name: str, fn: Any) -> None:
    p = inspect.signature(fn).parameters["key"]
    assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: key must be keyword-only"
    assert p.default is None, f"{name}: key must be optional (default None: a fresh key)"


def test_every_stochastic_entry_point_takes_a_key() -> None:
    # the inference algorithms that draw random numbers all take key=
    no_key = {
        n
        for n, f in FUNCTIONS
        if "key" not in inspect.signature(f).parameters
    }
    stochastic = {
        "infer.mh", "infer.involutive_mh", "infer.mala", "infer.hmc", "infer.nuts",
        "infer.elliptical_slice", "infer.gibbs", "infer.importance_sampling",
        "infer.importance_resampling", "infer.particle_filter", "infer.chain",
        "infer.advi", "infer.black_box_vi", "infer.black_box_vimco", "infer.elbo",
        "infer.iwelbo", "infer.train", "infer.train_objective", "infer.wake_sleep",
        "infer.optimize", "infer.pmmh", "infer.particle_gibbs", "infer.mcmc",
        "infer.parallel_tempering", "nn.train_amortized", "nn.elbo",
    }  # fmt: skip
    assert not (stochastic & no_key), sorted(stochastic & no_key)


# ---------------------------------------------------------------------- results
RESULTS = _public_classes(infer) + _public_classes(gnn)


def _members(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass))
    return out


@pytest.mark.parametrize("name, cls", RESULTS, ids=[n for n, _ in RESULTS])
def test_log_ml_estimate_is_a_property(name: str, cls: type) -> None:
    members = _members(cls)
    fields = getattr(cls, "_fields", ())
    carries = "log_ml_estimate" in members or "log_ml_estimate" in fields
    if not carries:
        assert not any(k.startswith("log_ml") for k in (*members, *fields) if k != "log_ml"), (
            f"{name} carries a log marginal likelihood under another name"
        )
        return
    if "log_ml_estimate" in fields:
        return
    attr = members["log_ml_estimate"]
    assert isinstance(attr, property), f"{name}.log_ml_estimate must be a property"


TRAINING_RESULTS = [
    "TrainResult",
    "WakeSleepResult",
    "VIResult",
    "ADVIResult",
    "LogDensityVIResult",
    "OptimizeResult",
]


@pytest.mark.parametrize("name", TRAINING_RESULTS)
def test_training_results_carry_params_and_history(name: str) -> None:
    cls = getattr(infer, name)
    members = {*_members(cls), *getattr(cls, "_fields", ())}
    init = inspect.signature(cls.__init__).parameters if not hasattr(cls, "_fields") else {}
    assert "params" in members or "params" in init, name
    assert "history" in members or "history" in init, name


def test_amortized_fit_and_optimize_result_vocabulary() -> None:
    assert gnn.AmortizedFit._fields == ("params", "history")
    assert infer.OptimizeResult._fields == ("params", "history", "state")
    assert infer.ISResult._fields[:3] == ("traces", "log_weights", "log_ml_estimate")


# ---------------------------------------------------------------------- kernels
@gen
def model():
    mu = normal(0.0, 1.0) @ "mu"
    b = bernoulli(0.4) @ "b"
    normal(mu + mx.where(b, 0.5, 0.0), 1.0) @ "y"


@gen
def drift(tr, s):
    normal(tr["mu"], s) @ "mu"


def _aux(tr):  # involution's auxiliary proposal
    return None


@gen
def aux(tr):
    normal(0.0, 0.3) @ "u"


def _shift(t, u, _):
    from genmlx.core import choicemap

    return choicemap({"mu": t["mu"] + u["u"]}), choicemap({"u": -u["u"]})


def _kernels() -> dict[str, Any]:
    from functools import partial

    sel = select("mu")
    return {
        "mh(selection)": lambda t, k: infer.mh(t, sel, key=k),
        "mh(proposal)": lambda t, k: infer.mh(t, drift, (0.3,), key=k),
        "involutive_mh": lambda t, k: infer.involutive_mh(t, aux, (), _shift, key=k),
        "mala": lambda t, k: infer.mala(t, sel, step_size=0.2, key=k),
        "hmc": lambda t, k: infer.hmc(t, sel, step_size=0.2, n_leapfrog=3, key=k),
        "nuts": lambda t, k: infer.nuts(t, sel, step_size=0.3, max_depth=3, key=k),
        "gibbs": lambda t, k: infer.gibbs(t, "b", key=k),
        "elliptical_slice": lambda t, k: infer.elliptical_slice(t, "mu", 0.0, 1.0, key=k),
        "tempered_rw_mh": lambda t, k: infer.tempered_rw_mh(
            t, sel, select("y"), 0.5, 0.3, key=k
        ),
        "cycle": lambda t, k: infer.cycle(
            partial(infer.mh, selection_or_proposal=sel),
            partial(infer.gibbs, addr="b"),
        )(t, key=k),
        "repeat_kernel": lambda t, k: infer.repeat_kernel(
            partial(infer.mh, selection_or_proposal=sel), 2
        )(t, key=k),
        "mix_kernels": lambda t, k: infer.mix_kernels(
            [partial(infer.mh, selection_or_proposal=sel), partial(infer.gibbs, addr="b")],
            [0.5, 0.5],
        )(t, key=k),
    }


KERNELS = _kernels()


@pytest.mark.parametrize("name", list(KERNELS))
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_kernels_return_trace_and_info(name: str, batched: bool) -> None:
    if batched:
        tr, _ = model.vgenerate((), {"y": 0.7}, 5, key=K(0))
    else:
        tr, _ = model.generate((), {"y": 0.7}, key=K(0))
    out = KERNELS[name](tr, K(1))
    assert isinstance(out, tuple) and len(out) == 2, name
    new, info = out
    assert isinstance(new, Trace) and new.batch_shape == tr.batch_shape
    assert isinstance(info, infer.kernel_info.KernelInfo), (
        f"{name} returned {type(info).__name__}, not an info record with .accepted"
    )
    assert isinstance(info.accepted, mx.array) and info.accepted.shape == tr.batch_shape


def test_kernels_report_what_applies() -> None:
    tr, _ = model.vgenerate((), {"y": 0.7}, 4, key=K(0))
    _, info = infer.hmc(tr, select("mu"), step_size=0.2, n_leapfrog=3, key=K(1))
    assert info.diverging.shape == (4,) and info.step_size.shape == (4,)
    assert info.n_leapfrog.tolist() == [3, 3, 3, 3]
    assert bool(mx.all((info.accept_prob >= 0) & (info.accept_prob <= 1)))
    _, info = infer.nuts(tr, select("mu"), step_size=0.3, max_depth=3, key=K(1))
    assert info.depth.shape == (4,) and info.diverging.shape == (4,)
    assert info.step_size.shape == (4,)
    _, info = infer.mh(tr, select("mu"), key=K(2))
    assert info.accept_prob.shape == (4,)


def test_chain_acceptance_from_info() -> None:
    from functools import partial

    tr, _ = model.vgenerate((), {"y": 0.7}, 6, key=K(0))
    res = infer.chain(partial(infer.gibbs, addr="b"), tr, 5, key=K(1))
    assert res.acceptance_rate.tolist() == [1.0] * 6  # Gibbs is always accepted


# ---------------------------------------------------------------------- deprecations
def _warns(fn: Any, new: str) -> Any:
    with pytest.warns(DeprecationWarning, match=new):
        return fn()


def test_renamed_functions_and_modules_warn() -> None:
    assert _warns(lambda: infer.mix, "mix_kernels") is infer.mix_kernels
    assert _warns(lambda: infer.repeat, "repeat_kernel") is infer.repeat_kernel
    assert _warns(lambda: infer.enum, "enum_exact") is infer.enum_exact
    assert _warns(lambda: infer.nuts_info, "nuts") is infer.nuts
    old_mh = importlib.import_module("genmlx.infer.mh")
    assert _warns(lambda: old_mh.chain, "chain_runner") is infer.chain
    assert _warns(lambda: old_mh.mix, "mix_kernels") is infer.mix_kernels
    old_other = importlib.import_module("genmlx.infer.other_kernels")
    assert _warns(lambda: old_other.gibbs, "gibbs_enumeration") is infer.gibbs
    old_nuts = importlib.import_module("genmlx.infer.nuts")
    assert _warns(lambda: old_nuts.NutsInfo, "nuts_kernel") is infer.NutsInfo
    # importing the old modules leaves the functions on the package
    assert callable(infer.mh) and callable(infer.nuts)
    unfold = importlib.import_module("genmlx.combinators.unfold")
    from genmlx.combinators import Scan

    assert _warns(lambda: unfold.Scan, "genmlx.combinators.scan") is Scan
    gf = importlib.import_module("genmlx.dists.gamma_family")
    from genmlx.dists import gamma

    assert _warns(lambda: gf.gamma, "gamma_beta") is gamma


def test_renamed_arguments_warn_and_still_work() -> None:
    tr, _ = model.vgenerate((), {"y": 0.7}, 4, key=K(0))
    with pytest.warns(DeprecationWarning, match="'observed' is deprecated; use 'observations'"):
        infer.tempered_rw_mh(tr, select("mu"), observed=select("y"), beta=0.5, step_size=0.3)
    with pytest.warns(DeprecationWarning, match="'n_iters' is deprecated; use 'n_steps'"):
        res = infer.pmmh(
            lambda th, k: -mx.sum(th**2), lambda th: -mx.sum(th**2), mx.array([0.1]),
            n_iters=3, step_size=0.3, key=K(0),
        )  # fmt: skip
    assert res.thetas.shape == (3, 1)
    with pytest.warns(DeprecationWarning, match="'n' is deprecated; use 'n_particles'"):
        idx = infer.resample_indices(mx.zeros((4,)), "systematic", n=8, key=K(0))
    assert idx.shape == (8,)
    with pytest.raises(TypeError, match="both"):
        infer.resample_indices(mx.zeros((4,)), n=2, n_particles=2, key=K(0))


@gen
def guide():
    normal(param("m", 0.0), mx.exp(param("log_s", 0.0))) @ "mu"


@gen
def gauss():
    normal(0.0, 1.0) @ "mu"


def test_renamed_flags_and_result_fields_warn() -> None:
    with pytest.warns(DeprecationWarning, match="'compiled' is deprecated; use 'compile'"):
        fit = infer.black_box_vi(gauss, (), None, guide, n_steps=3, compiled=False, key=K(0))
    assert fit.history.shape == (3,)

    @gen
    def ml():
        normal(param("mu", 0.0), 1.0) @ "y"

    res = infer.train(ml, {"y": mx.array([1.0, 2.0])}, {"mu": 0.0}, n_steps=2, key=K(0))
    assert _warns(lambda: res.store, "TrainResult.params") is res.params
    assert _warns(lambda: res.loss_history, "TrainResult.history") is res.history
    pm = infer.pmmh(
        lambda th, k: -mx.sum(th**2), lambda th: -mx.sum(th**2), mx.array([0.1]), 2,
        step_size=0.3, key=K(0),
    )  # fmt: skip
    assert _warns(lambda: pm.log_ml, "log_ml_estimate") is pm.log_ml_estimate


def test_log_ml_estimate_property_is_still_callable_with_a_warning() -> None:
    st = infer.particle_filter(gauss, (), None, 8, key=K(0))
    value = st.log_ml_estimate
    assert isinstance(value, mx.array) and value.shape == ()
    called = _warns(lambda: st.log_ml_estimate(), "drop the parentheses")
    assert float(called) == float(value)


def test_kernels_of_the_old_convention_still_run_in_chain() -> None:
    def old_kernel(trace: Trace, *, key: Any = None) -> tuple[Trace, mx.array]:
        new, info = infer.mh(trace, select("mu"), key=key)
        return new, info.accepted

    tr, _ = model.vgenerate((), {"y": 0.7}, 3, key=K(0))
    with pytest.warns(DeprecationWarning, match=r"\(trace, info\)"):
        res = infer.chain(old_kernel, tr, 4, key=K(1))
    assert res.acceptance_rate.shape == (3,)


def test_no_warnings_on_the_new_names() -> None:
    tr, _ = model.vgenerate((), {"y": 0.7}, 3, key=K(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for fn in KERNELS.values():
            fn(tr, K(1))
        assert infer.particle_filter(gauss, (), None, 8, key=K(0)).log_ml_estimate.shape == ()
