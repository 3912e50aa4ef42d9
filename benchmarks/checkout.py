"""Imported by bench_data.py before anything else of the project: puts the root of the checkout this file lives in first
on sys.path, so `videomae_cli` is this checkout's package (not another copy an editable install may point at), in the
benchmark, in its measurement subprocesses (the same script), and in the `videomae prepare-data` it runs (`run_env`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if (ROOT / "videomae_cli").is_dir() and sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))


def run_env() -> dict[str, str]:
    """The environment for a subprocess that must import this checkout's package (run it with cwd=ROOT too: `-m`
    puts the working directory first)."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
