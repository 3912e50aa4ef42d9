"""videomae-cli: VideoMAE-style masked-autoencoder video pretraining.

`import videomae_cli` stays light (no torch): the loaders below import the model code when first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from videomae_cli.version import __version__

if TYPE_CHECKING:
    from torch import nn

    from videomae_cli.checkpoint import LoadedCheckpoint

__all__ = ["__version__", "load", "load_checkpoint"]


def load(path, device: str = "cpu") -> nn.Module:
    """One of our checkpoints (a .safetensors file, a checkpoint dir or a run dir) as a model in eval mode, with
    `.spec` (the run spec) and, for a classifier, `.classes` (the class names); or a Hugging Face Hub id
    (`ORG/NAME[@REVISION]`, `hf://…`), fetched and converted once into the cache. design.md: Python API."""
    return load_checkpoint(path, device).model


def load_checkpoint(path, device: str = "cpu") -> LoadedCheckpoint:
    """The richer result: `.model`, `.kind` ("pretrain" | "classifier"), `.spec`, `.classes`, `.path`."""
    from videomae_cli.checkpoint import load_checkpoint as _load_checkpoint
    from videomae_cli.interop.hub import hub_checkpoint, parse_hub_ref, register_hub_references
    from videomae_cli.models.teacher import with_teacher

    register_hub_references()  # a teacher the checkpoint names may be a hub id too
    ref = parse_hub_ref(path)
    return with_teacher(_load_checkpoint(hub_checkpoint(ref, "path").path if ref else path, device), device)
