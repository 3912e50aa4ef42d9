"""`videomae prepare-data`: sources, problem detection, manifests, split, cache, transcoding and synthetic videos.

End-to-end tests go through the real CLI; tiny videos (20 frames, 32×32) keep each one well under a second.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_cli
from videogen import write_audio_only, write_text_as_video, write_truncated, write_video, write_zero_bytes

from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.data import probe, video
from videomae_cli.data.prepare import jobs, pipeline, splits
from videomae_cli.data.prepare.outputs import PROBE_CACHE
from videomae_cli.data.prepare.source import Problem
from videomae_cli.data.probe import probe_video
from videomae_cli.data.synthetic import MOTION_CLASSES, render_clip, synthetic_label
from videomae_cli.errors import ConfigError
from videomae_cli.ui.progress import SilentReporter, make_reporter

# decord is optional (Linux x86_64 wheels only); "auto" means pyav everywhere, and decord is tested where it loads.
HAVE_DECORD = "decord" in video.available_backends()

CLASSES = ("archery", "bowling", "cycling")


def tiny_video(path: Path, num_frames: int = 20, width: int = 32, height: int = 32, codec: str = "libx264") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, num_frames, width, height, fps=10, codec=codec)


def read_rows(path: Path) -> list[tuple[str, int]]:
    """(path, label) rows of a `PATH LABEL` manifest."""
    rows = []
    for line in path.read_text().splitlines():
        video, label = line.rsplit(" ", 1)
        rows.append((video, int(label)))
    return rows


def all_rows(out: Path) -> dict[str, int]:
    return {video: label for name in ("train.csv", "val.csv") for video, label in read_rows(out / name)}


def load(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


def make_spec(**values) -> PrepareSpec:
    """A PrepareSpec from the given fields (None = not given), resolved as the CLI resolves its flags."""
    return resolve_spec(PrepareSpec, base=({k: v for k, v in values.items() if v is not None}, "the test"))


@pytest.fixture(scope="module")
def class_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], dict[str, str]]:
    """3 classes × 3 good videos, plus one truncated, one empty, one text and one audio-only file named .mp4.

    Returns (root, {good path: label}, {bad path: expected reason prefix}).
    """
    root = tmp_path_factory.mktemp("tree")
    good = {}
    for label, name in enumerate(CLASSES):
        for i in range(3):
            good[str(tiny_video(root / name / f"clip{i}.mp4"))] = label
    bad = {
        str(write_truncated(root / "archery" / "cut.mp4", num_frames=20)): "truncated or corrupt",
        str(write_zero_bytes(root / "bowling" / "empty.mp4")): "empty file",
        str(write_text_as_video(root / "bowling" / "notes.mp4")): "not a media file",
        str(write_audio_only(root / "cycling" / "sound.mp4")): "no video stream",
    }
    return root, good, bad


# ---------------------------------------------------------------------------------------------------------------------
# Class folders, problems, exit codes


def test_class_folders_keep_good_videos_and_report_bad_ones(class_tree, tmp_path: Path) -> None:
    root, good, bad = class_tree
    result = run_cli("prepare-data", str(root), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert all_rows(tmp_path) == good
    classes = {str(i): name for i, name in enumerate(CLASSES)}
    assert load(tmp_path, "classes.json") == {"labelled": True, "num_classes": 3, "classes": classes}
    report = load(tmp_path, "report.json")
    reasons = {problem["path"]: problem["reason"] for problem in report["problems"]}
    assert set(reasons) == set(bad)
    for path, prefix in bad.items():
        assert reasons[path].startswith(prefix), reasons[path]
    assert report["counts"] == {"listed": 13, "usable": 9, "problems": 4, "train": 8, "val": 1, "test": 0}
    assert report["format"] == "folders" and report["labelled"] is True


def test_left_out_videos_give_one_warning_line_and_no_traceback(class_tree, tmp_path: Path) -> None:
    root, _, bad = class_tree
    result = run_cli("prepare-data", str(root), "--out", str(tmp_path), "--progress", "off")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:"), result.stderr
    assert f"{len(bad)} of 13" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_nothing_usable_exits_3_with_one_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_zero_bytes(tiny_video(src / "a" / "x.mp4"))
    write_text_as_video(tiny_video(src / "b" / "y.mp4"))
    result = run_cli("prepare-data", str(src), "--out", str(tmp_path / "out"))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no usable videos"), result.stderr
    assert len(load(tmp_path / "out", "report.json")["problems"]) == 2  # the reasons are still written down
    assert not (tmp_path / "out" / "train.csv").exists()


def test_too_short_videos_are_left_out(tmp_path: Path) -> None:
    tiny_video(tmp_path / "src" / "a" / "long.mp4", num_frames=20)
    short = tiny_video(tmp_path / "src" / "a" / "short.mp4", num_frames=10)
    result = run_cli("prepare-data", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--min-frames", "16")
    assert result.returncode == 0
    (problem,) = load(tmp_path / "out", "report.json")["problems"]
    assert problem == {"path": str(short), "reason": "too short: 10 frames < min_frames 16"}


def test_probe_catches_truncation_that_still_opens(tmp_path: Path) -> None:
    # A WebM keeps its header at the front, so a cut file opens and reports its full duration: only decoding near
    # the end shows that frames are missing.
    whole = tiny_video(tmp_path / "whole.webm", num_frames=40, codec="libvpx-vp9")
    cut = tmp_path / "cut.webm"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    assert probe_video(whole).problem is None
    assert probe_video(whole).info.frames == 40
    assert probe_video(cut).problem.startswith("truncated")
    assert probe_video(tmp_path / "nope.mp4").problem == "missing file"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"val_fraction": 1.0}, "val_fraction: must be in [0, 1)"),
        ({"val_fraction": -0.1}, "val_fraction: must be in [0, 1)"),
        ({"workers": 0}, "workers: must be >= 1"),
        ({"resize_short": 33}, "resize_short: must be a positive even number"),
        ({"format": "youtube"}, "format: Input should be"),
        ({"src": None}, "src: missing (give `src`, a folder or file to prepare, or `synthetic=N`)"),
        ({"synthetic": 4}, "src: give a source or `synthetic=N`, not both"),
        ({"out": None}, "out: missing (give `out`, the folder to write the manifests to)"),
    ],
)
def test_spec_errors_name_the_field(flags: dict, message: str) -> None:
    values = {"src": Path("videos"), "out": Path("prepared"), **flags}
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        make_spec(**values)


def test_bad_flag_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_cli("prepare-data", str(tmp_path), "--out", str(tmp_path / "o"), "--val-fraction", "1.5")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: val_fraction: must be in [0, 1) (set by --val-fraction)"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--out", "o"], "src: missing (give SRC, a folder or file to prepare, or --synthetic N)"),
        (["."], "out: missing (give --out, the folder to write the manifests to)"),
        ([".", "--synthetic", "4", "--out", "o"], "src: give a source or --synthetic N, not both (set by SRC)"),
        (["--synthetic", "4", "--root", ".", "--out", "o"], "root: not used with --synthetic (set by --root)"),
        (
            [".", "--root", ".", "--out", "o"],
            "root: only used with annotation, Kinetics or SSv2 sources (SRC is a video folder) (set by --root)",
        ),
        ([".", "--out", "."], "out: . would overwrite the source; choose another folder (set by --out)"),
    ],
    ids=["no-src", "no-out", "src-and-synthetic", "root-with-synthetic", "root-with-folder", "out-is-src"],
)
def test_misuse_is_one_line_in_flag_terms(args: list[str], line: str, tmp_path: Path) -> None:
    result = run_cli("prepare-data", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {line}"


# ---------------------------------------------------------------------------------------------------------------------
# Other sources


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    videos = {str(tiny_video(tmp_path / "src" / f"v{i}.mp4")) for i in range(4)}
    out = tmp_path / "out"
    assert run_cli("prepare-data", str(tmp_path / "src"), "--out", str(out)).returncode == 0
    rows = all_rows(out)
    assert set(rows) == videos and set(rows.values()) == {0}
    assert load(out, "classes.json")["labelled"] is False
    assert load(out, "report.json")["labelled"] is False
    pretrain = (out / "train_pretrain.csv").read_text().splitlines()
    assert pretrain == [f"{video} 0 -1" for video, _ in read_rows(out / "train.csv")]


def test_annotation_file_with_root(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    lines = []
    for i in range(6):
        tiny_video(videos / "sub" / f"a{i}.mp4")
        lines.append(f"sub/a{i}.mp4 {i % 3}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = run_cli("prepare-data", str(tmp_path / "list.txt"), "--root", str(videos), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert all_rows(out) == {str(videos / "sub" / f"a{i}.mp4"): i % 3 for i in range(6)}
    assert load(out, "report.json")["format"] == "annotations"
    assert load(out, "classes.json")["num_classes"] == 3


def test_kinetics_csv_uses_its_splits_and_reports_missing_videos(tmp_path: Path) -> None:
    rows = [
        ("abseiling", "yt_a", 0, 10, "train"),
        ("abseiling", "yt_b", 15, 25, "train"),
        ("juggling", "yt_c", 3, 13, "train"),
        ("juggling", "yt_d", 7, 17, "val"),
        ("abseiling", "yt_e", 1, 11, "val"),
        ("juggling", "yt_gone", 0, 10, "train"),
    ]
    videos = tmp_path / "k400"
    paths = {}
    for _, youtube_id, start, end, _ in rows[:-1]:
        suffix = ".mkv" if youtube_id == "yt_c" else ".mp4"  # other containers are found too
        paths[youtube_id] = tiny_video(videos / "any" / f"{youtube_id}_{start:06d}_{end:06d}{suffix}")
    csv = tmp_path / "train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    out = tmp_path / "out"
    result = run_cli("prepare-data", str(csv), "--root", str(videos), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert read_rows(out / "train.csv") == [(str(paths["yt_a"]), 0), (str(paths["yt_b"]), 0), (str(paths["yt_c"]), 1)]
    assert sorted(read_rows(out / "val.csv")) == sorted([(str(paths["yt_d"]), 1), (str(paths["yt_e"]), 0)])
    assert load(out, "classes.json")["classes"] == {"0": "abseiling", "1": "juggling"}
    (problem,) = load(out, "report.json")["problems"]
    assert "yt_gone_000000_000010" in problem["path"] and problem["reason"] == "missing file"
    assert len(result.stderr.strip().splitlines()) == 1


def test_something_something_v2(tmp_path: Path) -> None:
    labels = {"Holding something": "0", "Putting something on something": "1", "Tearing something": "2"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    train = [
        {"id": "11", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]},
        {"id": "12", "template": "Putting [something] on [something]"},
    ]
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "validation.json").write_text(
        json.dumps([{"id": "13", "template": "Putting [something] on [something]"}])
    )
    for video_id in ("11", "12", "13"):
        tiny_video(tmp_path / f"{video_id}.webm", codec="libvpx-vp9")
    out = tmp_path / "out"
    result = run_cli("prepare-data", str(tmp_path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert read_rows(out / "train.csv") == [(str(tmp_path / "11.webm"), 0), (str(tmp_path / "12.webm"), 1)]
    assert read_rows(out / "val.csv") == [(str(tmp_path / "13.webm"), 1)]
    assert load(out, "classes.json")["classes"] == {
        "0": "Holding something",
        "1": "Putting something on something",
        "2": "Tearing something",
    }
    report = load(out, "report.json")
    assert report["format"] == "ssv2" and report["videos"]["codec"] == {"vp9": 3}


# ---------------------------------------------------------------------------------------------------------------------
# Split, cache, transcoding, synthetic


def test_split_is_stratified_and_deterministic() -> None:
    sizes = {0: 50, 1: 30, 2: 15, 3: 4, 4: 1}
    labels = [label for label, size in sizes.items() for _ in range(size)]
    keys = [f"video{i:03d}" for i in range(len(labels))]
    val = splits.stratified_val_indices(labels, keys, 0.2, seed=3)
    assert len(val) == 20
    per_class = {label: sum(1 for i in val if labels[i] == label) for label in sizes}
    # Proportional (class 3's 0.8 is the largest remainder), and the singleton class stays in train.
    assert per_class == {0: 10, 1: 6, 2: 3, 3: 1, 4: 0}
    # Same seed, same items (in any order) → the same videos; another seed → another draw.
    order = list(reversed(range(len(labels))))
    again = splits.stratified_val_indices([labels[i] for i in order], [keys[i] for i in order], 0.2, seed=3)
    assert {keys[order[i]] for i in again} == {keys[i] for i in val}
    assert splits.stratified_val_indices(labels, keys, 0.2, seed=4) != val


def test_same_seed_gives_the_same_manifests(class_tree, tmp_path: Path) -> None:
    root, _, _ = class_tree
    for name in ("a", "b"):
        run_cli("prepare-data", str(root), "--out", str(tmp_path / name), "--val-fraction", "0.34", "--seed", "7")
    for manifest in ("train.csv", "val.csv"):
        assert (tmp_path / "a" / manifest).read_text() == (tmp_path / "b" / manifest).read_text()
    train_labels = {label for _, label in read_rows(tmp_path / "a" / "train.csv")}
    assert train_labels == {0, 1, 2} and len(read_rows(tmp_path / "a" / "val.csv")) == 3


def test_second_run_probes_nothing(class_tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _, _ = class_tree
    calls = []

    def counting_probe(path, decoder=None):
        calls.append(path)
        return probe_video(path, decoder)

    monkeypatch.setattr(jobs, "probe_video", counting_probe)
    spec = make_spec(src=root, out=tmp_path, workers=1, progress="off")
    first = pipeline.prepare_data(spec, SilentReporter())
    assert len(calls) == 13
    second = pipeline.prepare_data(spec, SilentReporter())
    assert len(calls) == 13  # nothing probed again
    assert second.splits == first.splits and second.problems == first.problems
    assert second.report["probe"] == {"probed": 0, "cached": 13, "missing": 0}


def test_changed_file_is_probed_again(tmp_path: Path) -> None:
    video = tiny_video(tmp_path / "src" / "a" / "v.mp4")
    args = ("prepare-data", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--workers", "1")
    assert run_cli(*args).returncode == 0
    write_text_as_video(video)  # same path, new size and mtime: the cached "fine" must not be reused
    assert run_cli(*args).returncode == 3
    assert load(tmp_path / "out", "report.json")["probe"]["probed"] == 1


def test_synthetic_videos_are_real_mp4s_with_synthetic_labels(tmp_path: Path) -> None:
    result = run_cli("prepare-data", "--synthetic", "16", "--out", str(tmp_path), "--size", "32", "--num-frames", "8")
    assert result.returncode == 0, result.stderr
    rows = all_rows(tmp_path)
    assert len(rows) == 16
    for index in range(16):
        label = synthetic_label(index, 0)
        path = tmp_path / "videos" / MOTION_CLASSES[label] / f"{index:06d}.mp4"
        assert rows[str(path)] == label
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
    assert load(tmp_path, "classes.json")["classes"] == {str(i): name for i, name in enumerate(MOTION_CLASSES)}
    assert {label for _, label in read_rows(tmp_path / "train.csv")} == set(rows.values())  # every class trains


def test_resize_short_transcodes_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("a", "b"):
        for i in range(2):
            tiny_video(src / name / f"v{i}.avi", width=64, height=48, codec="mpeg4")
    out = tmp_path / "out"
    args = ("prepare-data", str(src), "--out", str(out), "--resize-short", "32")
    assert run_cli(*args).returncode == 0
    rows = all_rows(out)
    assert set(rows) == {str(out / "videos" / name / f"v{i}.mp4") for name in ("a", "b") for i in range(2)}
    for path in rows:
        info = probe_video(path).info
        assert (info.width, info.height, info.codec, info.frames, info.fps) == (42, 32, "h264", 20, 10.0)
    mtimes = {path: Path(path).stat().st_mtime_ns for path in rows}
    assert run_cli(*args).returncode == 0
    counts = load(out, "report.json")["transcode"]
    assert (counts["transcoded"], counts["reused"], counts["failed"], counts["files"]) == (0, 4, 0, 4)
    assert {path: Path(path).stat().st_mtime_ns for path in rows} == mtimes
    assert not list(out.rglob("*.part"))


# ---------------------------------------------------------------------------------------------------------------------
# The training decoder check (--decoder)


@pytest.mark.parametrize(
    "decoder", ["pyav", pytest.param("decord", marks=pytest.mark.skipif(not HAVE_DECORD, reason="decord missing"))]
)
def test_decoder_accepts_the_good_videos(class_tree, tmp_path: Path, decoder: str) -> None:
    root, good, bad = class_tree
    result = run_cli("prepare-data", str(root), "--out", str(tmp_path), "--decoder", decoder)
    assert result.returncode == 0, result.stderr
    assert all_rows(tmp_path) == good
    report = load(tmp_path, "report.json")
    assert {problem["path"] for problem in report["problems"]} == set(bad)  # PyAV's own verdicts, unchanged
    assert report["settings"]["decoder"] == decoder


def test_auto_decoder_is_recorded_resolved(tmp_path: Path) -> None:
    tiny_video(tmp_path / "src" / "v.mp4")
    result = run_cli("prepare-data", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--val-fraction", "0")
    assert result.returncode == 0, result.stderr
    assert load(tmp_path / "out", "report.json")["settings"]["decoder"] == "pyav"


def test_video_the_decoder_cannot_read_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Files that PyAV reads and decord does not are hard to make on purpose: stand in for the backend instead.
    good = tiny_video(tmp_path / "src" / "a" / "good.mp4")
    odd = tiny_video(tmp_path / "src" / "a" / "odd.mp4")
    real_open = probe.open_video

    def picky_open(path, backend):
        if str(path) == str(odd):
            raise video.VideoError(f"{path}: decord cannot read it: unsupported profile")
        return real_open(path, backend)

    monkeypatch.setattr(probe, "open_video", picky_open)
    spec = make_spec(src=tmp_path / "src", out=tmp_path / "out", workers=1, decoder="pyav")
    result = pipeline.prepare_data(spec, SilentReporter())
    assert result.splits["train"] + result.splits["val"] == [(good, 0)]
    reason = "pyav cannot decode it: decord cannot read it: unsupported profile"
    assert result.problems == [Problem(str(odd), reason)]
    assert result.report["problems"] == [{"path": str(odd), "reason": reason}]


def test_probe_cache_is_per_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The cache logic alone, with a stand-in check, so it is tested where decord is missing too.
    paths = [tiny_video(tmp_path / f"v{i}.mp4") for i in range(3)]
    calls: list[tuple[str, str]] = []

    def fake_probe(path, decoder=None):
        calls.append((path, decoder))
        return replace(probe_video(path), decoder=decoder)

    monkeypatch.setattr(jobs, "probe_video", fake_probe)
    cache = tmp_path / PROBE_CACHE
    reporter = SilentReporter()
    _, counts = jobs.probe_all(paths, cache, 1, reporter, "pyav")
    assert counts["probed"] == 3 and len(calls) == 3
    results, counts = jobs.probe_all(paths, cache, 1, reporter, "decord")
    assert counts == {"probed": 3, "cached": 0, "missing": 0}  # the pyav verdicts were not reused
    assert {r.decoder for r in results.values()} == {"decord"} and calls[3:] == [(str(p), "decord") for p in paths]
    _, counts = jobs.probe_all(paths, cache, 1, reporter, "decord")
    assert counts == {"probed": 0, "cached": 3, "missing": 0}


@pytest.mark.skipif(not HAVE_DECORD, reason="decord missing")
def test_cache_from_one_decoder_is_not_reused_for_the_other(tmp_path: Path) -> None:
    for i in range(2):
        tiny_video(tmp_path / "src" / f"v{i}.mp4")
    args = ("prepare-data", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--workers", "1")
    for decoder, probed in (("pyav", 2), ("decord", 2), ("decord", 0)):
        assert run_cli(*args, "--decoder", decoder).returncode == 0
        report = load(tmp_path / "out", "report.json")
        assert report["probe"]["probed"] == probed and report["settings"]["decoder"] == decoder


def test_unknown_decoder_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_cli("prepare-data", str(tmp_path), "--out", str(tmp_path / "o"), "--decoder", "nosuch")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: decoder: "), result.stderr
    assert lines[0].endswith(" (set by --decoder)")
    assert not (tmp_path / "o").exists()


def test_unavailable_decoder_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "_decord", lambda: None)  # as on a machine without decord
    assert pipeline.resolve_decoder("auto") == "pyav"
    spec = make_spec(src=tmp_path, out=tmp_path / "o", decoder="decord")
    with pytest.raises(ConfigError, match=r"^decoder: .*decord.* not available"):
        pipeline.prepare_data(spec, SilentReporter())
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_synthetic_scene_is_rendered_and_a_changed_scene_renders_again(tmp_path: Path) -> None:
    path = tmp_path / "videos" / MOTION_CLASSES[synthetic_label(0, 0)] / "000000.mp4"

    def first_frame_after_preparing(scene: str) -> np.ndarray:
        spec = make_spec(synthetic=1, out=tmp_path, size=32, num_frames=4, scene=scene, workers=1)
        pipeline.prepare_data(spec, make_reporter("off"))
        with av.open(str(path)) as container:
            return next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.int16)

    busy = first_frame_after_preparing("busy")
    plain = first_frame_after_preparing("plain")
    expected = render_clip(0, 0, 4, 32, scene="plain")[0][0].astype(np.int16)
    assert np.abs(plain - expected).mean() < np.abs(busy - expected).mean()
    assert load(tmp_path / "videos", ".synthetic.json")["scene"] == "plain"


def test_unknown_synthetic_scene_names_the_field() -> None:
    message = r"^scene: Input should be 'busy', 'plain' or 'field', got 'sunny' \(set by the test\)$"
    with pytest.raises(ConfigError, match=message):
        make_spec(synthetic=1, out=Path("prepared"), scene="sunny")
