"""The data-efficiency study's arms and plans (what is compared, at which sizes and recipes), and the container of
one arm's measurements. See data_efficiency.py."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

NUM_CLASSES = 8  # the synthetic motion classes


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


def headline_arm(plan: Plan) -> Arm:
    """The plan's tube-0.9 arm, which the target compares with scratch."""
    return next(arm for arm in plan.arms if arm.name == HEADLINE)


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

    def mean_top1(self, per_class: int, pool: int | None = None) -> float:
        """Mean top-1 in percent of the runs `accuracies` selects."""
        return 100 * statistics.fmean(self.accuracies(per_class, pool))

    def pool_spread(self, per_class: int) -> float | None:
        """How far apart the means of the arm's pretraining pools are, in points (None with one pool)."""
        if len(self.pools) < 2:
            return None
        means = [self.mean_top1(per_class, pool) for pool in self.pools]
        return max(means) - min(means)
