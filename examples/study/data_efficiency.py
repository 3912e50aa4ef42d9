"""VideoMAE's data-efficiency claim, sized for a laptop CPU: does masked pretraining beat training from scratch when
labels are scarce, how do the mask ratio and the mask type matter, and what do other targets and masks add?

Every arm fine-tunes the same classifier with the same recipe and budget on a few labelled clips per class of the
built-in synthetic motion dataset (8 classes defined by motion alone — direction, rotation sense, growth of a shape,
or pan, turn, zoom of the whole field; appearance is random and independent of the class, so no single frame can tell
them apart) and is tested on held-out clips. The arms differ only in the encoder they start from: random (scratch) or
masked-autoencoder pretrained on an unlabelled pool with tube masking at 0.9 / 0.75 / 0.5, random (spacetime-agnostic)
masking at 0.9, frame masking at 0.9 (0.75 in the field plan, whose clips have only 4 time slices), or tube 0.9 with
VideoMAE V2's running-cell decoder masking at 0.5. The field plan adds arms that change only the target or the mask
of tube 0.9: MaskFeat's HOG target, MVD's teacher target (the teacher: the study's own tube-0.9 encoder pretrained
on the same pool, so no outside weights are needed) and motion-aware masking at 0.9.

Only the public CLI is used (`videomae pretrain | finetune | prepare-data | visualize-mask`), one subprocess per
stage; the numbers come from the runs' metrics.jsonl. Splits, per seed s:
pretraining pool = synthetic clips 0 .. pool-1 of seed s (labels never read), labelled training set = clips
0 .. 8·k-1 of seed s (k per class, balanced), test set = the held-out synthetic clips of seed s (indices from 2^24,
which no training set reaches). No number is chosen by looking at the test set: every run trains for a fixed number
of steps and the final weights are tested (not the fine-tune run's best-on-validation checkpoint).

    python examples/study/data_efficiency.py --plan field --jobs 2   # docs/study.md: the field scene, 10000 steps
    python examples/study/data_efficiency.py                 # docs/study-busy/: the 40-minute default plan
    python examples/study/data_efficiency.py --quick          # a 3-minute smoke run: runs/study-quick/docs/study.md
    python examples/study/data_efficiency.py --plan field --quick --jobs 2   # the field plan's smoke run

Two plans: `busy` (the default, about 40 minutes on 2 cores) pretrains a 128-token model for 600 steps per arm and
seed on the busy scene; `field` pretrains a 64-token model for 10000 steps on the field scene (a texture that moves as
a whole: the scene in which the tube-0.9 MAE learns motion features on a CPU) and fine-tunes every encoder with three
seeds. It pretrains each arm once, except the compared arms (tube 0.9 and the three new ones), which it pretrains on
the pools of two seeds, so that their spread covers the pretraining as well as the fine-tuning.

Finished stages are kept in --out and skipped when the study is run again with the same settings (interrupted stages,
and stages whose command changed, are redone).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from study_plan import DEFAULT_PLAN, NUM_CLASSES, PLANS, Arm, ArmResult, Plan, headline_arm
from study_report import plot, result_json, timing_text, write_report

from videomae_cli.runtime import cores_per_process

DONE_FILE = "study-stage.json"  # written into a run directory when its stage finished; holds the wall time


@dataclass
class Stage:
    """The outcome of one finished stage: its run directory and wall time."""

    run: Path
    seconds: float


@dataclass
class Study:
    """Runs the stages of a plan under `out`, skipping those already finished."""

    plan: Plan
    out: Path
    stage_seconds: list[float] = field(default_factory=list)  # every stage's wall time, as measured when it ran
    # Pretrainings by run directory, each run (and timed) once: a teacher arm needs another arm's encoder, which the
    # other arm's thread may be pretraining at that moment.
    _encoders: dict[Path, Stage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pretraining: dict[Path, threading.Lock] = field(default_factory=dict)

    def run_stage(self, run: Path, argv: Sequence[str]) -> Stage:
        """Run one `videomae` command that writes `run`, unless an earlier study finished the same command there."""
        done = run / DONE_FILE
        record = json.loads(done.read_text()) if done.exists() else {}
        if record.get("argv") == list(argv):
            self.stage_seconds.append(record["seconds"])
            return Stage(run, record["seconds"])
        if run.exists():
            shutil.rmtree(run)  # interrupted, or run with other settings: redo it whole, so its wall time is honest
        run.mkdir(parents=True)
        start = time.perf_counter()
        videomae(argv, run / "study-stage.log")
        seconds = time.perf_counter() - start
        done.write_text(json.dumps({"seconds": seconds, "argv": list(argv)}))
        self.stage_seconds.append(seconds)
        return Stage(run, seconds)

    def pretrain_run(self, arm: Arm, pool: int) -> Path:
        """The run directory of one arm's pretraining on the pool of seed `pool`."""
        return self.out / "pretrain" / slug(arm.name) / f"seed{pool}"

    def encoder(self, arm: Arm, pool: int) -> Stage:
        """The arm's encoder pretrained on the pool of seed `pool`: pretrained now, or by another thread or study."""
        run = self.pretrain_run(arm, pool)
        with self._lock:
            lock = self._pretraining.setdefault(run, threading.Lock())
        with lock:
            if run not in self._encoders:
                self._encoders[run] = self.pretrain(arm, pool)
            return self._encoders[run]

    def teacher_of(self, arm: Arm) -> Arm | None:
        """The arm whose encoder teaches `arm`, if any."""
        return next(a for a in self.plan.arms if a.name == arm.teacher) if arm.teacher else None

    def pretrain(self, arm: Arm, pool: int) -> Stage:
        """Masked-autoencoder pretraining of one arm on the unlabelled pool of seed `pool`."""
        p = self.plan
        run = self.pretrain_run(arm, pool)
        teacher = self.teacher_of(arm)
        teacher_run = self.encoder(teacher, pool).run if teacher else None
        argv = ["pretrain", *p.common, *p.pretrain, *arm.pretrain_flags(teacher_run), "--steps", str(p.pretrain_steps)]
        argv += ["--set", f"data.synthetic_videos={p.pool_videos}", "--seed", str(pool)]
        return self.run_stage(run, [*argv, "--out", str(run)])

    def finetune(self, arm: Arm, pool: int | None, seed: int, per_class: int) -> Stage:
        """Fine-tune a classifier on `per_class` labelled clips per class, from the arm's encoder pretrained on the
        pool of seed `pool`, or from scratch (None)."""
        p = self.plan
        init = self.encoder(arm, pool).run if pool is not None else None
        run = self.out / "finetune" / slug(arm.name) / f"labels{per_class}"
        if pool is not None and pool != p.pretraining_seeds[0] and p.shared_pretraining:
            run /= f"pool{pool}"
        run /= f"seed{seed}"
        argv = ["finetune", "--init", str(init) if init else "none", *p.common, *p.finetune]
        argv += ["--steps", str(p.finetune_steps), "--set", f"data.synthetic_videos={per_class * NUM_CLASSES}"]
        # The fine-tune run's validation set is the test set: it validates once, after the last step, so the number
        # is the final weights' (no checkpoint is picked by its test score).
        argv += ["--set", f"data.synthetic_val_videos={p.test_videos}", "--set", "data.val_every_epochs=1000000"]
        argv += ["--seed", str(seed), "--out", str(run)]
        return self.run_stage(run, argv)


SAMPLING_RATE = 4  # data.sampling_rate, left at its default by every run


def slug(name: str) -> str:
    """A directory name for an arm: `tube 0.9 + running cell 0.5` → `tube-09-running-cell-05`."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name.replace(".", "")).strip("-")


def videomae(argv: Sequence[str], log: Path) -> None:
    """Run one `videomae` command, announced on the driver's output, its output in `log` (unbuffered, so the log is
    complete if it fails); a failure stops the study with the command and the log's last lines."""
    say(f"$ videomae {' '.join(argv)}")
    command = [sys.executable, "-m", "videomae_cli", *argv]
    with open(log, "w") as out:
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    if result.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"stage failed (exit {result.returncode}): videomae {' '.join(argv)}\n" + "\n".join(tail))


def say(text: str) -> None:
    """One progress line of the driver."""
    print(text, flush=True)


# ------------------------------------------------------------------------------------------------------- the runs


def run_study(study: Study, jobs: int = 1) -> list[ArmResult]:
    """Pretrain, fine-tune and test every arm for every seed and label budget; `jobs` arms at a time (more than one
    makes each stage's wall time include the others' competition for the CPU)."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda arm: run_arm(study, arm), study.plan.arms))


def run_arm(study: Study, arm: Arm) -> ArmResult:
    """All runs of one arm, encoder by encoder."""
    result = ArmResult(arm)
    teacher = study.teacher_of(arm)
    for pool, seed in study.plan.runs_of(arm):
        if pool is not None and pool not in result.pools:
            stage = study.encoder(arm, pool)
            result.pretrain_seconds.append(stage.seconds)
            result.loss_curves.append(loss_curve(stage.run))
            if teacher:
                result.teacher_seconds.append(study.encoder(teacher, pool).seconds)
        for per_class in study.plan.labels_per_class:
            tuned = study.finetune(arm, pool, seed, per_class)
            result.finetune_seconds.setdefault(per_class, []).append(tuned.seconds)
            top1 = final_top1(tuned.run)
            result.top1.setdefault(per_class, {})[pool, seed] = top1
            origin = "" if pool is None else f"pool {pool} | "
            say(f"{arm.name} | {origin}seed {seed} | {per_class} labels per class | top-1 {100 * top1:.1f}%")
    return result


def final_top1(finetuned: Path) -> float:
    """Top-1 of the final weights on the held-out clips: the fine-tune run's one validation, after its last step."""
    rows = [json.loads(line) for line in (finetuned / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if "val_top1" in row][-1]["val_top1"]


def loss_curve(run: Path) -> tuple[list[int], list[float]]:
    """(steps, training losses) from a run's metrics.jsonl."""
    steps, losses = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            steps.append(row["step"])
            losses.append(row["loss"])
    return steps, losses


def held_out_video(study: Study) -> Path:
    """One synthetic clip from a seed no run trains on, written as H.264 by `prepare-data`."""
    folder = study.out / "visualize-data"
    # visualize-mask cuts the clip as evaluation does, every SAMPLING_RATE-th frame: render the video that long.
    frames = study.plan.num_frames * SAMPLING_RATE
    argv = ["prepare-data", "--synthetic", "8", "--seed", "999", "--out", str(folder), "--progress", "off"]
    argv += ["--num-frames", str(frames), "--size", str(study.plan.input_size), "--scene", study.plan.scene]
    study.run_stage(folder, argv)
    return sorted((folder / "videos").rglob("*.mp4"))[0]


def visualize(study: Study, docs: Path) -> Path:
    """The mask / reconstruction picture of one held-out clip for the headline arm's first-seed checkpoint."""
    arm = headline_arm(study.plan)
    pool = study.plan.runs_of(arm)[0][0]
    assert pool is not None
    checkpoint = study.encoder(arm, pool).run  # pretrained by run_study
    picture = docs / "study-visualize.png"
    argv = ["visualize-mask", str(checkpoint), "--video", str(held_out_video(study)), "--out", str(picture)]
    argv += ["--frames", "all", "--error-map"]
    videomae(argv, study.out / "visualize-mask.log")
    return picture


# ------------------------------------------------------------------------------------------------------ the command


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the driver."""
    summary = __doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(description=summary, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--plan", choices=sorted(PLANS), default=DEFAULT_PLAN,
        help="busy (default): the 8-pixel-patch model on the busy scene, about 40 minutes on 2 cores;\n"
        "field: a finer-grid model pretrained 10000 steps on the field scene, each arm once, 3 fine-tuning seeds",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smoke run: one seed, a few steps (about 3 minutes)")
    parser.add_argument(
        "--out", type=Path, help="run directories (default: runs/study, or runs/study-PLAN; with --quick, ...-quick)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="arms run at once (default 1: honest wall times)")
    parser.add_argument(
        "--docs",
        type=Path,
        help="where study.md/.png go (default: docs/study-busy, or docs for the field plan; with --quick, OUT/docs)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the study and write the report."""
    args = parse_args(argv)
    plan = PLANS[args.plan].quick() if args.quick else PLANS[args.plan]
    out, docs = folders(args)
    study = Study(plan, out)
    if args.jobs > 1:  # each of the commands that run at once gets its share of the cores; the user's setting wins
        os.environ.setdefault("OMP_NUM_THREADS", str(cores_per_process(args.jobs)))
    results = run_study(study, args.jobs)
    docs.mkdir(parents=True, exist_ok=True)
    visualize(study, docs)
    plot(results, plan, docs / "study.png")
    (docs / "study.json").write_text(json.dumps([result_json(r) for r in results], indent=1))
    command = "python examples/study/data_efficiency.py" + ("" if plan.name == DEFAULT_PLAN else f" --plan {plan.name}")
    command += " --quick" if args.quick else ""
    command += f" --jobs {args.jobs}" if args.jobs > 1 else ""
    report = write_report(results, plan, docs, command, timing_text(study.stage_seconds, args.jobs))
    say(f"wrote {report}, {docs / 'study.png'}, {docs / 'study-visualize.png'}")


def folders(args: argparse.Namespace) -> tuple[Path, Path]:
    """Where the runs and the report go: the user's --out and --docs, else the plan's own folders."""
    # Each plan, and each plan's smoke run, keeps its runs apart: a stage whose command changed is redone in place,
    # so a --quick run in the full study's folder would delete the full study's finished runs.
    suffix = "" if args.plan == DEFAULT_PLAN else f"-{args.plan}"
    out = args.out or Path(f"runs/study{suffix}" + "-quick" * args.quick)
    return out, args.docs or (out / "docs" if args.quick else Path(PLANS[args.plan].docs))


if __name__ == "__main__":
    main()
