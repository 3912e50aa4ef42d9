"""How the training step's model is spread over the ranks: a DDP wrapper (gradients averaged in the backward pass,
only on the last micro-batch of an accumulated step) or FSDP2 shards, with activation checkpointing either way.
One process trains the model itself.
"""

from __future__ import annotations

import contextlib
import inspect

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from videomae_cli.models.vit import Blocks, set_activation_checkpointing
from videomae_cli.train.distributed import DistEnv
from videomae_cli.train.run import TrainSpec


def parallelize(model: nn.Module, spec: TrainSpec, dist_env: DistEnv, device: torch.device) -> nn.Module:
    """What the training step runs: the model itself (one process), a DDP wrapper (gradients averaged in the
    backward pass), or the model sharded in place by FSDP2, block by block, then the rest."""
    set_activation_checkpointing(model, spec.run.activation_checkpointing)
    if not dist_env.is_distributed:
        return model
    if spec.run.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for stack in (m for m in model.modules() if isinstance(m, Blocks)):
            for block in stack:
                fully_shard(block)
        fully_shard(model)
        return model
    ids = [device.index] if device.type == "cuda" else None
    # Our buffers are fixed tables, identical on every rank: never re-broadcast them (the flag's name varies).
    quiet = (
        "forward_sync_buffers"
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else "broadcast_buffers"
    )
    return DistributedDataParallel(model, device_ids=ids, **{quiet: False})


def gradient_sync(train_model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[None]:
    """DDP averages gradients only on the last micro-batch of an accumulated step."""
    ddp = getattr(train_model, "_orig_mod", train_model)  # under torch.compile, the module it wraps
    if sync or not isinstance(ddp, DistributedDataParallel):
        return contextlib.nullcontext()
    return ddp.no_sync()
