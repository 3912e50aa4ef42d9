"""`videomae doctor`: check that the environment can run videomae-cli, writing nothing.

The engine is a set of functions that each return a list of `Check`s (name, status, detail, fix); `run_checks` runs
them all, `exit_code` says whether every required piece works; ui/tables.py's `doctor_table` draws them. A missing
optional piece (CUDA, decord, transformers, onnxruntime) is a warning; a missing required one is a FAIL. Advice names
settings, not flags (`precision=bf16`): the CLI says them as its flags.

`doctor --data PATH` adds the data path's pace (`measure_data`): a few of PATH's videos loaded the way a training loader
worker loads them (data/pace.py), with every available backend, and the loader workers a training speed needs.

The decode self-test writes a 16-frame clip whose frame `i` is a uniform grey of brightness `16 + 14 i` into a
temporary directory (removed afterwards) and reads it back through `videomae_cli.data.video.open_video` with every
available backend. Import order matters: av must be imported before decord (see videomae_cli/data/video.py), which
importing `videomae_cli.data.video` first guarantees.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from videomae_cli.errors import ConfigError, DataError

if TYPE_CHECKING:  # data/ imports torch and av: only when the data path is measured
    from videomae_cli.data.pace import DecodePace

OK, WARN, FAIL = "ok", "warn", "FAIL"
MIN_PYTHON = (3, 10)
INSTALL = 'pip install "videomae-cli"'
TORCH_FIX = "pip install torch (a CUDA build: https://pytorch.org/get-started/locally/)"

# Required packages: (distribution name, import name, pip requirement from pyproject.toml).
REQUIRED: tuple[tuple[str, str, str], ...] = (
    ("timm", "timm", "timm>=1.0"),
    ("safetensors", "safetensors", "safetensors>=0.4"),
    ("pydantic", "pydantic", "pydantic>=2.5"),
    ("typer", "typer", "typer>=0.12"),
    ("rich", "rich", "rich>=13"),
    ("numpy", "numpy", "numpy>=1.24"),
    ("av", "av", "av>=12"),
)
# Optional packages: (distribution name, what it is for, fix).
OPTIONAL: tuple[tuple[str, str, str], ...] = (
    ("transformers", "HF parity tests and `format=hf` round trips", 'pip install "videomae-cli[dev]"'),
    ("onnxruntime", "export `format=onnx` verification", 'pip install "videomae-cli[onnx]"'),
    ("tensorboard", "TensorBoard logs of training runs, on by default", 'pip install "videomae-cli[tensorboard]"'),
    ("wandb", "Weights & Biases logging (`run.loggers`)", 'pip install "videomae-cli[wandb]"'),
)

SELFTEST_FRAMES, SELFTEST_WIDTH, SELFTEST_HEIGHT = 16, 64, 48
_BRIGHTNESS_STEP = 14  # frame i is grey 16 + 14 i; decoded means within half a step identify the frame


@dataclass(frozen=True)
class Check:
    """One line of the report: `status` is "ok", "warn" or "FAIL"; `fix` says what to do when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""


# ------------------------------------------------------------------------------------------------- python & torch


def check_python() -> list[Check]:
    """The interpreter: 3.10 or newer."""
    version = platform.python_version()
    if sys.version_info >= MIN_PYTHON:
        return [Check("python", OK, f"{version} ({sys.executable})")]
    return [Check("python", FAIL, f"{version}; videomae-cli needs 3.10+", "use Python 3.10 or newer")]


def check_torch() -> list[Check]:
    """torch itself, CUDA, cuDNN, the distributed backends, devices and bf16 support."""
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install (OSError from a missing shared library)
        return [Check("torch", FAIL, f"cannot import: {type(exc).__name__}: {exc}", TORCH_FIX)]
    checks = [Check("torch", OK, torch.__version__)]
    checks += _cuda_checks(torch)
    checks += _distributed_checks(torch)
    checks += [_devices_check(torch), _bf16_check(torch)]
    return checks


def _cuda_checks(torch: ModuleType) -> list[Check]:
    """CUDA availability and version, and cuDNN where CUDA is used."""
    built = torch.version.cuda
    if torch.cuda.is_available():
        cuda = Check("CUDA", OK, f"available, CUDA {built}, {torch.cuda.device_count()} device(s)")
    elif built:
        cuda = Check(
            "CUDA",
            WARN,
            f"torch built with CUDA {built} but no GPU is visible; training runs on CPU",
            "check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES",
        )
    else:
        cuda = Check("CUDA", WARN, "not available (CPU-only torch build); training runs on CPU", TORCH_FIX)
    if not torch.cuda.is_available():
        return [cuda, Check("cuDNN", OK, "not used (no CUDA)")]
    if torch.backends.cudnn.is_available():
        return [cuda, Check("cuDNN", OK, str(torch.backends.cudnn.version()))]
    return [cuda, Check("cuDNN", WARN, "not available; convolutions run slower", TORCH_FIX)]


def _distributed_checks(torch: ModuleType) -> list[Check]:
    """NCCL (multi-GPU) and gloo (multi-process CPU) process-group backends."""
    dist = torch.distributed
    if not dist.is_available():
        detail = "torch.distributed is not built in; multi-process training is unavailable"
        return [Check("NCCL", WARN, detail, TORCH_FIX), Check("gloo", WARN, detail, TORCH_FIX)]
    if dist.is_nccl_available():
        nccl = Check("NCCL", OK, "available")
    elif torch.cuda.is_available():
        nccl = Check("NCCL", WARN, "not available; multi-GPU training falls back to gloo (slow)", TORCH_FIX)
    else:
        nccl = Check("NCCL", OK, "not available (not needed without CUDA)")
    gloo = (
        Check("gloo", OK, "available")
        if dist.is_gloo_available()
        else Check("gloo", WARN, "not available; multi-process CPU training is unavailable", TORCH_FIX)
    )
    return [nccl, gloo]


def _devices_check(torch: ModuleType) -> Check:
    """CPU threads and the names of the CUDA devices."""
    detail = f"CPU: {torch.get_num_threads()} torch threads, os.cpu_count {os.cpu_count()}"
    if torch.cuda.is_available():
        names = [f"{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
        detail += "; CUDA " + ", ".join(names)
    return Check("devices", OK, detail)


def _bf16_check(torch: ModuleType) -> Check:
    """bf16 on the GPU (is_bf16_supported) or, without one, a tiny bf16 matmul under CPU autocast."""
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return Check("bf16", OK, "supported on CUDA (`precision=bf16`)")
        return Check("bf16", WARN, "not supported on this GPU", "use `precision=fp16` or fp32")
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = torch.ones(8, 8) @ torch.ones(8, 8)
        works = out.dtype == torch.bfloat16 and bool((out.float() == 8).all())
        problem = "" if works else f"autocast gave {out.dtype}"
    except Exception as exc:
        works, problem = False, f"{type(exc).__name__}: {exc}"
    if works:
        return Check("bf16", OK, "CPU autocast works (`precision=bf16`)")
    return Check("bf16", WARN, f"CPU autocast failed: {problem}", "use `precision=fp32`")


# -------------------------------------------------------------------------------------------------------- packages


def package_version(dist: str, module: str | None = None) -> tuple[str | None, str]:
    """(installed version or None, problem): problem is non-empty when `module` is given and fails to import."""
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None, ""
    if module is None:
        return version, ""
    try:
        importlib.import_module(module)
    except Exception as exc:
        return version, f"installed but cannot import: {type(exc).__name__}: {exc}"
    return version, ""


Lookup = Callable[[str, str | None], tuple[str | None, str]]


def check_packages(lookup: Lookup = package_version) -> list[Check]:
    """Versions of the required (FAIL if missing or broken) and optional (warn if missing) packages."""
    checks = []
    for dist, module, requirement in REQUIRED:
        version, problem = lookup(dist, module)
        fix = f'pip install "{requirement}" (or: {INSTALL})'
        if version is None:
            checks.append(Check(dist, FAIL, "not installed (required)", fix))
        elif problem:
            checks.append(Check(dist, FAIL, f"{version}: {problem}", f'pip install --force-reinstall "{requirement}"'))
        else:
            checks.append(Check(dist, OK, version))
    for dist, purpose, fix in OPTIONAL:
        version, _ = lookup(dist, None)
        if version is None:
            checks.append(Check(dist, WARN, f"not installed (optional: {purpose})", fix))
        else:
            checks.append(Check(dist, OK, f"{version} (optional)"))
    return checks


# -------------------------------------------------------------------------------------------------------- decoders


def check_decoders() -> list[Check]:
    """PyAV and decord availability, then the decode self-test for every available backend."""
    try:
        from videomae_cli.data import video  # imports av before anything can import decord
    except Exception as exc:
        return [Check("PyAV", FAIL, f"cannot import: {type(exc).__name__}: {exc}", 'pip install "av>=12"')]
    return [_pyav_check(), _decord_check(video), *check_decode_selftest()]


def _pyav_check() -> Check:
    """PyAV's version and the FFmpeg it bundles."""
    import av

    ffmpeg = getattr(av, "ffmpeg_version_info", None)
    if not ffmpeg:
        codec = av.library_versions.get("libavcodec")
        ffmpeg = f"libavcodec {'.'.join(map(str, codec))}" if codec else "unknown"
    return Check("PyAV", OK, f"{av.__version__}, FFmpeg {ffmpeg}")


def _decord_check(video: ModuleType) -> Check:
    """decord: an optional second backend (wheels exist for Linux x86_64 only); PyAV is the default everywhere."""
    if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        where = f"{sys.platform} {platform.machine()}"
        return Check("decord", WARN, f"no wheels for {where} (optional; PyAV is the default)")
    module = video._decord()
    if module is None:
        detail = "not installed or fails to load (optional; PyAV is the default)"
        return Check("decord", WARN, detail, "pip install decord")
    return Check("decord", OK, f"{getattr(module, '__version__', '?')} (optional; data.decoder=decord)")


def check_decode_selftest(backends: Iterable[str] | None = None) -> list[Check]:
    """Write a tiny clip with PyAV into a temporary directory and read it back with each backend."""
    from videomae_cli.data.video import available_backends

    names = list(available_backends() if backends is None else backends)
    with tempfile.TemporaryDirectory(prefix="videomae-doctor-") as tmp:
        path = Path(tmp) / "selftest.mp4"
        try:
            codec = write_selftest_clip(path)
        except Exception as exc:
            fix = 'pip install --force-reinstall "av>=12"'
            return [Check("decode self-test", FAIL, f"PyAV cannot write a test clip: {type(exc).__name__}: {exc}", fix)]
        return [_selftest_backend(path, name, codec) for name in names]


def write_selftest_clip(path: Path) -> str:
    """Write SELFTEST_FRAMES frames of SELFTEST_WIDTH×SELFTEST_HEIGHT, frame i a grey of brightness 16 + 14 i;
    returns the codec used (libx264 where PyAV has it, else FFmpeg's built-in mpeg4)."""
    import av
    import numpy as np

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    options = {"crf": "10", "preset": "veryfast"} if codec == "libx264" else {"qscale": "2"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=16, options=options)
        stream.width, stream.height, stream.pix_fmt = SELFTEST_WIDTH, SELFTEST_HEIGHT, "yuv420p"
        for i in range(SELFTEST_FRAMES):
            pixels = np.full((SELFTEST_HEIGHT, SELFTEST_WIDTH, 3), _brightness(i), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return codec


def _brightness(index: int) -> int:
    return 16 + _BRIGHTNESS_STEP * index


def _selftest_backend(path: Path, backend: str, codec: str) -> Check:
    """Read the self-test clip with `backend`: the frame count, and frames asked out of order come back right."""
    from videomae_cli.data.video import VideoError, open_video

    name = f"decode self-test ({backend})"
    fix = "pip uninstall decord (PyAV is then used)" if backend == "decord" else 'pip install --force-reinstall "av"'
    wanted = [15, 0, 7, 3, 3, 12]
    try:
        with open_video(path, backend) as reader:
            count = reader.num_frames
            frames = reader.get_frames(wanted) if count == SELFTEST_FRAMES else None
    except VideoError as exc:
        return Check(name, FAIL, str(exc), fix)
    if frames is None:
        return Check(name, FAIL, f"counted {count} frames, wrote {SELFTEST_FRAMES}", fix)
    expected_shape = (len(wanted), SELFTEST_HEIGHT, SELFTEST_WIDTH, 3)
    if frames.shape != expected_shape:
        return Check(name, FAIL, f"frames of shape {frames.shape}, expected {expected_shape}", fix)
    got = [round((float(frame.mean()) - 16) / _BRIGHTNESS_STEP) for frame in frames]
    if got != wanted:
        return Check(name, FAIL, f"asked for frames {wanted}, got {got} (by brightness)", fix)
    return Check(name, OK, f"{SELFTEST_FRAMES} frames {SELFTEST_WIDTH}×{SELFTEST_HEIGHT} {codec}, random access right")


# ------------------------------------------------------------------------------------------------------- data pace

CLIPS_PER_VIDEO = 2  # clips timed per sampled video (two epochs: two places in it)


@dataclass(frozen=True)
class DataPace:
    """`doctor --data`: how fast one loader worker reads the sampled videos with each backend (`paces`, the default
    backend `auto` first), and the training speed asked about."""

    source: Path
    listed: int  # videos the source lists
    sampled: int  # videos timed
    paces: list[DecodePace]
    auto: str  # the backend `data.decoder=auto` picks here
    steps_per_second: float
    batch_size: int
    cores: int  # CPU cores this process may use
    prepared: bool = False  # `source` is a prepare-data output whose videos it re-encoded for training

    def workers(self, pace: DecodePace) -> int | None:
        """Loader workers that reach `steps_per_second` at `batch_size` with this backend; None when none loaded."""
        from videomae_cli.data.pace import workers_needed

        return workers_needed(pace.clips_per_second, self.steps_per_second, self.batch_size) if pace.clips else None

    def bottleneck(self, pace: DecodePace) -> bool:
        """More workers needed than the machine has cores: the loader, not the model, sets the training speed."""
        workers = self.workers(pace)
        return workers is not None and workers > self.cores

    def best_steps_per_second(self, pace: DecodePace) -> float:
        """Steps per second one worker per core could feed at `batch_size` (no headroom)."""
        return self.cores * pace.clips_per_second / self.batch_size


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a SLURM or container share), else os.cpu_count()."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def list_videos(data: Path) -> list[Path]:
    """The videos of `data`: a prepare-data output folder (its train.csv), a manifest file, one video file, or a
    folder of videos (walked). ConfigError naming `data` when there is nothing to measure."""
    from videomae_cli.data.manifest import TRAIN_MANIFEST, read_manifest
    from videomae_cli.data.prepare.readers import is_video, walk_videos

    if not data.exists():
        raise ConfigError(f"data: no such file or directory: {data}")
    if data.is_dir() and not (data / TRAIN_MANIFEST).is_file():
        videos = walk_videos(data)
        if not videos:
            raise ConfigError(f"data: no video files under {data} (and no {TRAIN_MANIFEST})")
        return videos
    if data.is_file() and is_video(data.name):
        return [data]
    try:
        return [entry.path for entry in read_manifest(data / TRAIN_MANIFEST if data.is_dir() else data)]
    except DataError as e:  # an empty manifest: for the doctor, a bad argument like any other
        raise ConfigError(f"data: {e}") from None


def measure_data(
    data: Path,
    videos: list[Path] | None = None,
    *,
    sample: int = 8,
    steps_per_second: float = 1.0,
    batch_size: int = 32,
    num_frames: int = 16,
    sampling_rate: int = 4,
    input_size: int = 224,
    backends: Iterable[str] | None = None,
) -> DataPace:
    """Time `sample` of data's videos (`videos`: as `list_videos(data)` gives them, listed already) with each backend
    (every available one by default). ConfigError naming the setting for a bad request, or naming `data` when no
    sampled video loads with any backend."""
    check_positive(sample=sample, batch_size=batch_size, num_frames=num_frames, sampling_rate=sampling_rate)
    check_positive(input_size=input_size, steps_per_second=steps_per_second)
    videos = list_videos(data) if videos is None else videos
    # the request is valid: now load torch and the decoders
    from videomae_cli.data.pace import measure_pace, sample_videos
    from videomae_cli.data.prepare.outputs import was_transcoded
    from videomae_cli.data.video import available_backends, resolve_backend

    chosen = sample_videos(videos, sample)
    geometry = {"num_frames": num_frames, "sampling_rate": sampling_rate, "input_size": input_size}
    names = list(available_backends() if backends is None else backends)
    paces = [measure_pace(chosen, name, clips_per_video=CLIPS_PER_VIDEO, **geometry) for name in names]
    if not any(pace.clips for pace in paces):
        first = next((pace.failures[0] for pace in paces if pace.failures), "")
        raise ConfigError(f"data: none of the {len(chosen)} sampled videos of {data} could be read ({first})")
    auto, cores, prepared = resolve_backend("auto"), usable_cores(), was_transcoded(data)
    return DataPace(data, len(videos), len(chosen), paces, auto, steps_per_second, batch_size, cores, prepared)


def check_positive(**values: float) -> None:
    """ConfigError naming the first setting that is not positive."""
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{name}: must be positive, got {value}")


# --------------------------------------------------------------------------------------------------------- summary


def run_checks() -> list[Check]:
    """Every check, in report order."""
    return [*check_python(), *check_torch(), *check_packages(), *check_decoders()]


def problems(checks: Iterable[Check]) -> list[Check]:
    """The checks that failed (warnings are not problems)."""
    return [check for check in checks if check.status == FAIL]


def exit_code(checks: Iterable[Check]) -> int:
    """0 when every required piece works (warnings allowed), else 1."""
    return 1 if problems(checks) else 0


def summary_line(checks: Iterable[Check]) -> str:
    """The final line of the report."""
    failed = len(problems(checks))
    return "doctor: all required pieces work" if not failed else f"doctor: {failed} problem(s); fixes above"
