"""The data-efficiency study driver (examples/study) stays runnable: its --quick mode goes through every arm's
pretrain → fine-tune → test pipeline via the real CLI and writes the report. Accuracies are not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parents[1] / "examples" / "study" / "data_efficiency.py"
ARMS = ("scratch", "tube 0.9", "tube 0.75", "tube 0.5", "random 0.9", "frame 0.9", "tube 0.9 + running cell 0.5")


def test_quick_study_runs_every_arm_and_writes_the_report(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    command = [
        sys.executable,
        str(DRIVER),
        "--quick",
        "--jobs",
        "2",
        "--out",
        str(tmp_path / "runs"),
        "--docs",
        str(docs),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    numbers = json.loads((docs / "study.json").read_text())
    assert [arm["arm"] for arm in numbers] == list(ARMS)
    for arm in numbers:
        (top1,) = arm["top1"].values()  # one label budget, one seed in --quick
        assert 0.0 <= top1["0"] <= 1.0
        assert bool(arm["pretrain_seconds"]) == (arm["arm"] != "scratch")

    report = (docs / "study.md").read_text()
    assert "python examples/study/data_efficiency.py --quick --jobs 2" in report
    for arm in ARMS:
        assert f"| {arm} | 2 |" in report
    assert "points" in report  # the headline comparison is stated
    for picture in ("study.png", "study-visualize.png"):
        assert (docs / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def load_driver():
    sys.path.insert(0, str(DRIVER.parent))
    try:
        import data_efficiency
    finally:
        sys.path.remove(str(DRIVER.parent))
    return data_efficiency


def finished_stage(tmp_path: Path, argv: list[str]) -> Path:
    run = tmp_path / "stage"
    run.mkdir()
    (run / load_driver().DONE_FILE).write_text(json.dumps({"seconds": 12.5, "argv": argv}))
    return run


def test_a_rerun_reuses_a_stage_finished_with_the_same_command(tmp_path: Path) -> None:
    driver = load_driver()
    run = finished_stage(tmp_path, ["not-a-command"])
    stage = driver.Study(driver.QUICK, tmp_path).run_stage(run, ["not-a-command"])  # would fail if it ran
    assert stage.seconds == 12.5


def test_a_stage_finished_with_other_settings_is_run_again(tmp_path: Path) -> None:
    driver = load_driver()
    run = finished_stage(tmp_path, ["pretrain", "--steps", "600"])
    with pytest.raises(SystemExit, match="stage failed"):
        driver.Study(driver.QUICK, tmp_path).run_stage(run, ["not-a-command"])


def threads_the_stages_see(monkeypatch, jobs: int) -> str | None:
    """OMP_NUM_THREADS as the driver's commands would inherit it, with `jobs` arms at once on an 8-core machine."""
    driver = load_driver()
    monkeypatch.setattr(driver.os, "cpu_count", lambda: 8)
    seen = []

    def first_stage(study, jobs):
        seen.append(driver.os.environ.get("OMP_NUM_THREADS"))
        raise SystemExit("stop before running anything")

    monkeypatch.setattr(driver, "run_study", first_stage)
    with pytest.raises(SystemExit, match="stop before"):
        driver.main(["--jobs", str(jobs), "--out", "unused"])
    return seen[0]


def test_arms_run_at_once_share_the_cores(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "unset")
    monkeypatch.delenv("OMP_NUM_THREADS")  # restored afterwards, whatever main() sets
    assert threads_the_stages_see(monkeypatch, jobs=2) == "4"


def test_one_job_leaves_the_thread_count_to_torch(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "unset")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads_the_stages_see(monkeypatch, jobs=1) is None


def test_a_users_thread_setting_wins(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_the_stages_see(monkeypatch, jobs=2) == "3"
