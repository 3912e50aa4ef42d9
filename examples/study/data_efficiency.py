"""VideoMAE's data-efficiency claim, sized for a laptop CPU: does masked pretraining beat training from scratch when
labels are scarce, and how do the mask ratio and the mask type matter?

Every arm fine-tunes the same classifier with the same recipe and budget on a few labelled clips per class of the
built-in synthetic motion dataset (8 classes defined by motion alone — direction, rotation sense, growth of a shape,
or pan, turn, zoom of the whole field; appearance is random and independent of the class, so no single frame can tell
them apart) and is tested on held-out clips. The arms differ only in the encoder they start from: random (scratch) or
masked-autoencoder pretrained on an unlabelled pool with tube masking at 0.9 / 0.75 / 0.5, random (spacetime-agnostic)
masking at 0.9, frame masking at 0.9 (0.75 in the field plan, whose clips have only 4 time slices), or tube 0.9 with
VideoMAE V2's running-cell decoder masking at 0.5.

Only the public CLI is used (`videomae pretrain | finetune | prepare-data | visualize-mask`), one subprocess per
stage; the numbers come from the runs' metrics.jsonl. Splits, per seed s:
pretraining pool = synthetic clips 0 .. pool-1 of seed s (labels never read), labelled training set = clips
0 .. 8·k-1 of seed s (k per class, balanced), test set = the held-out synthetic clips of seed s (indices from 2^24,
which no training set reaches). No number is chosen by looking at the test set: every run trains for a fixed number
of steps and the final weights are tested (not the fine-tune run's best-on-validation checkpoint).

    python examples/study/data_efficiency.py --plan field --jobs 2   # docs/study.md: the field scene, 10000 steps
    python examples/study/data_efficiency.py                 # docs/study-busy/: the 40-minute default plan
    python examples/study/data_efficiency.py --quick          # a 3-minute smoke run: runs/study-quick/docs/study.md

Two plans: `busy` (the default, about 40 minutes on 2 cores) pretrains a 128-token model for 600 steps per arm and
seed on the busy scene; `field` pretrains a 64-token model for 10000 steps on the field scene (a texture that moves as
a whole: the scene in which the tube-0.9 MAE learns motion features on a CPU), once per arm, and fine-tunes every
encoder with three seeds.

Finished stages are kept in --out and skipped when the study is run again with the same settings (interrupted stages,
and stages whose command changed, are redone).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from videomae_cli.runtime import cores_per_process

# Hand-written: what was tried before the current plan, and what it showed; appended to docs/study.md.
ITERATIONS = Path(__file__).with_name("iterations.md")
DONE_FILE = "study-stage.json"  # written into a run directory when its stage finished; holds the wall time


@dataclass(frozen=True)
class Arm:
    """One way to obtain the encoder that fine-tuning starts from; no mask type means training from scratch."""

    name: str
    mask_type: str | None = None
    mask_ratio: float | None = None
    decoder_mask_ratio: float = 0.0
    target: tuple[str, ...] = ()  # `--set model....` flags of a target other than every run's norm_pixel
    teacher: str | None = None  # the arm whose encoder, pretrained on the same pool, is this arm's teacher
    seeded: bool = False  # a compared arm: pretrained on each of the plan's pretraining pools, not only the first

    @property
    def pretrained(self) -> bool:
        """Whether this arm pretrains an encoder first."""
        return self.mask_type is not None

    def pretrain_flags(self, teacher: Path | None = None) -> list[str]:
        """The masking and target flags of `videomae pretrain` for this arm (`teacher`: its teacher's run)."""
        assert self.mask_type is not None and self.mask_ratio is not None
        flags = ["--mask-type", self.mask_type, "--mask-ratio", str(self.mask_ratio)]
        if self.decoder_mask_ratio:
            flags += ["--decoder-mask-ratio", str(self.decoder_mask_ratio)]
        if self.teacher:
            assert teacher is not None
            flags += ["--set", "model.target=teacher", "--set", f"model.teacher={teacher}"]
        return [*flags, *self.target]


ARMS: tuple[Arm, ...] = (
    Arm("scratch"),
    Arm("tube 0.9", "tube", 0.9),
    Arm("tube 0.75", "tube", 0.75),
    Arm("tube 0.5", "tube", 0.5),
    Arm("random 0.9", "random", 0.9),
    Arm("frame 0.9", "frame", 0.9),
    Arm("tube 0.9 + running cell 0.5", "tube", 0.9, 0.5),
)
# The field plan's arms. Compared (seeded) arms: tube 0.9 with the pixel target and the three that change only the
# target or the mask: MaskFeat's HOG (2-pixel cells: 2 × 2 cells per 4-pixel patch, as MaskFeat's 8-pixel cells in
# its 16-pixel patches), MVD's teacher features (the teacher: this study's own tube-0.9 encoder of the same pool),
# and masks that follow the motion.
FIELD_ARMS: tuple[Arm, ...] = (
    Arm("scratch"),
    Arm("tube 0.9", "tube", 0.9, seeded=True),
    Arm("HOG target (tube 0.9)", "tube", 0.9, target=("--set", "model.target=hog", "--set", "model.hog_cell=2"),
        seeded=True),
    Arm("motion 0.9", "motion", 0.9, seeded=True),
    Arm("teacher target (tube 0.9)", "tube", 0.9, teacher="tube 0.9", seeded=True),
    Arm("tube 0.75", "tube", 0.75),
    Arm("tube 0.5", "tube", 0.5),
    Arm("random 0.9", "random", 0.9),
    Arm("frame 0.75", "frame", 0.75),  # 4 time slices: at 0.9 frame masking would hide them all
    Arm("tube 0.9 + running cell 0.5", "tube", 0.9, 0.5),
)  # fmt: skip
HEADLINE = "tube 0.9"  # the arm the target compares with scratch


@dataclass(frozen=True)
class Plan:
    """Sizes and recipes of the study. `model` and `clip` flags are shared by every pretraining and fine-tuning run."""

    name: str = "busy"
    scene: str = "busy"  # data.synthetic_scene of every run
    seeds: tuple[int, ...] = (0, 1)
    # Pretrain each arm on the first pretraining seed's pool and fine-tune that encoder for every seed, instead of
    # pretraining once per seed: the seeds then vary the labelled set, the fine-tuning and the test set. Compared
    # (seeded) arms are pretrained on the pool of every pretraining seed, and each encoder is fine-tuned for every
    # seed, so their spread covers pretraining as well as fine-tuning.
    shared_pretraining: bool = False
    pretraining_seeds: tuple[int, ...] = (0,)
    labels_per_class: tuple[int, ...] = (4, 16)
    pool_videos: int = 8192
    test_videos: int = 512
    model: tuple[str, ...] = (
        "--model", "test",
        "--set", "model.dim=128", "--set", "model.depth=4", "--set", "model.heads=4", "--set", "model.mlp_dim=512",
        "--set", "model.patch_size=8",
        "--set", "model.decoder_dim=64", "--set", "model.decoder_depth=2", "--set", "model.decoder_heads=4",
        "--set", "model.decoder_mlp_dim=256",
    )  # fmt: skip
    # 16 frames make 8 time slices, so frame masking can hide 7 of them (0.875, the nearest to 0.9).
    num_frames: int = 16
    input_size: int = 32
    pretrain: tuple[str, ...] = ("--batch-size", "32", "--lr", "1e-2", "--set", "optim.warmup_steps=50")
    pretrain_steps: int = 600
    finetune: tuple[str, ...] = (
        "--batch-size", "16", "--lr", "1e-2", "--set", "optim.warmup_steps=20",
        "--set", "augment.rand_augment=null", "--set", "augment.mixup=0", "--set", "augment.cutmix=0",
        "--set", "augment.erase_prob=0", "--set", "augment.crop_scale=[0.5,1.0]", "--set", "model.drop_path=0.1",
    )  # fmt: skip
    finetune_steps: int = 150
    masks: str = (
        "16×32² clips with 8-pixel patches make a 4×4 grid in 8 time slices (128 tokens): tube 0.9 hides 14 of the "
        "16 positions (0.875), 0.75 hides 12 and 0.5 hides 8; random 0.9 hides 115 of the 128 tokens; frame 0.9 hides "
        "7 of the 8 slices (0.875); the running cell at 0.5 decodes half of all positions"
    )
    arms: tuple[Arm, ...] = ARMS
    # Where the report goes by default: the field plan's run is the one in docs/study.md (it meets the target);
    # the busy plan's run is kept beside it.
    docs: str = "docs/study-busy"

    @property
    def clip(self) -> tuple[str, ...]:
        """The clip flags of every training run: geometry, and the scene unless it is the default one."""
        flags = ("--set", f"data.num_frames={self.num_frames}", "--set", f"data.input_size={self.input_size}")
        return flags if self.scene == "busy" else (*flags, "--set", f"data.synthetic_scene={self.scene}")

    def runs_of(self, arm: Arm) -> list[tuple[int | None, int]]:
        """(pretraining seed, fine-tuning seed) of each fine-tuning run of `arm`, in order; None: from scratch."""
        if not arm.pretrained:
            return [(None, seed) for seed in self.seeds]
        if not self.shared_pretraining:
            return [(seed, seed) for seed in self.seeds]
        pools = self.pretraining_seeds if arm.seeded else self.pretraining_seeds[:1]
        return [(pool, seed) for pool in pools for seed in self.seeds]

    def quick(self) -> Plan:
        """The same plan as a smoke run of a few minutes: one seed, one small label budget, a few steps each."""
        return replace(self, seeds=(0,), labels_per_class=(2,), pool_videos=256, test_videos=32, pretrain_steps=6,
                       finetune_steps=6)  # fmt: skip

    @property
    def common(self) -> list[str]:
        """Flags of every training run: fp32 (faster than bf16 autocast for models this small), no progress bar."""
        return [*self.model, *self.clip, "--precision", "fp32", "--progress", "plain", "--set", "run.save_every=0"]


FIELD = Plan(
    name="field",
    scene="field",
    docs="docs",
    seeds=(0, 1, 2),
    shared_pretraining=True,
    pretraining_seeds=(0, 1),
    labels_per_class=(16, 64),
    pool_videos=65536,
    model=(
        "--model", "test",
        "--set", "model.dim=64", "--set", "model.depth=4", "--set", "model.heads=4", "--set", "model.mlp_dim=256",
        "--set", "model.patch_size=4",
        "--set", "model.decoder_dim=64", "--set", "model.decoder_depth=1", "--set", "model.decoder_heads=4",
        "--set", "model.decoder_mlp_dim=256",
    ),
    num_frames=8,
    input_size=16,
    pretrain=("--batch-size", "64", "--lr", "1e-2", "--set", "optim.warmup_steps=500"),
    pretrain_steps=10000,
    finetune=(
        "--batch-size", "16", "--lr", "1.6e-2", "--set", "optim.warmup_steps=20",
        "--set", "augment.rand_augment=null", "--set", "augment.mixup=0", "--set", "augment.cutmix=0",
        "--set", "augment.erase_prob=0", "--set", "augment.crop_scale=[0.5,1.0]", "--set", "model.drop_path=0.1",
    ),
    finetune_steps=600,
    masks=(
        "8×16² clips with 4-pixel patches make a 4×4 grid in 4 time slices (64 tokens): tube 0.9 hides 14 of the 16 "
        "positions (0.875), 0.75 hides 12 and 0.5 hides 8; random 0.9 hides 58 of the 64 tokens; frame masking hides "
        "3 of the 4 slices (0.75: at 0.9 it would hide them all); the running cell at 0.5 decodes half of all "
        "positions; motion 0.9 keeps 2 positions visible in every slice like tube 0.9, drawn with probability rising "
        "with their motion energy (`mask.motion_temperature` 1, a tube). The HOG target is 2 × 2 cells of 2 pixels "
        "per patch (9 bins × 3 colours: 108 values, MaskFeat's layout); the teacher target is the last block's "
        "features of the tube-0.9 encoder pretrained on the same pool, L2 loss"
    ),
    arms=FIELD_ARMS,
)  # fmt: skip
PLANS: dict[str, Plan] = {plan.name: plan for plan in (Plan(), FIELD)}
DEFAULT_PLAN = Plan.name  # run without --plan; its command line and run folder carry no plan name


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


NUM_CLASSES = 8  # the synthetic motion classes
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


@dataclass
class ArmResult:
    """Everything measured for one arm: top-1 per (labels per class, pretraining seed, fine-tuning seed), wall times
    (a teacher arm's teacher pretrainings apart), loss curves per pretraining."""

    arm: Arm
    top1: dict[int, dict[tuple[int | None, int], float]] = field(default_factory=dict)
    pretrain_seconds: list[float] = field(default_factory=list)
    teacher_seconds: list[float] = field(default_factory=list)
    finetune_seconds: dict[int, list[float]] = field(default_factory=dict)
    loss_curves: list[tuple[list[int], list[float]]] = field(default_factory=list)

    def accuracies(self, per_class: int, pool: int | None = None) -> list[float]:
        """Top-1 of every run with `per_class` labels (only those from the pool of seed `pool`, if given)."""
        return [v for (p, _), v in self.top1[per_class].items() if pool is None or p == pool]

    @property
    def pools(self) -> list[int]:
        """The pretraining seeds of this arm's encoders."""
        return sorted({p for runs in self.top1.values() for p, _ in runs if p is not None})


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


def headline_arm(plan: Plan) -> Arm:
    """The plan's tube-0.9 arm, which the target compares with scratch."""
    return next(arm for arm in plan.arms if arm.name == HEADLINE)


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


# ---------------------------------------------------------------------------------------------------- the report


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def percent(values: Sequence[float]) -> str:
    """`mean ± std` of accuracies, in percent."""
    mean, std = mean_std([100 * v for v in values])
    return f"{mean:.1f} ± {std:.1f}"


def minutes(seconds: Sequence[float]) -> str:
    """Mean wall time as m:ss (— when there is none)."""
    if not seconds:
        return "—"
    total = round(statistics.fmean(seconds))
    return f"{total // 60}:{total % 60:02d}"


def runs_text(result: ArmResult, per_class: int) -> str:
    """How many runs an arm's mean covers: `3` seeds, or `2 × 3` (pretraining pools × fine-tuning seeds)."""
    runs = len(result.accuracies(per_class))
    pools = len(result.pools)
    return f"{pools} × {runs // pools}" if pools > 1 else str(runs)


def pretrain_wall(result: ArmResult) -> str:
    """Mean pretraining wall time; for a teacher arm, its teacher's pretraining as well (the arm's whole cost)."""
    text = minutes(result.pretrain_seconds)
    return f"{text} + {minutes(result.teacher_seconds)} teacher" if result.teacher_seconds else text


def results_table(results: Sequence[ArmResult], plan: Plan) -> list[str]:
    """The markdown table: arm, labels per class, top-1 mean ± std over all its runs, wall times."""
    lines = [
        "| arm | labels per class | top-1 % (mean ± std) | runs | pretrain wall | fine-tune wall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for per_class in plan.labels_per_class:
        for r in results:
            lines.append(
                f"| {r.arm.name} | {per_class} | {percent(r.accuracies(per_class))} | {runs_text(r, per_class)} "
                f"| {pretrain_wall(r)} | {minutes(r.finetune_seconds[per_class])} |"
            )
    return lines


def pool_table(results: Sequence[ArmResult], plan: Plan) -> list[str]:
    """Top-1 per pretraining pool of the arms pretrained on more than one (mean ± std over fine-tuning seeds): how
    much of the spread is the pretraining's. Empty when no arm was."""
    seeded = [r for r in results if len(r.pools) > 1]
    if not seeded:
        return []
    pools = seeded[0].pools
    lines = [
        "| arm | labels per class | " + " | ".join(f"pretraining seed {pool}" for pool in pools) + " | difference |",
        "|---|---:|" + "---:|" * (len(pools) + 1),
    ]
    for per_class in plan.labels_per_class:
        for r in seeded:
            means = [100 * statistics.fmean(r.accuracies(per_class, pool)) for pool in pools]
            cells = " | ".join(percent(r.accuracies(per_class, pool)) for pool in pools)
            lines.append(f"| {r.arm.name} | {per_class} | {cells} | {max(means) - min(means):.1f} |")
    return lines


def pixel_masking(arm: Arm) -> bool:
    """A pretrained arm that changes only the mask (every run's norm_pixel target)."""
    return arm.pretrained and not arm.target and not arm.teacher


def findings(results: Sequence[ArmResult], plan: Plan) -> list[str]:
    """The headline comparison, the orderings and the compared arms against the headline, stated from the numbers."""
    smallest = min(plan.labels_per_class)
    by_name = {r.arm.name: r for r in results}
    mean_top1 = {r.arm.name: 100 * statistics.fmean(r.accuracies(smallest)) for r in results}
    gain = mean_top1[HEADLINE] - mean_top1["scratch"]
    verdict = "meets" if gain >= 10 else "misses"
    headline = by_name[HEADLINE]
    per_pool = ""
    if len(headline.pools) > 1:
        scratch = mean_top1["scratch"]
        gains = [100 * statistics.fmean(headline.accuracies(smallest, pool)) - scratch for pool in headline.pools]
        per_pool = " (by pretraining seed: " + ", ".join(
            f"{pool}: {g:+.1f}" for pool, g in zip(headline.pools, gains, strict=True)) + ")"  # fmt: skip
    lines = [
        f"- At {smallest} labels per class, pretraining with tube masking at 0.9 gives {mean_top1[HEADLINE]:.1f}% "
        f"top-1 against {mean_top1['scratch']:.1f}% from scratch: {gain:+.1f} points{per_pool} ({verdict} the +10 "
        "target).",
    ]
    masking = [r.arm for r in results if pixel_masking(r.arm)]
    tube_ratios = [arm.name for arm in masking if arm.mask_type == "tube" and not arm.decoder_mask_ratio]
    high = [arm for arm in masking if not (arm.mask_type == "tube" and (arm.mask_ratio or 0) < 0.9)]
    ratios = " / ".join(sorted({str(arm.mask_ratio) for arm in high}, reverse=True))
    lines.append(f"- Tube mask ratio, best first: {ranking(tube_ratios, mean_top1)}.")
    lines.append(f"- Masking at {ratios}, best first: {ranking([arm.name for arm in high], mean_top1)}.")
    spread = pool_spread(headline, smallest)
    for r in results:
        if r.arm.seeded and r.arm.name != HEADLINE:
            lines.append(against_headline(r, headline, plan, spread))
    return lines


def pool_spread(result: ArmResult, per_class: int) -> float | None:
    """How far apart the means of an arm's pretraining pools are, in points (None with one pool)."""
    if len(result.pools) < 2:
        return None
    means = [100 * statistics.fmean(result.accuracies(per_class, pool)) for pool in result.pools]
    return max(means) - min(means)


def against_headline(result: ArmResult, headline: ArmResult, plan: Plan, spread: float | None) -> str:
    """One compared arm against tube 0.9 with the pixel target, at every label budget, with its pretraining cost."""
    deltas = []
    for per_class in plan.labels_per_class:
        mine, theirs = (100 * statistics.fmean(r.accuracies(per_class)) for r in (result, headline))
        deltas.append((per_class, mine, theirs, mine - theirs))
    budgets = "; ".join(f"{k} labels per class {m:.1f}% against {t:.1f}% ({d:+.1f})" for k, m, t, d in deltas)
    verdict = "does not help" if all(d <= 0 for *_, d in deltas) else "helps" if all(d > 0 for *_, d in deltas) else (
        "mixed")  # fmt: skip
    own = sum(result.pretrain_seconds) + sum(result.teacher_seconds)
    cost = own / sum(headline.pretrain_seconds) if headline.pretrain_seconds else float("nan")
    noise = f"; tube 0.9's two pretraining seeds alone differ by {spread:.1f} points" if spread is not None else ""
    return (
        f"- {result.arm.name} against tube 0.9: {budgets} — {verdict}{noise}. Pretraining cost "
        f"{cost:.2f}× tube 0.9's" + (" (the teacher's pretraining included)." if result.teacher_seconds else ".")
    )


def ranking(arms: Sequence[str], top1: dict[str, float]) -> str:
    """`a (x) > b (y) > ...`: arms ordered by mean top-1."""
    return " > ".join(f"{name} ({top1[name]:.1f}%)" for name in sorted(arms, key=lambda name: -top1[name]))


def plot(results: Sequence[ArmResult], plan: Plan, path: Path) -> None:
    """docs/study.png: top-1 per arm (bars per label budget, seed std as error bars) and pretraining loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (bars, curves) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.3, 1]})
    x = np.arange(len(results))
    width = 0.8 / len(plan.labels_per_class)
    for i, per_class in enumerate(plan.labels_per_class):
        stats = [mean_std([100 * v for v in r.accuracies(per_class)]) for r in results]
        bars.bar(x + (i - (len(plan.labels_per_class) - 1) / 2) * width, [m for m, _ in stats], width,
                 yerr=[s for _, s in stats], capsize=3, label=f"{per_class} labels per class")  # fmt: skip
    bars.axhline(100 / NUM_CLASSES, color="grey", linestyle=":", label="chance")
    bars.set_xticks(x, [r.arm.name.replace(" + ", "\n+ ") for r in results], rotation=30, ha="right", fontsize=8)
    bars.set_ylabel("test top-1 (%)")
    bars.set_title("Fine-tuned top-1, mean ± std over each arm's runs")
    bars.legend(fontsize=8)
    for r in results:
        if not r.loss_curves:
            continue
        steps = r.loss_curves[0][0]
        # Relative to its first logged value: the HOG and teacher targets' losses have units of their own.
        mean_loss = np.mean([np.array(losses) / losses[0] for _, losses in r.loss_curves], axis=0)
        curves.plot(steps, mean_loss, marker="o" if len(steps) < 5 else None, label=r.arm.name)
    curves.set_xlabel("pretraining step")
    curves.set_ylabel("loss on the masked tokens ÷ its first logged value")
    curves.set_title("Pretraining loss, mean over each arm's pretrainings")
    curves.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: Sequence[ArmResult], plan: Plan, docs: Path, command: str, timing: str) -> Path:
    """docs/study.md: what was run, the table, the findings and the pictures."""
    path = docs / "study.md"
    text = [
        "# Study: data efficiency of masked video pretraining, CPU-sized",
        "",
        f"Generated by `{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores); {timing}. Rerun that "
        "command to regenerate this page, the figure and the picture; finished runs are kept in its --out folder and "
        "reused.",
        "",
        "## Result",
        "",
        *results_table(results, plan),
        "",
        *findings(results, plan),
        "",
        *pool_section(results, plan),
        "![top-1 per arm and pretraining loss curves](study.png)",
        "",
        "## Set-up",
        "",
        f"- Data: the built-in synthetic motion videos ({SCENE_TEXT[plan.scene]}; 8 classes, chance 12.5%). "
        f"{pools(plan)} {' or '.join(map(str, plan.labels_per_class))} labelled clips per class for fine-tuning, "
        f"{plan.test_videos} held-out clips for the test. Seeds: {', '.join(map(str, plan.seeds))}.",
        f"- Model and clips (every run): `{' '.join(plan.model + plan.clip)}`, fp32.",
        f"- Masks: {plan.masks}.",
        f"- Pretraining ({plan.pretrain_steps} steps): `{' '.join(plan.pretrain)}` plus the arm's mask and target flags.",
        f"- Fine-tuning ({plan.finetune_steps} steps, every arm alike): `{' '.join(plan.finetune)}`; the final weights "
        "are tested once, on the centre view of each held-out clip (synthetic clips are one clip long).",
        "",
        f"## Reconstruction of a held-out clip (tube 0.9, pretraining seed {plan.runs_of(headline_arm(plan))[0][0]})",
        "",
        "![original, masked, reconstruction, error](study-visualize.png)",
        "",
    ]
    if ITERATIONS.exists():
        text += [ITERATIONS.read_text()]
    path.write_text("\n".join(text))
    return path


SCENE_TEXT = {
    "busy": "the default busy scene: shapes over textured backgrounds, with distractors",
    "field": "the field scene: no shape, a smooth texture of coloured waves that moves as a whole",
}


def pool_section(results: Sequence[ArmResult], plan: Plan) -> list[str]:
    """The compared arms' top-1 per pretraining seed, when they have more than one."""
    table = pool_table(results, plan)
    if not table:
        return []
    return [
        "### By pretraining seed",
        "",
        "Each compared arm is pretrained on two pools and each encoder fine-tuned with every seed; per pretraining "
        "seed, top-1 % (mean ± std over the fine-tuning seeds), and how far apart the pretraining seeds' means are:",
        "",
        *table,
        "",
    ]


def pools(plan: Plan) -> str:
    """Which clips pretrain the encoders."""
    if plan.shared_pretraining:
        first, *more = plan.pretraining_seeds
        seeded = ", ".join(arm.name for arm in plan.arms if arm.seeded)
        others = ", ".join(map(str, more))
        again = f" (the compared arms — {seeded} — also on the pool of seed {others})" if more else ""
        return (f"Each arm pretrains on an unlabelled pool of {plan.pool_videos} clips of seed {first}{again}, "
                "and every seed fine-tunes each encoder; per seed:")  # fmt: skip
    return f"Per seed: an unlabelled pool of {plan.pool_videos} clips for pretraining,"


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


def timing_text(stage_seconds: Sequence[float], jobs: int) -> str:
    """How long the study's runs took: their wall times added up and, when several ran at once, about how long
    that is from start to end."""
    total = round(sum(stage_seconds))
    runs = f"{len(stage_seconds)} run{'s' * (len(stage_seconds) != 1)}"
    text = f"its {runs} took {duration(total)} of wall time added up, each timed when it ran"
    if jobs > 1:
        text += f" ({jobs} at a time, each on its share of the cores: about {duration(total / jobs)} from start to end)"
    return text


def duration(seconds: float) -> str:
    """`1 h 38 min`, `36 min 48 s`."""
    seconds = round(seconds)
    if seconds >= 3600:
        hours, mins = divmod(round(seconds / 60), 60)
        return f"{hours} h {mins} min"
    return f"{seconds // 60} min {seconds % 60} s"


def result_json(result: ArmResult) -> dict:
    """One arm's numbers, for scripts."""
    return {
        "arm": result.arm.name,
        "runs": [
            {"labels_per_class": k, "pretraining_seed": pool, "seed": seed, "top1": v}
            for k, runs in result.top1.items()
            for (pool, seed), v in runs.items()
        ],
        "pretrain_seconds": result.pretrain_seconds,
        "teacher_seconds": result.teacher_seconds,
        "finetune_seconds": {str(k): v for k, v in result.finetune_seconds.items()},
    }


if __name__ == "__main__":
    main()
