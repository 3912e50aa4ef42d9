"""The data-efficiency study driver (examples/study) stays runnable: its --quick mode goes through every arm's
pretrain → fine-tune → test pipeline via the real CLI and writes the report. Accuracies are not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parents[1] / "examples" / "study" / "data_efficiency.py"
ARMS = (
    "scratch",
    "tube 0.9",
    "HOG target (tube 0.9)",
    "motion 0.9",
    "teacher target (tube 0.9)",
    "tube 0.75",
    "tube 0.5",
    "random 0.9",
    "frame 0.75",
    "tube 0.9 + running cell 0.5",
)
COMPARED = {"tube 0.9", "HOG target (tube 0.9)", "motion 0.9", "teacher target (tube 0.9)"}  # two pretraining pools


def test_quick_study_runs_every_arm_and_writes_the_report(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    command = [sys.executable, str(DRIVER), "--plan", "field", "--quick", "--jobs", "2"]
    command += ["--out", str(tmp_path / "runs"), "--docs", str(docs)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    numbers = json.loads((docs / "study.json").read_text())
    assert [arm["arm"] for arm in numbers] == list(ARMS)
    for arm in numbers:
        pools = {run["pretraining_seed"] for run in arm["runs"]}  # one label budget, one seed in --quick
        assert pools == ({None} if arm["arm"] == "scratch" else {0, 1} if arm["arm"] in COMPARED else {0})
        assert all(0.0 <= run["top1"] <= 1.0 for run in arm["runs"])
        assert len(arm["pretrain_seconds"]) == len(pools - {None})
        assert bool(arm["teacher_seconds"]) == (arm["arm"] == "teacher target (tube 0.9)")

    report = (docs / "study.md").read_text()
    assert "python examples/study/data_efficiency.py --plan field --quick --jobs 2" in report
    for arm in ARMS:
        assert f"| {arm} | 2 |" in report
    assert "points" in report  # the headline comparison is stated
    assert "- HOG target (tube 0.9) against tube 0.9: 2 labels per class" in report
    assert "| teacher target (tube 0.9) | 2 | " in report.split("### By pretraining seed")[1]
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
    stage = driver.Study(driver.PLANS["busy"].quick(), tmp_path).run_stage(run, ["not-a-command"])  # not run
    assert stage.seconds == 12.5


def test_a_stage_finished_with_other_settings_is_run_again(tmp_path: Path) -> None:
    driver = load_driver()
    run = finished_stage(tmp_path, ["pretrain", "--steps", "600"])
    with pytest.raises(SystemExit, match="stage failed"):
        driver.Study(driver.PLANS["busy"].quick(), tmp_path).run_stage(run, ["not-a-command"])


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


def record_stages(monkeypatch, driver) -> list[list[str]]:
    """Make the driver record its stages' commands instead of running them; `prepare-data` leaves one video."""
    commands: list[list[str]] = []

    def record(study, run: Path, argv: list[str]):
        commands.append(list(argv))
        if argv[0] == "prepare-data":
            (run / "videos").mkdir(parents=True)
            (run / "videos" / "000000.mp4").touch()
        return driver.Stage(run, 1.0)

    monkeypatch.setattr(driver.Study, "run_stage", record)
    return commands


def recorded_arm(monkeypatch, plan_name: str, arm_name: str) -> list[list[str]]:
    """The commands one arm of a plan runs, recorded instead of run."""
    driver = load_driver()
    commands = record_stages(monkeypatch, driver)
    monkeypatch.setattr(driver, "final_top1", lambda run: 0.5)
    monkeypatch.setattr(driver, "loss_curve", lambda run: ([1], [1.0]))
    plan = driver.PLANS[plan_name]
    arm = next(a for a in plan.arms if a.name == arm_name)
    driver.run_arm(driver.Study(plan, Path("out")), arm)
    return commands


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_the_field_plan_pretrains_a_compared_arm_on_two_pools_and_fine_tunes_each_for_every_seed(monkeypatch) -> None:
    commands = recorded_arm(monkeypatch, "field", "tube 0.9")
    pretrains = [c for c in commands if c[0] == "pretrain"]
    finetunes = [c for c in commands if c[0] == "finetune"]
    assert [option(c, "--seed") for c in pretrains] == ["0", "1"]
    encoders = {option(c, "--out") for c in pretrains}
    assert len(finetunes) == 2 * 3 * 2  # 2 pools × 3 seeds × 2 label budgets
    assert {(option(c, "--init"), option(c, "--seed")) for c in finetunes} == {
        (encoder, seed) for encoder in encoders for seed in ("0", "1", "2")
    }
    assert len({option(c, "--out") for c in finetunes}) == len(finetunes)
    assert all("data.synthetic_scene=field" in c for c in commands)


def test_the_field_plan_pretrains_the_other_arms_once_and_fine_tunes_them_for_every_seed(monkeypatch) -> None:
    commands = recorded_arm(monkeypatch, "field", "tube 0.75")
    pretrains = [c for c in commands if c[0] == "pretrain"]
    finetunes = [c for c in commands if c[0] == "finetune"]
    assert [option(c, "--seed") for c in pretrains] == ["0"]
    assert {option(c, "--init") for c in finetunes} == {option(pretrains[0], "--out")}
    assert sorted(option(c, "--seed") for c in finetunes) == ["0", "0", "1", "1", "2", "2"]


def test_the_teacher_arm_learns_from_the_tube_09_encoder_of_its_own_pool(monkeypatch) -> None:
    commands = recorded_arm(monkeypatch, "field", "teacher target (tube 0.9)")
    pretrains = [c for c in commands if c[0] == "pretrain"]
    teachers = {option(c, "--seed"): option(c, "--out") for c in pretrains if "model.target=teacher" not in c}
    students = [c for c in pretrains if "model.target=teacher" in c]
    assert [option(c, "--seed") for c in students] == ["0", "1"]
    for student in students:  # the teacher is pretrained before its student, on the same pool
        teacher = teachers[option(student, "--seed")]
        assert f"model.teacher={teacher}" in student and "/tube-09/" in teacher
        assert commands.index(student) > next(i for i, c in enumerate(commands) if option(c, "--out") == teacher)


def test_the_hog_and_motion_arms_change_only_the_target_or_the_mask(monkeypatch) -> None:
    (hog, *_) = [c for c in recorded_arm(monkeypatch, "field", "HOG target (tube 0.9)") if c[0] == "pretrain"]
    (motion, *_) = [c for c in recorded_arm(monkeypatch, "field", "motion 0.9") if c[0] == "pretrain"]
    (tube, *_) = [c for c in recorded_arm(monkeypatch, "field", "tube 0.9") if c[0] == "pretrain"]
    assert [f for f in hog if f not in tube] == ["model.target=hog", "model.hog_cell=2", hog[hog.index("--out") + 1]]
    assert option(motion, "--mask-type") == "motion" and option(motion, "--mask-ratio") == "0.9"


def test_the_busy_plan_pretrains_once_per_seed_on_the_default_scene(monkeypatch) -> None:
    commands = recorded_arm(monkeypatch, "busy", "tube 0.9")
    pretrains = [c for c in commands if c[0] == "pretrain"]
    assert [c[c.index("--seed") + 1] for c in pretrains] == ["0", "1"]
    assert not any("data.synthetic_scene" in flag for c in commands for flag in c)


def test_a_quick_run_keeps_its_plans_scene_and_model() -> None:
    driver = load_driver()
    field, quick = driver.PLANS["field"], driver.PLANS["field"].quick()
    assert (quick.clip, quick.model, quick.shared_pretraining) == (field.clip, field.model, True)
    assert (quick.seeds, quick.pretrain_steps) == ((0,), 6)


def test_each_plan_reports_into_its_own_folder() -> None:
    driver = load_driver()
    assert driver.folders(driver.parse_args(["--plan", "field"])) == (Path("runs/study-field"), Path("docs"))
    assert driver.folders(driver.parse_args([])) == (Path("runs/study"), Path("docs/study-busy"))


def test_a_quick_run_never_shares_the_full_studys_folders() -> None:
    driver = load_driver()
    for plan in driver.PLANS:
        full = driver.folders(driver.parse_args(["--plan", plan]))
        quick = driver.folders(driver.parse_args(["--plan", plan, "--quick"]))
        assert not {quick[0], quick[1]} & {full[0], full[1]}
        assert quick[0] not in full[0].parents and full[0] not in quick[0].parents


def test_the_report_states_the_wall_time_added_up_and_from_start_to_end() -> None:
    driver = load_driver()
    text = driver.timing_text([3000.0, 2400.0, 600.0], jobs=2)
    assert "3 runs took 1 h 40 min of wall time added up" in text
    assert "about 50 min 0 s from start to end" in text
    assert "start to end" not in driver.timing_text([3000.0], jobs=1)


def test_the_reconstruction_picture_shows_a_clip_of_the_plans_scene(monkeypatch, tmp_path: Path) -> None:
    driver = load_driver()
    commands = record_stages(monkeypatch, driver)
    for plan in driver.PLANS.values():
        driver.held_out_video(driver.Study(plan, tmp_path / plan.name))
        assert commands[-1][0] == "prepare-data"
        assert commands[-1][commands[-1].index("--scene") + 1] == plan.scene
