"""The one optimisation loop: :func:`optimize` an :class:`Objective` over parameters.

Everything in GenMLX that trains parameters — variational inference
(:func:`~genmlx.infer.advi`, :func:`~genmlx.infer.black_box_vi`,
:func:`~genmlx.infer.black_box_vimco`), learning (:func:`~genmlx.infer.train`,
:func:`~genmlx.infer.train_objective`, :func:`~genmlx.infer.train_proposal`,
:func:`~genmlx.infer.wake_sleep`) and amortized inference
(:func:`genmlx.nn.train_amortized`) — builds an objective and hands it to
:func:`optimize`, which owns the loop: the optimiser from :mod:`mlx.optimizers`,
compiled multi-step calls, the per-step key, the history, the progress bar and the
check that every step's estimate and gradient are finite. Your own objectives get all
of it the same way.

An **objective** is what one step evaluates. The general form is an :class:`Objective`
whose function is::

    fn(params, key, state) -> (loss, report, new_state)

``params`` is a dict of MLX arrays (what the optimiser moves), ``loss`` the scalar whose
gradient w.r.t. ``params`` is the step's gradient estimate (a *surrogate*: for a
score-function estimator its value need not be the objective), ``report`` what the
history records for the step (the objective's estimate, e.g. the ELBO; any shape),
and ``state`` non-differentiated values carried from step to step (a running baseline).
:func:`optimize` minimises ``loss``. An objective whose gradients come from elsewhere
(e.g. :func:`~genmlx.core.param_gradients` of a trace) sets ``gradient=True`` and
returns ``(report, grads, new_state)`` itself.

Shortcuts: a plain function ``fn(params, key) -> loss`` (or ``-> (loss, report)``) is
an objective, and so is an ADEV :class:`~genmlx.infer.Expectation` through
:meth:`~genmlx.infer.Expectation.objective`.

Example:
    >>> import mlx.core as mx
    >>> def loss(params, key):   # E_x[(w - x)^2] with x ~ N(3, 1): minimised at w = 3
    ...     x = 3.0 + mx.random.normal(shape=(64,), key=key)
    ...     return mx.mean((params["w"] - x) ** 2)
    >>> res = optimize(loss, {"w": mx.array(0.0)}, n_steps=300, learning_rate=0.05,
    ...                key=mx.random.key(0))
    >>> round(float(res.params["w"]), 1), res.history.shape
    (3.0, (300,))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.optimizers as optim

from genmlx.core import runtime
from genmlx.core.compile import compile_function
from genmlx.core.errors import BatchedControlFlowError, GenMLXError, NonFiniteScoreError
from genmlx.core.params import ParamStore
from genmlx.core.random import Key
from genmlx.infer import _checks as checks

__all__ = ["Objective", "OptimizeResult", "optimize"]

Params = dict[str, mx.array]
State = dict[str, mx.array]


@dataclass(frozen=True)
class Objective:
    """A stochastic objective for :func:`optimize`.

    Attributes:
        fn: ``fn(params, key, state) -> (loss, report, new_state)`` — or, with
            ``gradient=True``, ``-> (report, grads, new_state)`` with ``grads`` the
            gradient of the loss to *minimise*, one array per parameter.
        state: the initial carried state (a dict of arrays; empty by default).
        what: the name of what ``report`` measures (``"ELBO"``, ``"loss"``, ...), for
            the progress bar and error messages.
        gradient: ``fn`` computes its own gradients (no automatic differentiation).

    Example:
        >>> import mlx.core as mx
        >>> obj = Objective.from_loss(lambda p, k: (p["x"] - 1.0) ** 2)
        >>> loss, report, state = obj.fn({"x": mx.array(3.0)}, mx.random.key(0), {})
        >>> float(loss), float(report), state
        (4.0, 4.0, {})
    """

    fn: Callable[..., tuple[Any, Any, State]]
    state: Mapping[str, mx.array] = field(default_factory=dict)
    what: str = "loss"
    gradient: bool = False

    @classmethod
    def from_loss(cls, fn: Callable[[Params, mx.array], Any], what: str = "loss") -> Objective:
        """The objective of ``fn(params, key) -> loss`` (or ``-> (loss, report)``): the
        loss is minimised and the report (default: the loss) recorded."""

        def step(params: Params, key: mx.array, state: State) -> tuple[Any, Any, State]:
            out = fn(params, key)
            if isinstance(out, tuple):
                if len(out) != 2:
                    raise TypeError(
                        f"optimize: a loss function returns loss or (loss, report), got a "
                        f"tuple of {len(out)}"
                    )
                return out[0], mx.stop_gradient(out[1]), state
            return out, mx.stop_gradient(out), state

        return cls(step, {}, what)


class OptimizeResult(NamedTuple):
    """Result of :func:`optimize`.

    Attributes:
        params: the final parameters, of the type given (a dict, or a
            :class:`~genmlx.core.ParamStore` updated with the new values).
        history: the report of every step, stacked: ``[n_steps, *report.shape]``.
        state: the objective's final carried state.
    """

    params: Any
    history: mx.array
    state: State


def _as_objective(objective: Any, op: str) -> Objective:
    if isinstance(objective, Objective):
        return objective
    as_objective = getattr(objective, "objective", None)
    if callable(as_objective) and not callable(objective):
        raise TypeError(
            f"{op}: an ADEV Expectation is not itself an objective; pass "
            "expectation.objective(*args, n_samples=...)"
        )
    if callable(objective):
        return Objective.from_loss(objective)
    raise TypeError(
        f"{op}: objective must be an Objective, a function (params, key) -> loss, or "
        f"Expectation.objective(...); got {type(objective).__name__}"
    )


def _as_values(params: Any, op: str) -> Params:
    if isinstance(params, ParamStore):
        values = params.values_dict
    elif isinstance(params, Mapping):
        values = {}
        for name, v in params.items():
            if not isinstance(name, str):
                raise TypeError(f"{op}: parameter names must be strings, got {name!r}")
            values[name] = v if isinstance(v, mx.array) else mx.array(v, dtype=mx.float32)
    else:
        raise TypeError(
            f"{op}: params must be a dict of arrays or a ParamStore, got {type(params).__name__}"
        )
    if not values:
        raise ValueError(f"{op}: there are no parameters to optimise")
    for name, v in values.items():
        if not mx.issubdtype(v.dtype, mx.floating):
            raise TypeError(
                f"{op}: parameter {name!r} has dtype {v.dtype}; trainable parameters must be "
                "floating point"
            )
    return values


def make_optimizer(optimizer: Any, learning_rate: Any, op: str) -> optim.Optimizer:
    """``optimizer`` itself, or ``mlx.optimizers.Adam(learning_rate)`` when it is ``None``."""
    if optimizer is None:
        return optim.Adam(learning_rate=learning_rate)
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(
            f"{op}: optimizer must be an mlx.optimizers.Optimizer (e.g. "
            f"mlx.optimizers.Adam(learning_rate=0.01)) or None, got {type(optimizer).__name__}"
        )
    return optimizer


def progress_bar(n_steps: int, op: str) -> Any:
    """A tqdm bar of ``n_steps`` steps (tqdm is the optional ``progress`` extra)."""
    try:
        from tqdm.auto import tqdm
    except ImportError as e:  # an optional extra, so the error says what to install
        raise ImportError(
            f"{op}(progress=True) needs tqdm: pip install tqdm (or genmlx-infer[progress])"
        ) from e
    return tqdm(total=n_steps, desc=op, unit="step")


def optimize(
    objective: Objective | Callable[..., Any],
    params: Mapping[str, Any] | ParamStore,
    optimizer: optim.Optimizer | None = None,
    n_steps: int = 1000,
    *,
    key: Key = None,
    learning_rate: float = 0.01,
    compile: bool = True,
    steps_per_call: int = 1,
    progress: bool = False,
    name: str = "optimize",
) -> OptimizeResult:
    """Minimise a stochastic objective over ``params`` with an ``mlx.optimizers`` optimiser.

    Step ``t`` uses key ``mx.random.split(key, n_steps)[t]``: it evaluates the objective
    and its gradient, applies the optimiser, and records the objective's report. With
    ``compile=True`` each call of the compiled step function runs ``steps_per_call``
    consecutive steps (unrolled: this saves a host round trip per step); the numbers
    are those of single steps, and the same as ``compile=False`` (which runs the step
    eagerly, with GenMLX's score checks on).

    Args:
        objective: an :class:`Objective`, a function ``(params, key) -> loss`` (or
            ``-> (loss, report)``), or ``Expectation.objective(...)``.
        params: the initial parameters: a dict of arrays (or numbers) or a
            :class:`~genmlx.core.ParamStore`.
        optimizer: an :mod:`mlx.optimizers` optimiser (default
            ``Adam(learning_rate)``).
        n_steps: the number of optimiser steps.
        key: PRNG key (``None``: a fresh one from the OS).
        learning_rate: the default optimiser's learning rate.
        compile: compile the step with ``mx.compile``.
        steps_per_call: steps per compiled call (with ``compile=True``).
        progress: show a ``tqdm`` progress bar (``pip install tqdm``).
        name: the name errors and the progress bar use (the calling algorithm's).

    Returns:
        :class:`OptimizeResult` ``(params, history, state)``.

    Raises:
        NonFiniteScoreError: a step's report or gradient is NaN or infinite (the message
            names the step and what to do).
        GenMLXError: with ``compile=True``, the step needed a concrete value (a Python
            branch on a random value); run with ``compile=False``.
    """
    op = name
    obj = _as_objective(objective, op)
    checks.count(n_steps, "n_steps", op)
    checks.count(steps_per_call, "steps_per_call", op)
    if not isinstance(compile, bool):
        raise TypeError(f"{op}: compile must be True or False, got {compile!r}")
    values = _as_values(params, op)
    opt = make_optimizer(optimizer, learning_rate, op)
    key = checks.key(key, op)
    # nested under "params" so that parameter names cannot collide with the optimiser's
    # own state entries ("step", "learning_rate")
    box: dict[str, Any] = {"params": {"params": dict(values)}, "state": dict(obj.state)}
    opt.init(box["params"])
    if obj.gradient:
        value_and_grad = None
    else:
        value_and_grad = mx.value_and_grad(lambda p, k, s: obj.fn(p, k, s))

    def one_step(k: mx.array) -> tuple[mx.array, mx.array]:
        p = box["params"]["params"]
        with runtime.transforming():
            if value_and_grad is None:
                report, grads, new_state = obj.fn(p, k, box["state"])
            else:
                (_, report, new_state), grads = value_and_grad(p, k, box["state"])
        grads_ok = mx.array(True)
        for g in grads.values():
            grads_ok = mx.logical_and(grads_ok, mx.all(mx.isfinite(g)))
        box["params"] = opt.apply_gradients({"params": grads}, box["params"])
        box["state"] = new_state
        return mx.stop_gradient(mx.array(report)), grads_ok

    def steps(keys: mx.array) -> tuple[mx.array, mx.array]:
        out = [one_step(keys[i]) for i in range(keys.shape[0])]
        return mx.stack([r for r, _ in out]), mx.stack([ok for _, ok in out])

    carried = [box, opt.state]
    run = compile_function(steps, inputs=carried, outputs=carried) if compile else steps
    chunk = steps_per_call if compile else 1
    keys = mx.random.split(key, n_steps)
    bar = progress_bar(n_steps, op) if progress else None
    history: list[mx.array] = []
    try:
        for start in range(0, n_steps, chunk):
            try:
                reports, oks = run(keys[start : start + chunk])
                mx.eval(carried, reports, oks)
            except ValueError as e:
                if compile and (
                    runtime.is_transform_eval_error(e) or isinstance(e, BatchedControlFlowError)
                ):
                    raise GenMLXError(
                        f"{op}(compile=True) traces the whole step with mx.compile, and the "
                        f"step needed a concrete value: {e} — pass compile=False to run it "
                        "eagerly"
                    ) from e
                raise
            _check_finite(op, obj.what, start, reports, oks)
            history.extend(reports[i] for i in range(reports.shape[0]))
            if bar is not None:
                bar.update(reports.shape[0])
                last = float(reports[-1].reshape(-1)[0].astype(mx.float32).item())  # type: ignore[arg-type]
                bar.set_postfix({obj.what.lower(): f"{last:.4g}"}, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    final = box["params"]["params"]
    out_params = params.update(final) if isinstance(params, ParamStore) else final
    return OptimizeResult(out_params, mx.stack(history), box["state"])


def _check_finite(op: str, what: str, start: int, reports: mx.array, oks: mx.array) -> None:
    flat = reports.reshape(reports.shape[0], -1).astype(mx.float32)
    finite = mx.all(mx.isfinite(flat), axis=1)
    good = mx.logical_and(finite, oks)
    if bool(mx.all(good).item()):
        return
    i = int(mx.argmin(good.astype(mx.int32)).item())  # type: ignore[arg-type]
    row: list[float] = flat[i].tolist()  # type: ignore[assignment]
    value = next((v for v in row if not math.isfinite(v)), row[0])
    ok = bool(oks[i].item())
    t = start + i
    if value == float("-inf"):
        why = (
            f"the {what} estimate is -inf: a sample has zero density under the model (e.g. "
            "a normal guide for a positive or bounded latent). Make the guide sample inside "
            "the model's support (advi constrains its samples automatically)"
        )
    elif ok:
        why = (
            f"the {what} estimate is {value}: the optimisation diverged or a density was "
            "evaluated at invalid parameters; lower the learning rate or check the model"
        )
    else:
        why = (
            f"a gradient is NaN or infinite (the {what} estimate is {value}); lower the "
            "learning rate, or check that the parameters stay valid (e.g. pass a scale "
            "through mx.exp or mx.softplus)"
        )
    raise NonFiniteScoreError(f"{op}: at step {t}, {why}.")
