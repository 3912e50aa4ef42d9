"""The `videomae` command: thin wiring from flags to the layers below (design.md: package shape).

Each command builds a validated spec from its flags, calls the layer that does the work with a reporter, and maps
errors to the documented exit codes: 0 ok · 1 unexpected internal error · 2 usage/config error (also an output that
cannot be written, or a run directory in use) · 3 data error · 4 non-finite loss · 74 a read or write failed mid-run ·
75 stopped by SIGTERM/SIGUSR1 after a checkpoint (resume with --resume auto). The heavy layers
(torch and timm: seconds to import) load only once the spec is valid, so a mistyped flag is refused without them (not
by finetune, whose spec is read from its --init checkpoint).
"""

from __future__ import annotations

import os

from videomae_cli.cli.common import app

# Commands are listed by --help in the order they register: the order of a project's work.
# isort: off
from videomae_cli.cli import train, infer, interop, data, tools, plot  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point. Under torchrun, an unexpected error on any rank is recorded with its traceback
    (torch.distributed.elastic's @record) for the launcher's failure summary."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # not under torchrun: keep `--help` free of the torch import
        app(prog_name="videomae")
        return
    from torch.distributed.elastic.multiprocessing.errors import record

    record(lambda: app(prog_name="videomae"))()
