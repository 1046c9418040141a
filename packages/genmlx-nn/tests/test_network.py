"""NeuralNetGF: a deterministic generative function whose parameters live in a ParamStore.

Closed forms used here (computed in numpy, independently of GenMLX):

* ``y ~ N(w·x + b, σ)``: ``∂/∂w log p = (y − w·x − b)·x / σ²``, ``∂/∂b = (y − w·x − b)/σ²``;
* maximum likelihood of ``y_i ~ N(w·x_i + b, σ)`` over ``(w, b, log σ)``: ``(w, b)`` is the
  least-squares fit and ``σ² `` the mean squared residual.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

from genmlx.combinators import Map
from genmlx.core import (
    ConstraintError,
    ParamStore,
    Selection,
    choicemap,
    compile,
    gen,
    param,
    param_gradients,
    select,
    use_params,
)
from genmlx.core.testing import check_gfi_laws
from genmlx.dists import normal
from genmlx.nn import NeuralNetGF, load_params, param_store
from genmlx.nn.params import bound_module

K = mx.random.key


def mlp(d_in: int, d_out: int, seed: int) -> nn.Module:
    mx.random.seed(seed)
    return nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, d_out))


def np_mlp(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The MLP of :func:`mlp` evaluated in numpy (float64) from its weights."""
    l0, l2 = module.layers[0], module.layers[2]
    h = np.tanh(x @ np.array(l0.weight, dtype=np.float64).T + np.array(l0.bias, dtype=np.float64))
    return h @ np.array(l2.weight, dtype=np.float64).T + np.array(l2.bias, dtype=np.float64)


# --------------------------------------------------------------------------- the GFI
def test_deterministic_gfi_no_choices_score_zero() -> None:
    net = NeuralNetGF(mlp(3, 2, 0), name="f")
    x = mx.array([0.5, -1.0, 2.0])
    tr = net.simulate((x,), key=K(0))
    assert tr.get_choices().is_empty and float(tr.score) == 0.0
    expect = np_mlp(net.module, np.array([0.5, -1.0, 2.0]))
    assert np.allclose(np.array(tr.retval), expect, atol=1e-5)
    ld, rv = net.assess((x,), choicemap({}))
    assert float(ld) == 0.0 and np.allclose(np.array(rv), expect, atol=1e-5)
    tr2, w = net.generate((x,), None, key=K(1))
    assert float(w) == 0.0
    with pytest.raises(ConstraintError, match="makes no random choices"):
        net.generate((x,), choicemap({"a": 1.0}), key=K(1))
    # update with new arguments re-runs the network; weight 0, nothing discarded
    x2 = mx.array([1.0, 1.0, 1.0])
    up = net.update(tr, None, (x2,), key=K(2))
    assert float(up.weight) == 0.0 and up.discard.is_empty
    assert np.allclose(np.array(up.trace.retval), np_mlp(net.module, np.ones(3)), atol=1e-5)
    rg = net.regenerate(tr, Selection.all(), (x2,), key=K(3))
    assert float(rg.weight) == 0.0
    assert np.allclose(np.array(rg.trace.retval), np.array(up.trace.retval))
    assert float(net.project(tr, Selection.all())) == 0.0


def test_gfi_laws_of_a_model_mixing_a_network_and_choices() -> None:
    net = NeuralNetGF(mlp(2, 2, 1), name="mix")

    @gen
    def model(xs):
        h = normal(mx.zeros(2), 1.0) @ "h"
        out = net(h + xs) @ "net"
        normal(out, 0.5) @ "y"
        return out

    check_gfi_laws(model, (mx.array([0.3, -0.2]),), max_examples=4)
    check_gfi_laws(net, (mx.array([0.3, -0.2]),), max_examples=2)


def test_batched_runs_feed_each_particle_its_own_input() -> None:
    # the network's input is a per-particle random value: the batched run equals the
    # unbatched runs with the particles' keys, and retvals match numpy's MLP
    net = NeuralNetGF(mlp(2, 1, 2), name="b")

    @gen
    def model():
        h = normal(mx.zeros(2), 1.0) @ "h"
        out = net(h) @ "net"
        return normal(out[0], 0.1) @ "y"

    n = 7
    btr = model.vsimulate((), n, key=K(5))
    keys = mx.random.split(K(5), n)
    for i in range(n):
        tr = model.simulate((), key=keys[i])
        assert np.allclose(np.array(btr["h"][i]), np.array(tr["h"]), atol=1e-6)
        assert abs(float(btr.score[i]) - float(tr.score)) < 1e-5
    outs = np.array(btr.get_subtrace("net").retval)
    assert outs.shape == (n, 1)
    assert np.allclose(outs, np_mlp(net.module, np.array(btr["h"], dtype=np.float64)), atol=1e-5)
    # compiled and interpreted batched runs agree
    step = compile(lambda key: model.vsimulate((), n, key=key))
    ctr = step(K(5))
    assert np.allclose(np.array(ctr["y"]), np.array(btr["y"]), atol=1e-6)


def test_a_network_inside_map_sees_one_element_and_trains() -> None:
    # Map runs its kernel once for all elements under mx.vmap: the network sees one
    # element's input; the score is Σ_i log N(y_i; f(x_i), 0.5) with f evaluated in numpy
    net = NeuralNetGF(mlp(3, 1, 4), name="m")

    @gen
    def kernel(x):
        return normal((net(x) @ "net")[0], 0.5) @ "y"

    rng = np.random.default_rng(1)
    xs = rng.normal(size=(6, 3))
    ys = rng.normal(size=6)
    cons = choicemap({(i, "y"): float(y) for i, y in enumerate(ys)})
    tr, w = Map(kernel).generate((mx.array(xs, dtype=mx.float32),), cons, key=K(0))
    f = np_mlp(net.module, xs)[:, 0]
    expect = np.sum(-0.5 * ((ys - f) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi))
    assert abs(float(w) - expect) < 1e-4 and abs(float(tr.score) - expect) < 1e-4
    grads = param_gradients(tr, param_store(net))
    assert sorted(grads) == sorted(net.param_names())
    # ∂/∂(last bias) of Σ_i log N(y_i; f_i, σ) = Σ_i (y_i − f_i)/σ²
    assert abs(float(grads["m/layers.2.bias"][0]) - np.sum(ys - f) / 0.25) < 1e-3


# --------------------------------------------------------------------------- parameters
def test_param_store_names_and_initialize_agree() -> None:
    net = NeuralNetGF(mlp(2, 1, 3), name="enc")
    assert net.param_names() == [
        "enc/layers.0.weight",
        "enc/layers.0.bias",
        "enc/layers.2.weight",
        "enc/layers.2.bias",
    ]

    @gen
    def model(x):
        return normal(net(x) @ "net", 1.0) @ "y"

    a = param_store(net)
    b = ParamStore.initialize(model, (mx.array([1.0, 2.0]),))
    assert sorted(a) == sorted(b) == sorted(net.param_names())
    for k in a:
        assert mx.array_equal(a[k], b[k])


def test_bound_store_values_are_used_and_the_module_is_restored() -> None:
    net = NeuralNetGF(nn.Linear(2, 1), name="lin")
    w0 = np.array(net.module.weight)
    store = ParamStore({"lin/weight": mx.array([[1.0, 2.0]]), "lin/bias": mx.array([3.0])})
    x = mx.array([1.0, -1.0])
    with use_params(store):
        out = net.simulate((x,), key=K(0)).retval
    assert float(out[0]) == 1.0 - 2.0 + 3.0
    assert np.array_equal(np.array(net.module.weight), w0)  # the module is untouched
    # a partial store swaps only what it holds
    with use_params(ParamStore({"lin/bias": mx.array([10.0])})):
        out = net.apply(x)
    expect = float(w0[0] @ np.array([1.0, -1.0])) + 10.0
    assert abs(float(out[0]) - expect) < 1e-5


def test_a_network_that_raises_leaves_the_module_as_it_was() -> None:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def __call__(self, x: mx.array) -> mx.array:
            self.lin(x)
            raise RuntimeError("boom")

    module = Boom()
    before = np.array(module.lin.weight)
    net = NeuralNetGF(module, name="boom")
    store = ParamStore({"boom/lin.weight": mx.zeros((2, 2)), "boom/lin.bias": mx.zeros((2,))})
    with use_params(store), pytest.raises(RuntimeError, match="boom"):
        net.simulate((mx.ones(2),), key=K(0))
    assert np.array_equal(np.array(module.lin.weight), before)


def test_shape_mismatch_names_the_parameter() -> None:
    a = NeuralNetGF(nn.Linear(2, 3), name="same")
    b = NeuralNetGF(nn.Linear(4, 3), name="same")
    with pytest.raises(ValueError, match="given by two networks"):
        param_store(a, b)
    with (
        use_params(param_store(a)),
        pytest.raises(ValueError, match=r"'same/weight'.*shape \(3, 2\).*\(3, 4\)"),
    ):
        b.apply(mx.ones(4))


def test_frozen_parameters_are_not_read_from_the_store() -> None:
    module = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    module.layers[0].freeze()
    net = NeuralNetGF(module, name="fz")
    assert net.param_names() == ["fz/layers.1.weight", "fz/layers.1.bias"]


def test_param_gradients_match_the_closed_form() -> None:
    net = NeuralNetGF(nn.Linear(2, 1), name="lin")
    sigma = 0.7

    @gen
    def model(x):
        return normal((net(x) @ "net")[0], sigma) @ "y"

    x = np.array([0.3, -1.2])
    y = 0.9
    tr, _ = model.generate((mx.array(x, dtype=mx.float32),), {"y": y}, key=K(0))
    store = param_store(net)
    g = param_gradients(tr, store)
    w = np.array(store["lin/weight"], dtype=np.float64)[0]
    b = float(store["lin/bias"][0])
    r = (y - w @ x - b) / sigma**2
    assert np.allclose(np.array(g["lin/weight"])[0], r * x, rtol=1e-5, atol=1e-6)
    assert abs(float(g["lin/bias"][0]) - r) < 1e-5


def test_training_end_to_end_reaches_maximum_likelihood() -> None:
    # y_i ~ N(w·x_i + b, σ) with σ = exp(param "log_sigma"): the MLE is the least-squares
    # fit and σ² = mean squared residual (closed form, numpy float64). Adam on
    # -param_gradients converges to it; the tolerance is an optimisation tolerance.
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(40, 2))
    ys = xs @ np.array([1.5, -2.0]) + 0.5 + 0.3 * rng.normal(size=40)
    net = NeuralNetGF(nn.Linear(2, 1), name="reg")

    @gen
    def model(x):
        mean = (net(x) @ "net")[:, 0]
        sigma = mx.exp(param("log_sigma", 0.0))
        normal(mean, sigma) @ "y"

    args = (mx.array(xs, dtype=mx.float32),)
    tr, _ = model.generate(args, {"y": mx.array(ys, dtype=mx.float32)}, key=K(0))
    store = ParamStore.initialize(model, args)
    assert sorted(store) == ["log_sigma", "reg/bias", "reg/weight"]
    opt = optim.Adam(learning_rate=0.05)
    values = store.values_dict
    for _ in range(600):
        grads = param_gradients(tr, ParamStore(values))
        values = opt.apply_gradients({k: -v for k, v in grads.items()}, values)
        mx.eval(values)
    design = np.hstack([xs, np.ones((40, 1))])
    coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
    sigma_mle = math.sqrt(float(np.mean((ys - design @ coef) ** 2)))
    assert np.allclose(np.array(values["reg/weight"])[0], coef[:2], atol=2e-3)
    assert abs(float(values["reg/bias"][0]) - coef[2]) < 2e-3
    assert abs(math.exp(float(values["log_sigma"])) - sigma_mle) < 2e-3
    load_params(ParamStore(values), net)
    assert np.allclose(np.array(net.module.weight)[0], coef[:2], atol=2e-3)


def test_regenerate_of_a_model_with_a_network_reruns_it_on_new_inputs() -> None:
    net = NeuralNetGF(nn.Linear(1, 1), name="r")

    @gen
    def model():
        h = normal(mx.zeros(1), 1.0) @ "h"
        return net(h) @ "net"

    tr = model.simulate((), key=K(0))
    new, w, _ = model.regenerate(tr, select("h"), key=K(1))
    expect = float(net.module.weight[0, 0]) * float(new["h"][0]) + float(net.module.bias[0])
    assert abs(float(new.retval[0]) - expect) < 1e-6
    assert float(w) == 0.0


def test_bad_construction() -> None:
    with pytest.raises(TypeError, match=r"mlx\.nn\.Module"):
        NeuralNetGF(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        NeuralNetGF(nn.Linear(1, 1), name="")
    assert NeuralNetGF(nn.Linear(1, 1)).name == "Linear"


def test_bound_module_without_a_store_is_the_module_itself() -> None:
    module = nn.Linear(1, 1)
    with bound_module(module, "x") as m:
        assert m is module
