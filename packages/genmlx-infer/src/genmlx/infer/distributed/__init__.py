"""Inference across processes and machines with :mod:`mlx.core.distributed`.

The sharding-aware functions of :mod:`genmlx.infer` take ``group=`` (an
``mx.distributed.Group``, from ``mx.distributed.init()``) or pick it up from a
:func:`use_group` block; without a group they behave exactly as before. Started with
``mlx.launch -n P python script.py``, every process runs the same script and makes the
same calls with the same keys; each holds a shard of the particles or chains:

* :func:`genmlx.infer.importance_sampling` / :func:`genmlx.infer.importance_resampling`
  (``group=``, ``gather=``): particles ``[⌊rN/P⌋, ⌊(r+1)N/P⌋)`` on process ``r``, drawn
  with their global keys, so the union is exactly the single-process run; the log ML
  and the weight normalisation are global;
* :func:`genmlx.infer.particle_filter` (``group=``, ``mode="global"|"island"``) returns
  a :class:`ShardedParticleFilterState`; global resampling moves only particles whose
  ancestor lives on another process;
* :func:`genmlx.infer.chain` and :func:`genmlx.infer.nuts_warmup` (``group=``,
  ``pool=``): this process's chains; :func:`vgenerate` / :func:`vsimulate` make them;
* :func:`genmlx.infer.rhat`, :func:`genmlx.infer.ess_bulk`,
  :func:`genmlx.infer.ess_tail`, :func:`genmlx.infer.ess_mean`,
  :func:`genmlx.infer.summary`, :func:`genmlx.infer.effective_sample_size_weights`
  (``group=``): statistics over all processes' chains or particles.

One process (a group of size 1, as ``mx.distributed.init()`` returns under plain
``python``) runs the same code without communication and gives the same numbers as any
number of processes. See the docs page *Running on several processes and GPUs*.
"""

from genmlx.infer.distributed._comm import Layout, current_group, use_group
from genmlx.infer.distributed.mcmc import vgenerate, vsimulate
from genmlx.infer.distributed.smc import MODES, ShardedParticleFilterState

__all__ = [
    "MODES",
    "Layout",
    "ShardedParticleFilterState",
    "current_group",
    "use_group",
    "vgenerate",
    "vsimulate",
]
