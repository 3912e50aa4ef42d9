"""videomae-cli: VideoMAE-style masked-autoencoder video pretraining."""

__version__ = "0.1.0"


def load(path, device="cpu"):
    """Load a checkpoint as a model in eval mode (see videomae_cli.api.load)."""
    from videomae_cli.api import load as _load

    return _load(path, device=device)
