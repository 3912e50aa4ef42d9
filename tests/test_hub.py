"""Checkpoints by Hugging Face Hub id (`ORG/NAME`, `ORG/NAME@REV`, `hf://…`) wherever a checkpoint is taken, from a
hub cache laid out as huggingface_hub lays it, offline; never the network. The errors: a model that does not exist
(a local server answering as the hub does), an unreachable hub and an offline miss, each one line and its exit code.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TOY_ARGS, run_cli
from hubcache import add_to_hub_cache, hub_files
from safetensors import safe_open
from safetensors.torch import load_file
from test_interop import CLASSES, GRID, hf_classification, hf_pretraining, pretrain_spec, save_hf, save_ours
from videogen import write_video

import videomae_cli
from videomae_cli.errors import ConfigError
from videomae_cli.interop.hub import HubRef, choose_files, parse_hub_ref
from videomae_cli.models.pretrain import PretrainVideoMAE

transformers = pytest.importorskip("transformers")  # the `dev` extra: the HF models the cache holds

OFFLINE_MISS = 69


# ------------------------------------------------------------------------------------------------- references


def test_a_hub_id_is_org_slash_name_with_an_optional_revision(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_hub_ref("MCG-NJU/videomae-base") == HubRef("MCG-NJU/videomae-base", explicit=False)
    assert parse_hub_ref("MCG-NJU/videomae-base@v1.0") == HubRef("MCG-NJU/videomae-base", "v1.0", explicit=False)
    assert parse_hub_ref("hf://OpenGVLab/VideoMAEv2-Base") == HubRef("OpenGVLab/VideoMAEv2-Base")
    assert parse_hub_ref("hf://org/name@main/ckpt/vit_b.pth") == HubRef("org/name", "main", "ckpt/vit_b.pth")


def test_a_local_path_is_never_taken_for_a_hub_id(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "pretrain").mkdir(parents=True)
    for local in ("runs/pretrain", "./org/name", "/abs/org/name", "model.safetensors", "a/b/c.safetensors"):
        assert parse_hub_ref(local) is None, local


def test_a_malformed_hf_uri_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a hub reference"):
        parse_hub_ref("hf://just-a-name")


# ------------------------------------------------------------------------------------- which files a model needs


REF = HubRef("org/name")


def test_an_hf_model_needs_its_config_and_safetensors_weights_only() -> None:
    names = ["README.md", "config.json", "preprocessor_config.json", "pytorch_model.bin", "model.safetensors"]
    assert choose_files(names, REF) == ["config.json", "preprocessor_config.json", "model.safetensors"]
    assert choose_files(["config.json", "pytorch_model.bin"], REF) == ["config.json", "pytorch_model.bin"]


def test_a_sharded_hf_model_needs_every_shard() -> None:
    names = ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"]
    names += ["model-00002-of-00002.safetensors"]
    assert choose_files(names, REF) == ["config.json", *names[1:]]


def test_a_repository_with_one_checkpoint_file_needs_that_file() -> None:
    assert choose_files(["README.md", "model.safetensors"], REF) == ["model.safetensors"]
    assert choose_files([".gitattributes", "vit_b_k400_pt_1600e.pth"], REF) == ["vit_b_k400_pt_1600e.pth"]


def test_several_checkpoints_must_be_named_and_the_error_says_how() -> None:
    with pytest.raises(ConfigError, match=r"name one: hf://org/name/a\.pth, hf://org/name/b\.pth"):
        choose_files(["a.pth", "b.pth"], REF)
    assert choose_files(["a.pth", "b.pth"], HubRef("org/name", file="b.pth")) == ["b.pth"]
    with pytest.raises(ConfigError, match=r"has no file c\.pth \(it has: a\.pth, b\.pth\)"):
        choose_files(["a.pth", "b.pth"], HubRef("org/name", file="c.pth"))
    with pytest.raises(ConfigError, match=r"no checkpoint in org/name \(it has: README\.md\)"):
        choose_files(["README.md"], REF)


# ------------------------------------------------------------------------------------------- an offline cache


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """HF_HOME with a hub cache of tiny models: a V1 pretraining model (as save_pretrained writes it), a V1
    classifier in 4.x and in 5.x naming (also under the tag v1), and one of our own pretrain checkpoints; a
    folder of videos with a manifest labelled in the classifier's classes."""
    root = tmp_path_factory.mktemp("hub")
    cache = root / "hf" / "hub"
    save_hf(hf_pretraining(seed=1), root / "pretraining", "save_pretrained")
    commits = {"pretraining": add_to_hub_cache(cache, "tiny/pretraining", hub_files(root / "pretraining"))}
    for names in ("4.x", "5.x"):
        save_hf(hf_classification(seed=2), root / names, names)
        commits[names] = add_to_hub_cache(cache, f"tiny/classifier-{names[0]}", hub_files(root / names))
    add_to_hub_cache(cache, "tiny/classifier-5", hub_files(root / "5.x"), revision="v1")
    ours = PretrainVideoMAE(pretrain_spec().model, GRID)
    save_ours(root / "ours" / "model.safetensors", ours, pretrain_spec(), None)
    commits["ours"] = add_to_hub_cache(cache, "tiny/ours", {"model.safetensors": root / "ours" / "model.safetensors"})
    videos = root / "videos"
    videos.mkdir()
    for name in CLASSES:
        write_video(videos / f"{name}.mp4", 40, width=80, height=64)
    (videos / "val.csv").write_text("".join(f"{name}.mp4 {i}\n" for i, name in enumerate(CLASSES)))
    return {"root": root, "home": root / "hf", "commits": commits, "videos": videos}


@pytest.fixture
def offline(hub: dict[str, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    """A machine with that cache and no network: HF_HOME set, HF_HUB_OFFLINE=1, the working folder a fresh one."""
    monkeypatch.setenv("HF_HOME", str(hub["home"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("HF_HUB_CACHE", "HF_ASSETS_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return hub


def converted_copy(hub: dict[str, object], repo: str, commit: str) -> Path:
    return Path(hub["home"]) / "assets" / "videomae-cli" / f"models--{repo.replace('/', '--')}" / commit


@pytest.mark.parametrize(("repo", "made"), [("tiny/pretraining", "pretraining"), ("tiny/classifier-4", "4.x")])
def test_finetune_starts_from_a_hub_model(repo: str, made: str, offline: dict[str, object], tmp_path: Path) -> None:
    done = run_cli(
        "finetune", "--init", repo, *TOY_ARGS, "--set", "data.synthetic_val_videos=4",
        "--steps", "2", "--out", str(tmp_path / "run"), "--progress", "plain",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    commit = offline["commits"][made]
    assert f"tensors from {repo} (commit {commit}, converted: " in done.stdout
    spec = yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())
    assert spec["init"] == repo  # what was asked for; the commit it was is in the run's record of its init
    assert spec["meta"]["init"]["checkpoint"].startswith(f"{repo} (commit {commit}, converted: ")
    assert (converted_copy(offline, repo, commit) / "model.safetensors").is_file()


def test_evaluate_runs_a_hub_pretraining_model(offline: dict[str, object], tmp_path: Path) -> None:
    args = ("--data", str(offline["videos"] / "val.csv"), "--views", "1x1", "--num-workers", "0", "--progress", "off")
    done = run_cli("evaluate", "tiny/pretraining", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "runs" / "tiny--pretraining" / "eval" / "report.json").read_text())
    assert report["kind"] == "pretrain" and report["reconstruction_loss"] > 0


@pytest.mark.parametrize("names", ["4.x", "5.x"])
def test_evaluate_runs_a_hub_classifier_and_writes_its_report_under_runs(
    names: str, offline: dict[str, object], tmp_path: Path
) -> None:
    repo = f"tiny/classifier-{names[0]}"
    args = ("--data", str(offline["videos"] / "val.csv"), "--views", "1x1", "--num-workers", "0", "--progress", "off")
    done = run_cli("evaluate", repo, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "runs" / f"tiny--classifier-{names[0]}" / "eval" / "report.json").read_text())
    assert report["kind"] == "classifier" and report["num_videos"] == len(CLASSES)
    assert [row["name"] for row in report["per_class"]] == CLASSES  # the classes came from config.json
    assert f"hub: {repo} (commit {offline['commits'][names]}" in done.stderr


def test_a_hub_model_is_converted_once_and_then_loaded_from_the_cache(
    offline: dict[str, object], tmp_path: Path
) -> None:
    copy = converted_copy(offline, "tiny/classifier-4", offline["commits"]["4.x"]) / "model.safetensors"
    done = run_cli("export", "tiny/classifier-4", "--format", "hf", "--out", str(tmp_path / "first"))
    assert done.returncode == 0, done.stderr
    written = copy.stat().st_mtime_ns
    done = run_cli("export", "tiny/classifier-4", "--format", "hf", "--out", str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr
    assert copy.stat().st_mtime_ns == written
    with safe_open(str(copy), "pt") as f:
        assert f.metadata()["videomae.converted_from"].startswith(f"tiny/classifier-4@{offline['commits']['4.x']} (HF")
    hf = transformers.VideoMAEForVideoClassification.from_pretrained(offline["root"] / "4.x").eval()
    exported = transformers.VideoMAEForVideoClassification.from_pretrained(tmp_path / "again").eval()
    video = torch.randn(1, GRID.frames, 3, GRID.height, GRID.width)
    with torch.no_grad():
        torch.testing.assert_close(exported(video).logits, hf(video).logits, atol=1e-4, rtol=0)


def test_a_revision_picks_the_commit_its_ref_names(offline: dict[str, object], tmp_path: Path) -> None:
    done = run_cli("convert", "tiny/classifier-5@v1", "--out", str(tmp_path / "c.safetensors"))
    assert done.returncode == 0, done.stderr
    assert videomae_cli.load(tmp_path / "c.safetensors").classes == CLASSES


def test_a_hub_repository_of_our_own_checkpoint_is_used_as_it_is(offline: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / "mask.png"
    video = offline["videos"] / f"{CLASSES[0]}.mp4"
    done = run_cli("visualize-mask", "hf://tiny/ours", "--video", str(video), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1000
    assert f"hub: hf://tiny/ours (commit {offline['commits']['ours']})\n" in done.stderr  # not "converted: …"
    assert not converted_copy(offline, "tiny/ours", offline["commits"]["ours"]).exists()


def test_a_teacher_may_be_a_hub_id_and_evaluate_loads_it_again(offline: dict[str, object], tmp_path: Path) -> None:
    student = ("--set", "model.target=teacher", "--set", "model.teacher=tiny/pretraining", "--progress", "off")
    student += ("--set", "data.synthetic_val_videos=8")
    done = run_cli("pretrain", *TOY_ARGS, *student, "--steps", "1", "--out", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr
    done = run_cli("evaluate", str(tmp_path / "s"), "--num-workers", "0", "--progress", "off")
    assert done.returncode == 0, done.stderr
    assert "teacher target" in done.stdout


def test_predict_and_embed_take_hub_ids(offline: dict[str, object], tmp_path: Path) -> None:
    video = str(offline["videos"] / f"{CLASSES[1]}.mp4")
    done = run_cli("predict", "tiny/classifier-5", video, "--views", "1x1", "--num-workers", "0", "--progress", "off")
    assert done.returncode == 0, done.stderr
    assert "predictions of tiny/classifier-5" in done.stdout
    out = tmp_path / "features.safetensors"
    done = run_cli("embed", "tiny/pretraining", video, "--out", str(out), "--num-workers", "0", "--progress", "off")
    assert done.returncode == 0, done.stderr
    assert load_file(str(out))["features"].shape == (1, 64)


def test_the_python_api_loads_a_hub_id(offline: dict[str, object]) -> None:
    code = "import videomae_cli; print(videomae_cli.load('tiny/classifier-5').classes)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(CLASSES)


# ------------------------------------------------------------------------------------------------------ errors


def test_an_offline_miss_is_one_line_and_exit_69(offline: dict[str, object]) -> None:
    done = run_cli("evaluate", "tiny/not-cached", "--progress", "off")
    assert done.returncode == OFFLINE_MISS
    assert done.stderr.strip().splitlines() == [
        f"error: checkpoint: tiny/not-cached: no such local file or folder; as a hub model: not in the Hugging Face "
        f"cache ({offline['home'] / 'hub'}), and HF_HUB_OFFLINE=1 forbids downloading it (set by CKPT)"
    ]


def test_a_revision_not_in_the_cache_is_an_offline_miss(offline: dict[str, object]) -> None:
    done = run_cli("finetune", "--init", "hf://tiny/pretraining@v9", *TOY_ARGS, "--steps", "1")
    assert done.returncode == OFFLINE_MISS, done.stderr
    assert done.stderr.startswith("error: init: hf://tiny/pretraining@v9: not in the Hugging Face cache")


class _NotFoundHub(http.server.BaseHTTPRequestHandler):
    """Answers every request as the hub answers for a repository that does not exist."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("X-Error-Message", "Repository not found")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def online(offline: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """Online mode against a local server that knows no repository (HF_ENDPOINT), the same cache."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield offline
    server.shutdown()


def test_a_model_that_does_not_exist_is_one_line_and_exit_2(online: dict[str, object]) -> None:
    done = run_cli("convert", "hf://tiny/no-such-model", "--out", "x.safetensors")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: SRC: hf://tiny/no-such-model: no such model on the Hugging Face Hub "
        "(a private model needs a login: hf auth login, or HF_TOKEN)"
    ]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_hub_is_one_line_and_exit_69(offline: dict[str, object], monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{unused_port()}")  # nothing listens: connection refused
    done = run_cli("evaluate", "hf://tiny/not-cached", "--progress", "off")
    assert done.returncode == OFFLINE_MISS
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: checkpoint: hf://tiny/not-cached: cannot reach the Hugging Face Hub (")
    assert line.endswith(f"and it is not in the cache ({offline['home'] / 'hub'}) (set by CKPT)")


def test_an_unreachable_hub_falls_back_to_the_cache(offline: dict[str, object], monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{unused_port()}")
    done = run_cli("convert", "tiny/classifier-4", "--out", str(tmp_path / "c.safetensors"))
    assert done.returncode == 0, done.stderr
