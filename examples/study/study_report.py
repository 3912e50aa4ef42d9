"""The data-efficiency study's report: docs/study.md (table, findings, set-up), study.png and study.json, written
from the measured results. See data_efficiency.py."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from study_plan import HEADLINE, NUM_CLASSES, Arm, ArmResult, Plan, headline_arm

# Hand-written: what was tried before the current plan, and what it showed; appended to docs/study.md.
ITERATIONS = Path(__file__).with_name("iterations.md")


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
            cells = " | ".join(percent(r.accuracies(per_class, pool)) for pool in pools)
            lines.append(f"| {r.arm.name} | {per_class} | {cells} | {r.pool_spread(per_class):.1f} |")
    return lines


def pixel_masking(arm: Arm) -> bool:
    """A pretrained arm that changes only the mask (every run's norm_pixel target)."""
    return arm.pretrained and not arm.target and not arm.teacher


def findings(results: Sequence[ArmResult], plan: Plan) -> list[str]:
    """The headline comparison, the orderings and the compared arms against the headline, stated from the numbers."""
    smallest = min(plan.labels_per_class)
    by_name = {r.arm.name: r for r in results}
    mean_top1 = {r.arm.name: r.mean_top1(smallest) for r in results}
    gain = mean_top1[HEADLINE] - mean_top1["scratch"]
    verdict = "meets" if gain >= 10 else "misses"
    headline = by_name[HEADLINE]
    per_pool = ""
    if len(headline.pools) > 1:
        scratch = mean_top1["scratch"]
        gains = [headline.mean_top1(smallest, pool) - scratch for pool in headline.pools]
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
    spread = headline.pool_spread(smallest)
    for r in results:
        if r.arm.seeded and r.arm.name != HEADLINE:
            lines.append(against_headline(r, headline, plan, spread))
    return lines


def against_headline(result: ArmResult, headline: ArmResult, plan: Plan, spread: float | None) -> str:
    """One compared arm against tube 0.9 with the pixel target, at every label budget, with its pretraining cost."""
    deltas = []
    for per_class in plan.labels_per_class:
        mine, theirs = result.mean_top1(per_class), headline.mean_top1(per_class)
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
        f"- Pretraining ({plan.pretrain_steps} steps): `{' '.join(plan.pretrain)}` plus the arm's mask and target "
        "flags.",
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
