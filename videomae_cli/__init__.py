"""videomae-cli: VideoMAE-style masked-autoencoder video pretraining."""

from videomae_cli.version import __version__

__all__ = ["__version__", "load"]


def load(path, device="cpu"):
    """Load a checkpoint as a model in eval mode (see videomae_cli.api.load)."""
    from videomae_cli.api import load as _load

    return _load(path, device=device)
