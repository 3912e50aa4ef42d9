"""prepare-data --resize-short when the output disk fills mid-transcode (issue 24).

No mount needed: the CLI runs under RLIMIT_FSIZE with SIGXFSZ ignored, so any write past the limit fails with EFBIG,
as a full disk fails with ENOSPC. The probe cache and report.json are a few KB and fit; the second transcode (a video
of noise, which compresses badly) does not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from videogen import write_video

resource = pytest.importorskip("resource")  # POSIX only

LIMIT = 32 * 1024  # bytes any one file of the run may grow to: the noise transcode is ~100 KB


def _noise_video(path: Path, num_frames: int = 40, size: int = 128) -> Path:
    """Random pixels at near-lossless quality: the 64-pixel transcode is far bigger than LIMIT."""
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10, options={"crf": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv444p"
        for index in range(num_frames):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing


def _prepare(src: Path, out: Path, limited: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("VIDEOMAE_DEBUG", None)
    args = ["prepare-data", str(src), "--out", str(out), "--resize-short", "64", "--workers", "1", "--progress", "off"]
    return subprocess.run(
        [sys.executable, "-m", "videomae_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        stdin=subprocess.DEVNULL,
        preexec_fn=_limit_file_size if limited else None,
    )


def test_transcode_past_the_file_size_limit_fails_cleanly_and_resumes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("a", "b"):
        (src / name).mkdir(parents=True)
    write_video(src / "a" / "v0.mp4", 20, 64, 48, fps=10)  # small: transcodes within the limit
    _noise_video(src / "b" / "v0.mp4")  # sorted after a/: its transcode crosses the limit
    out = tmp_path / "out"

    result = _prepare(src, out, limited=True)
    assert result.returncode == 74, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "File too large" in lines[0], lines[0]
    assert str(out / "videos" / "b" / "v0.mp4") in lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    # The finished transcode is kept; the one that hit the limit left nothing, under any name.
    assert sorted(p.relative_to(out).as_posix() for p in (out / "videos").rglob("*") if p.is_file()) == [
        "videos/a/v0.mp4"
    ]
    kept = (out / "videos" / "a" / "v0.mp4").stat().st_mtime_ns

    result = _prepare(src, out, limited=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [report["transcode"][key] for key in ("transcoded", "reused", "failed")] == [1, 1, 0]
    assert report["counts"]["usable"] == 2
    assert (out / "videos" / "a" / "v0.mp4").stat().st_mtime_ns == kept  # reused, not transcoded again
    with av.open(str(out / "videos" / "b" / "v0.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 40
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
