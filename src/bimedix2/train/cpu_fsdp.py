"""FSDP2 on CPU processes (gloo), which accelerate's launcher accepts but its state drops.

`accelerate launch` with an FSDP config exports `ACCELERATE_USE_FSDP=true` and the `FSDP_*`
settings; `AcceleratorState` then applies FSDP only to GPU-class multi-process types and leaves a
CPU run as plain DDP (`MULTI_CPU`), every process holding the whole model. torch's FSDP2
(`fully_shard`) itself runs on CPU with gloo, so for a multi-process CPU launch this sets the
accelerate state to FSDP with the plugin built from those same variables, right after the
Trainer creates its `Accelerator` and before it prepares anything; from there accelerate's own
FSDP2 preparation, gradient clipping and full-state-dict saving run unchanged. Written here
because accelerate has no switch for it (its `MULTI_CPU` branch never looks at the FSDP plugin).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import TrainingError


def fsdp_requested() -> bool:
    """Whether this process was launched with an FSDP accelerate config."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def shard_on_cpu(accelerator: Any) -> bool:
    """Switch a just-created `Accelerator` of a multi-process CPU FSDP launch to FSDP2; return whether it did.

    A no-op (False) unless FSDP was requested and accelerate made the run `MULTI_CPU`. Call it
    before anything is prepared (the Trainer prepares the model in `train()`).
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if not fsdp_requested() or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()  # FSDP_* from the launcher, as accelerate reads them
    if plugin.fsdp_version != 2:
        raise TrainingError("FSDP on CPU processes runs FSDP2 only: set fsdp_version: 2 in the accelerate config")
    state = accelerator.state
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    # as AcceleratorState does for a GPU FSDP run: every later AcceleratorState() re-reads this
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return True
