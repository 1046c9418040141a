"""GenMLX core: the Generative Function Interface on MLX.

Public API:

* modelling: :func:`gen`, :func:`splice`, :func:`param`, :data:`factor`,
  :class:`Distribution`
* data: :class:`ChoiceMap` / :func:`choicemap`, :class:`Selection` / :func:`select`,
  :class:`Trace`
* the interface: :class:`GenerativeFunction` and its result types
* incremental computation: :data:`NoChange`, :data:`UnknownChange`, :class:`VectorDiff`,
  edit requests (:class:`ConstraintEdit`, :class:`SelectionEdit`, :class:`ProposalEdit`)
* learning: :class:`ParamStore`, :func:`use_params`, :func:`choice_gradients`,
  :func:`param_gradients`
* speed: batched ``vsimulate``/``vgenerate`` on every generative function, and
  :func:`compile`; :func:`vmap_traces` runs a per-trace function over many chains or
  particles at once (:func:`vmap_call` is the general form)
* extending the interpreter: :func:`run_body` and the handler protocol
  (:mod:`genmlx.core.interpreter`)
* plugins: :func:`registry`
* saving results: :func:`save` / :func:`load` (a portable file format); choice maps,
  traces and results also pickle and deep-copy

Importing ``genmlx.core`` does not load plugins; the registry loads them on first use.
It does make ``import genmlx.<sibling>`` of a first-party package that is not
installed fail with a message naming the package to install.
"""

from genmlx.core import _siblings
from genmlx.core.address import Address, format_address
from genmlx.core.batching import vmap_call, vmap_traces
from genmlx.core.choicemap import ChoiceMap, choicemap
from genmlx.core.compile import compile
from genmlx.core.deterministic import CustomGradientGF, DeterministicGF, deterministic
from genmlx.core.diff import Diff, NoChange, UnknownChange, VectorDiff
from genmlx.core.distribution import Distribution, DistributionTrace, Param
from genmlx.core.dsl import DynamicGenerativeFunction, DynamicTrace, gen, splice
from genmlx.core.edit import ConstraintEdit, EditRequest, ProposalEdit, SelectionEdit
from genmlx.core.errors import (
    AddressError,
    BatchedControlFlowError,
    ConstraintError,
    DistributionArgumentError,
    GenMLXError,
    ImproperPriorError,
    InvalidAddressError,
    InvalidKeyError,
    MissingChoiceError,
    NonFiniteScoreError,
    PluginError,
)
from genmlx.core.factor import Factor, factor
from genmlx.core.gfi import (
    AssessResult,
    EditResult,
    GenerateResult,
    GenerativeFunction,
    ProposeResult,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.gradients import choice_gradients, param_gradients
from genmlx.core.graph import ModelGraph, Site, analyze
from genmlx.core.handlers import run_body
from genmlx.core.logdensity import LogDensity, StaticModelError, logdensity
from genmlx.core.params import ParamStore, param, use_params
from genmlx.core.plugins.registry import registry
from genmlx.core.selection import Selection, select
from genmlx.core.serialize import FormatError, SavedTrace, load, save
from genmlx.core.threads import ThreadStreamError
from genmlx.core.trace import Trace
from genmlx.core.tree import evaluate

__all__ = [
    "Address",
    "AddressError",
    "AssessResult",
    "BatchedControlFlowError",
    "ChoiceMap",
    "ConstraintEdit",
    "ConstraintError",
    "CustomGradientGF",
    "DeterministicGF",
    "Diff",
    "Distribution",
    "DistributionArgumentError",
    "DistributionTrace",
    "DynamicGenerativeFunction",
    "DynamicTrace",
    "EditRequest",
    "EditResult",
    "Factor",
    "FormatError",
    "GenMLXError",
    "GenerateResult",
    "GenerativeFunction",
    "ImproperPriorError",
    "InvalidAddressError",
    "InvalidKeyError",
    "LogDensity",
    "MissingChoiceError",
    "ModelGraph",
    "NoChange",
    "NonFiniteScoreError",
    "Param",
    "ParamStore",
    "PluginError",
    "ProposalEdit",
    "ProposeResult",
    "RegenerateResult",
    "SavedTrace",
    "Selection",
    "SelectionEdit",
    "Site",
    "StaticModelError",
    "ThreadStreamError",
    "Trace",
    "UnknownChange",
    "UpdateResult",
    "VectorDiff",
    "analyze",
    "choice_gradients",
    "choicemap",
    "compile",
    "deterministic",
    "evaluate",
    "factor",
    "format_address",
    "gen",
    "load",
    "logdensity",
    "param",
    "param_gradients",
    "registry",
    "run_body",
    "save",
    "select",
    "splice",
    "use_params",
    "vmap_call",
    "vmap_traces",
]

__version__ = "0.1.0"

_siblings.install()
