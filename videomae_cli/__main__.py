"""`python -m videomae_cli ...` (also under `torchrun -m videomae_cli ...`)."""

from videomae_cli.cli import main

main()
