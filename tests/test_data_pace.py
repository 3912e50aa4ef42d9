"""The data path's pace: `measure_pace` on real small videos, `workers_needed`, `videomae doctor --data`, and the
training loop's warning when the loader holds training back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner
from videogen import write_text_as_video, write_video  # av before decord (see videogen)

from videomae_cli.cli import app
from videomae_cli.cli.common import reporting
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import DataSpec, PretrainSpec
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.pace import measure_pace, workers_needed
from videomae_cli.data.video import available_backends
from videomae_cli.errors import ConfigError
from videomae_cli.train.loop import DATA_WAIT_WARNING, LoaderWatch, loader_bottleneck, train
from videomae_cli.train.pretrain import setup
from videomae_cli.ui.progress import SilentReporter

SMALL = {"num_frames": 4, "sampling_rate": 2, "input_size": 32}
SMALL_FLAGS = ["--input-size", "32", "--frames", "4", "--sampling-rate", "2", "--sample", "2"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small H.264 videos (64×48, 40 frames) in a folder of their own."""
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / f"v{i}.mp4", num_frames=40) for i in range(3)]


def doctor(*args: str) -> object:
    """`videomae doctor` in this process (torch and the decoders are loaded already: seconds, not tens)."""
    return CliRunner().invoke(app, ["doctor", *args])


# --------------------------------------------------------------------------------------------------- measure_pace


@pytest.mark.parametrize("backend", available_backends())
def test_measure_pace_times_every_clip_of_every_video(videos: list[Path], backend: str) -> None:
    pace = measure_pace(videos, backend, clips_per_video=2, **SMALL)
    assert (pace.backend, pace.videos, pace.clips, pace.failures) == (backend, 3, 6, [])
    assert pace.seconds > 0 and pace.clips_per_second == pytest.approx(6 / pace.seconds)
    assert pace.ms_per_clip == pytest.approx(1000 * pace.seconds / 6)


def test_measure_pace_loads_through_the_training_path_on_one_thread(videos: list[Path], monkeypatch) -> None:
    calls, threads = [], []
    real_load = VideoClips.load

    def load(self: VideoClips, epoch: int, index: int, repeats: int = 1):
        calls.append((epoch, index))
        threads.append(torch.get_num_threads())
        return real_load(self, epoch, index, repeats)

    monkeypatch.setattr(VideoClips, "load", load)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pace = measure_pace(videos[:2], "pyav", clips_per_video=3, **SMALL)
        assert torch.get_num_threads() == 2  # put back afterwards
    finally:
        torch.set_num_threads(before)
    # one untimed warm-up at an epoch the timing does not use, then epochs 0..2 of each video: different clips
    assert calls == [(3, 0), (0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert set(threads) == {1} and pace.clips == 6


@pytest.mark.parametrize("backend", available_backends())
def test_a_broken_video_is_counted_in_failures_and_skipped(videos: list[Path], backend: str, tmp_path: Path) -> None:
    broken = write_text_as_video(tmp_path / "broken.mp4")
    pace = measure_pace([broken, *videos], backend, clips_per_video=1, **SMALL)  # first: the warm-up skips it too
    assert (pace.videos, pace.clips) == (3, 3)
    [failure] = pace.failures
    assert failure.startswith(f"{broken}: ")


def test_a_bad_request_names_the_spec_field(videos: list[Path]) -> None:
    with pytest.raises(ConfigError, match=r"^data\.decoder: "):
        measure_pace(videos, "nope", **SMALL)
    with pytest.raises(ConfigError, match=r"^data\.num_frames: "):
        measure_pace(videos, "pyav", num_frames=0)


def test_workers_needed() -> None:
    assert workers_needed(40.0, 1.0, 32) == 1  # 32 clips/s × 1.25 = 40: exactly one worker
    assert workers_needed(10.0, 1.0, 32) == 4
    assert workers_needed(10.0, 1.0, 32, headroom=1.0) == 4  # 3.2 workers: a fourth for the rest
    assert workers_needed(100.0, 0.1, 8) == 1  # never fewer than one
    assert workers_needed(0.1, 0.2, 6) == 15  # 15.000000000000002 in floating point: still 15
    with pytest.raises(ValueError):
        workers_needed(0.0, 1.0, 32)


# ----------------------------------------------------------------------------------------------- doctor --data


def test_doctor_data_prints_the_pace_of_every_backend_for_a_folder(videos: list[Path]) -> None:
    result = doctor("--data", str(videos[0].parent), *SMALL_FLAGS)
    assert result.exit_code == 0, result.output
    assert "doctor: all required pieces work" in result.output  # the environment checks still run
    assert "data pace: 2 of 3 videos" in result.output and "clips/s per worker" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ ")]
    for backend in available_backends():
        assert any(line.split()[1] == backend for line in rows)
        assert any(
            line.startswith(f"{backend}: ") and "this machine has" in line for line in result.output.splitlines()
        )


def test_doctor_data_reads_a_prepare_data_folder(videos: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepared = CliRunner().invoke(app, ["prepare-data", str(videos[0].parent), "--out", str(out), "--progress", "off"])
    assert prepared.exit_code == 0, prepared.output
    listed = len((out / "train.csv").read_text().splitlines())
    result = doctor("--data", str(out), *SMALL_FLAGS)
    assert result.exit_code == 0, result.output
    assert f"data pace: {min(2, listed)} of {listed} videos of {out}" in result.output


def test_doctor_data_says_when_the_loader_will_be_the_bottleneck(videos: list[Path]) -> None:
    result = doctor("--data", str(videos[0]), *SMALL_FLAGS, "--steps-per-second", "1e6", "--batch-size", "256")
    assert result.exit_code == 0, result.output
    assert "the loader will be the bottleneck" in result.output
    assert "videomae prepare-data SRC --out DIR --resize-short 320" in result.output


def test_doctor_data_does_not_advise_preparing_videos_that_are_prepared(videos: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    command = ["prepare-data", str(videos[0].parent), "--out", str(out), "--resize-short", "32", "--progress", "off"]
    prepared = CliRunner().invoke(app, command)
    assert prepared.exit_code == 0, prepared.output
    result = doctor("--data", str(out), *SMALL_FLAGS, "--steps-per-second", "1e6", "--batch-size", "256")
    assert result.exit_code == 0, result.output
    assert "the videos are prepared for training already: only more cores close the gap" in result.output
    assert "videomae prepare-data SRC" not in result.output


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "nope", "error: data: no such file or directory: {path} (set by --data)"),
        (lambda tmp: tmp, "error: data: no video files under {path} (and no train.csv) (set by --data)"),
    ],
)
def test_a_bad_data_path_is_one_line_and_exit_2(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path)
    result = doctor("--data", str(path), *SMALL_FLAGS)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [expected.format(path=path)]
    assert "videomae doctor" not in result.stdout  # refused before the checks run


def test_a_manifest_of_unreadable_videos_is_exit_2(tmp_path: Path) -> None:
    manifest = tmp_path / "train.csv"
    manifest.write_text(f"{write_text_as_video(tmp_path / 'a.mp4')} 0\n{tmp_path / 'missing.mp4'} 1\n")
    result = doctor("--data", str(manifest), *SMALL_FLAGS)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: data: none of the 2 sampled videos of {manifest} could be read (")


# ------------------------------------------------------------------------------------------- the loop's warning


def test_the_bottleneck_decision() -> None:
    over, under = DATA_WAIT_WARNING + 0.1, DATA_WAIT_WARNING - 0.1
    assert not loader_bottleneck([])
    assert not loader_bottleneck([over])  # one slow window is not a bottleneck
    assert loader_bottleneck([over, over])
    assert not loader_bottleneck([over, under])
    assert loader_bottleneck([under, over, over])


def test_the_warning_skips_the_first_window_and_comes_once() -> None:
    watch = LoaderWatch(DataSpec(source="train.csv", num_workers=2))
    assert [watch.window(0.9), watch.window(0.9)] == [None, None]  # the first window is the workers' start-up
    warning = watch.window(0.5)
    assert warning is not None and warning.startswith("warning: the loader is the bottleneck: 70% of step time")
    assert "`data.num_workers` (now 2)" in warning
    assert [watch.window(0.9) for _ in range(3)] == [None, None, None]
    synthetic = LoaderWatch(DataSpec(num_workers=0))
    assert [synthetic.window(0.9) for _ in range(5)] == [None] * 5


def test_the_cli_says_the_warning_in_flags(capsys: pytest.CaptureFixture[str]) -> None:
    flags = {"data.num_workers": ("--num-workers", 2), "init": ("--init", "none")}
    with reporting("off", 0, flags) as reporter:
        reporter.notice("warning: raise `data.num_workers` (now 2)")
        reporter.notice("init: none (training from scratch)")  # a notice, not an error: no "(set by --init)"
    assert capsys.readouterr().err == "warning: raise --num-workers (now 2)\ninit: none (training from scratch)\n"


class Notices(SilentReporter):
    def __init__(self) -> None:
        self.notices: list[str] = []

    def notice(self, text: str) -> None:
        self.notices.append(text)


def test_a_run_on_a_slow_loader_warns_once(videos: list[Path], tmp_path: Path, monkeypatch) -> None:
    manifest = tmp_path / "train.csv"
    manifest.write_text("".join(f"{path} 0\n" for path in videos))
    real_load = VideoClips.load

    def slow_load(self: VideoClips, epoch: int, index: int, repeats: int = 1):
        time.sleep(0.2)  # a slow disk: 0.4 s a step, many times a toy model's step
        return real_load(self, epoch, index, repeats)

    monkeypatch.setattr(VideoClips, "load", slow_load)
    # One torch thread: on a machine busy with other work, spinning threads can make the toy step take seconds.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sets = ["model.name=test", "data.input_size=64", "data.num_frames=4", "data.sampling_rate=2"]
    sets += ["data.num_workers=0", "optim.batch_size=2", "run.steps=5", "run.log_every=1", "run.save_every=0"]
    spec = resolve_spec(PretrainSpec, sets=[*sets, f"data.source={manifest}", f"run.out={tmp_path / 'run'}"])
    reporter = Notices()
    try:
        train(setup(spec), reporter)
    finally:
        torch.set_num_threads(threads)
    warnings = [notice for notice in reporter.notices if "the loader is the bottleneck" in notice]
    assert len(warnings) == 1 and "`data.num_workers` (now 0)" in warnings[0]
