"""Procedural, deterministic synthetic videos whose class is defined by motion alone.

In the default "busy" scene every clip shows a textured, noisy background, one large "main" shape and one or two small
distractor shapes; the "plain" scene keeps only the background's colour gradient and a larger main shape that travels
farther (no stripes, blobs, pixel noise or distractors), a setting in which tiny models learn in minutes. The "field"
scene has no shape at all: a smooth texture of coloured plane waves fills the frame and moves as a whole, so every
patch shows the motion (the scene in which a tiny 90%-masked autoencoder learns features of the motion on a CPU). The
class says how the main shape, or the field, moves (translate right/left/down/up, rotate clockwise/counter-clockwise,
grow, shrink).
Everything a single frame can show -- shape kind, colours, background texture, the distractors and their motion --
is drawn from a random stream that never sees the label, so appearance is independent of the class by construction.
The main shape's size, position and angle are parameterised around the *middle* of the clip with class-independent
distributions, so the middle frame carries no class information either; only the change over time does.

Conventions: images are (T, H, W, RGB) uint8, +x points right, +y points down (row index), and a positive angle is a
clockwise rotation as seen on screen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from videomae_cli.config.schema import SyntheticScene

if TYPE_CHECKING:
    from videomae_cli.config.schema import DataSpec

MOTION_CLASSES: tuple[str, ...] = ("right", "left", "down", "up", "rotate_cw", "rotate_ccw", "grow", "shrink")

_NUM_CLASSES = len(MOTION_CLASSES)
# Held-out synthetic videos start here, far beyond any training set's indices.
VALIDATION_FIRST_INDEX = 1 << 24
_SHAPE_KINDS: tuple[str, ...] = ("circle", "square", "triangle", "cross")
# Mixed into the label seed so that label draws can never coincide with a clip's own (seed, index) stream.
_LABEL_STREAM = 0x1ABE1
# Inside the main shape, local u > this is painted in the marker colour: the "marked side" that makes any rotation,
# even of a circle, visible.
_MARKER_EDGE = 0.4
# Farthest any unit shape reaches from its centre (the square's corner, 0.8 * sqrt(2)), with a little slack.
_SHAPE_REACH = 1.15
_TURN_RANGE_DEG = (90.0, 270.0)  # total rotation over the clip
_MAX_TURN_PER_FRAME_DEG = 150.0  # < 180 so the direction between consecutive frames is never ambiguous
_SCALE_FACTOR_RANGE = (1.8, 2.5)  # total growth (or shrinkage) factor over the clip
_DISTRACTOR_DIAMETER_RANGE = (0.06, 0.12)
# The "field" scene: three plane waves of 1-2.2 cycles per frame width, each adding up to ±0.2 per colour channel to a
# base colour; the field pans 25-45% of the frame, turns 45-90° or zooms by 1.6-2.2x over the clip.
_FIELD_WAVES = 3
_FIELD_BASE = (0.3, 0.7)
_FIELD_CYCLES = (1.0, 2.2)
_FIELD_CONTRAST = 0.2
_FIELD_PAN = (0.25, 0.45)
_FIELD_MOTION: dict[str, tuple[float, float]] = {
    **dict.fromkeys(("right", "left", "down", "up"), _FIELD_PAN),
    **dict.fromkeys(("rotate_cw", "rotate_ccw"), (math.radians(45.0), math.radians(90.0))),
    **dict.fromkeys(("grow", "shrink"), (1.6, 2.2)),
}


@dataclass(frozen=True)
class _SceneStyle:
    """What a scene keeps of the full picture, and the main shape's size and travel (fractions of the frame)."""

    texture: bool  # stripes, soft colour blobs and per-pixel noise over the background's colour gradient
    distractors: bool
    main_diameter: tuple[float, float]  # at mid-clip
    translation: tuple[float, float]  # distance travelled over the clip by the translating classes


_SCENES: dict[str, _SceneStyle] = {
    "busy": _SceneStyle(texture=True, distractors=True, main_diameter=(0.15, 0.35), translation=(0.25, 0.45)),
    "plain": _SceneStyle(texture=False, distractors=False, main_diameter=(0.3, 0.5), translation=(0.4, 0.7)),
}
SCENES: tuple[str, ...] = (*_SCENES, "field")  # "field" has no shapes: see _render_field
assert get_args(SyntheticScene) == SCENES  # the specs' choices and the styles must not drift apart


@dataclass(frozen=True)
class _ShapeTrack:
    """One shape's appearance and per-frame pose; positions/radii in pixels, angles in radians (+ = clockwise)."""

    kind: str
    centre_x: np.ndarray  # [T] float32
    centre_y: np.ndarray  # [T] float32
    angle: np.ndarray  # [T] float32
    radius: np.ndarray  # [T] float32
    colour: np.ndarray  # [3] float32 in [0, 1]
    marker_colour: np.ndarray | None  # [3] float32, or None for an unmarked shape


@dataclass(frozen=True)
class _Background:
    """Static background texture in normalised [0, 1] frame coordinates, so it looks the same at any size."""

    colour_a: np.ndarray  # [3]
    colour_b: np.ndarray  # [3]
    gradient_angle: float
    stripe_freq: float  # cycles per frame
    stripe_angle: float
    stripe_phase: float
    stripe_amp: float
    blob_xy: np.ndarray  # [B, 2]
    blob_sigma: np.ndarray  # [B]
    blob_colour: np.ndarray  # [B, 3] signed offsets
    noise_amp: float  # per-pixel noise half-range, in [0, 1] intensity units


@dataclass(frozen=True)
class _Appearance:
    """All class-independent scene parameters of a clip (main shape given at mid-clip)."""

    background: _Background
    main_kind: str
    main_colour: np.ndarray
    marker_colour: np.ndarray
    mid_x: float  # pixels
    mid_y: float  # pixels
    mid_radius: float  # pixels
    mid_angle: float  # radians
    distractors: tuple[_ShapeTrack, ...]


@dataclass(frozen=True)
class _ClipParams:
    """Everything needed to render one clip except the per-pixel noise."""

    label: int
    main: _ShapeTrack
    distractors: tuple[_ShapeTrack, ...]
    background: _Background


def _check_args(index: int, seed: int, num_frames: int = 2, size: int = 8, scene: str = "busy") -> None:
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be non-negative, got index={index}, seed={seed}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2 (motion needs at least two frames), got {num_frames}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {', '.join(SCENES)}, got {scene!r}")


def synthetic_label(index: int, seed: int) -> int:
    """Return the class of clip ``index`` for ``seed`` without rendering it.

    Indices are grouped into consecutive blocks of ``len(MOTION_CLASSES)``; each block gets its own seeded permutation
    of the classes. Every class therefore occurs exactly once per block (balanced for any prefix up to 7 clips), while
    the order inside a block is unpredictable from the index alone.
    """
    _check_args(index, seed)
    block, slot = divmod(index, _NUM_CLASSES)
    order = np.random.default_rng([seed, block, _LABEL_STREAM]).permutation(_NUM_CLASSES)
    return int(order[slot])


def _hsv_to_rgb(hue: float, sat: float, val: float) -> np.ndarray:
    """Convert one HSV colour (all in [0, 1]) to float32 RGB."""
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    rgb = val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb.astype(np.float32)


def _foreground_colour(rng: np.random.Generator, dark_background: bool, min_sat: float) -> np.ndarray:
    # Foreground brightness sits on the opposite side of the background's, which guarantees contrast.
    val = rng.uniform(0.8, 1.0) if dark_background else rng.uniform(0.08, 0.3)
    return _hsv_to_rgb(rng.uniform(), rng.uniform(min_sat, 1.0), val)


def _sample_background(rng: np.random.Generator, dark: bool) -> _Background:
    lo, hi = (0.1, 0.4) if dark else (0.65, 0.95)
    num_blobs = int(rng.integers(3, 7))
    return _Background(
        colour_a=_hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.6), rng.uniform(lo, hi)),
        colour_b=_hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.6), rng.uniform(lo, hi)),
        gradient_angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        stripe_freq=float(rng.uniform(2.0, 7.0)),
        stripe_angle=float(rng.uniform(0.0, math.pi)),
        stripe_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
        stripe_amp=float(rng.uniform(0.06, 0.15)),
        blob_xy=rng.uniform(0.0, 1.0, size=(num_blobs, 2)).astype(np.float32),
        blob_sigma=rng.uniform(0.06, 0.2, size=num_blobs).astype(np.float32),
        blob_colour=rng.uniform(-0.08, 0.08, size=(num_blobs, 3)).astype(np.float32),
        noise_amp=float(rng.uniform(0.004, 0.015)),
    )


def _sample_distractor(rng: np.random.Generator, tau: np.ndarray, size: int, dark: bool) -> _ShapeTrack:
    # Distractors drift and spin at random so that "something translates/rotates" is never the class cue.
    heading = rng.uniform(0.0, 2.0 * math.pi)
    travel = rng.uniform(0.1, 0.4) * size
    spin = rng.uniform(-math.pi, math.pi)
    return _ShapeTrack(
        kind=_SHAPE_KINDS[int(rng.integers(len(_SHAPE_KINDS)))],
        centre_x=(rng.uniform(0.1, 0.9) * size + travel * math.cos(heading) * tau).astype(np.float32),
        centre_y=(rng.uniform(0.1, 0.9) * size + travel * math.sin(heading) * tau).astype(np.float32),
        angle=(rng.uniform(0.0, 2.0 * math.pi) + spin * tau).astype(np.float32),
        radius=np.full(tau.shape, 0.5 * rng.uniform(*_DISTRACTOR_DIAMETER_RANGE) * size, dtype=np.float32),
        colour=_foreground_colour(rng, dark, min_sat=0.3),
        marker_colour=None,
    )


def _sample_appearance(rng: np.random.Generator, tau: np.ndarray, size: int, style: _SceneStyle) -> _Appearance:
    """Draw every class-independent parameter; the label is deliberately not an argument.

    Every scene draws the same numbers in the same order and then drops what it does not show, so a clip's colours
    and layout are the same in each scene.
    """
    dark = bool(rng.integers(2))
    background = _sample_background(rng, dark)
    if not style.texture:
        background = replace(
            background, stripe_amp=0.0, blob_colour=np.zeros_like(background.blob_colour), noise_amp=0.0
        )
    main_colour = _foreground_colour(rng, dark, min_sat=0.6)
    # Rolling RGB turns the hue by 120 degrees at the same saturation, so the marker differs from the shape in hue.
    # Dark hues are hard to tell apart, so a dark shape's marker is also brightened, but kept darker than any light
    # background.
    marker = np.roll(main_colour, 1)
    if not dark:
        marker = (marker * (0.45 / max(float(marker.max()), 1e-3))).astype(np.float32)
    num_distractors = int(rng.integers(1, 3))
    return _Appearance(
        background=background,
        main_kind=_SHAPE_KINDS[int(rng.integers(len(_SHAPE_KINDS)))],
        main_colour=main_colour,
        marker_colour=marker,
        mid_x=float(rng.uniform(0.3, 0.7) * size),
        mid_y=float(rng.uniform(0.3, 0.7) * size),
        mid_radius=float(0.5 * rng.uniform(*style.main_diameter) * size),
        mid_angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        distractors=tuple(_sample_distractor(rng, tau, size, dark) for _ in range(num_distractors))
        if style.distractors
        else (),
    )


def _main_pose(
    name: str, look: _Appearance, rng: np.random.Generator, tau: np.ndarray, size: int, style: _SceneStyle
) -> tuple[np.ndarray, ...]:
    """Per-frame (x, y, angle, radius) of the main shape for motion class ``name``; tau runs from -0.5 to 0.5."""
    x = np.full(tau.shape, look.mid_x)
    y = np.full(tau.shape, look.mid_y)
    angle = np.full(tau.shape, look.mid_angle)
    radius = np.full(tau.shape, look.mid_radius)
    sign = 1.0 if name in ("right", "down", "rotate_cw", "grow") else -1.0
    if name in ("right", "left"):
        x = x + sign * rng.uniform(*style.translation) * size * tau
    elif name in ("down", "up"):
        y = y + sign * rng.uniform(*style.translation) * size * tau
    elif name in ("rotate_cw", "rotate_ccw"):
        max_turn = min(_TURN_RANGE_DEG[1], _MAX_TURN_PER_FRAME_DEG * (tau.size - 1))
        angle = angle + sign * math.radians(rng.uniform(_TURN_RANGE_DEG[0], max_turn)) * tau
        heading, drift = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(0.0, 0.08) * size
        x = x + drift * math.cos(heading) * tau
        y = y + drift * math.sin(heading) * tau
    else:
        # Geometric in time so the apparent growth rate is constant rather than front- or back-loaded.
        radius = radius * rng.uniform(*_SCALE_FACTOR_RANGE) ** (sign * tau)
    return tuple(a.astype(np.float32) for a in (x, y, angle, radius))


def _clip_params(index: int, seed: int, num_frames: int, size: int, scene: SyntheticScene = "busy") -> _ClipParams:
    """All parameters of clip ``index``; appearance and motion come from separate streams of ``(seed, index)``."""
    _check_args(index, seed, num_frames, size, scene)
    style = _SCENES[scene]
    label = synthetic_label(index, seed)
    appearance_ss, motion_ss, _ = np.random.SeedSequence([seed, index]).spawn(3)
    tau = np.linspace(-0.5, 0.5, num_frames)
    look = _sample_appearance(np.random.default_rng(appearance_ss), tau, size, style)
    x, y, angle, radius = _main_pose(MOTION_CLASSES[label], look, np.random.default_rng(motion_ss), tau, size, style)
    main = _ShapeTrack(look.main_kind, x, y, angle, radius, look.main_colour, look.marker_colour)
    return _ClipParams(label=label, main=main, distractors=look.distractors, background=look.background)


def _render_background(bg: _Background, size: int) -> np.ndarray:
    """Static [H, W, 3] float32 background: colour gradient + stripes + soft colour blobs."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = coords[None, :], coords[:, None]
    ramp = 0.5 + ((x - 0.5) * math.cos(bg.gradient_angle) + (y - 0.5) * math.sin(bg.gradient_angle)) / math.sqrt(2)
    image = bg.colour_a + (bg.colour_b - bg.colour_a) * ramp[..., None]
    stripe_pos = x * math.cos(bg.stripe_angle) + y * math.sin(bg.stripe_angle)
    image += (bg.stripe_amp * np.sin(2.0 * math.pi * bg.stripe_freq * stripe_pos + bg.stripe_phase))[..., None]
    dist2 = (x[None] - bg.blob_xy[:, 0, None, None]) ** 2 + (y[None] - bg.blob_xy[:, 1, None, None]) ** 2
    blobs = np.exp(-dist2 / (2.0 * bg.blob_sigma[:, None, None] ** 2))
    image += np.tensordot(blobs, bg.blob_colour, axes=(0, 0))
    return image.astype(np.float32)


def _pixel_span(centre: np.ndarray, reach: np.ndarray, size: int) -> slice:
    """Pixel range covering ``centre +- reach`` over all frames, clipped to the image (may be empty)."""
    lo = int(np.floor(np.min(centre - reach))) - 1
    hi = int(np.ceil(np.max(centre + reach))) + 1
    return slice(min(max(lo, 0), size), min(max(hi, 0), size))


def _local_coords(track: _ShapeTrack, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates [T, rows, cols] of pixels in the shape's frame, in units of its radius (inverse rotate + scale)."""
    dx = (np.arange(cols.start, cols.stop, dtype=np.float32) + 0.5)[None, None, :] - track.centre_x[:, None, None]
    dy = (np.arange(rows.start, rows.stop, dtype=np.float32) + 0.5)[None, :, None] - track.centre_y[:, None, None]
    cos = (np.cos(track.angle) / track.radius)[:, None, None]
    sin = (np.sin(track.angle) / track.radius)[:, None, None]
    # Each product is only [T, 1, W] or [T, H, 1]; the sums are the sole full-size operations.
    return dx * cos + dy * sin, dy * cos - dx * sin


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean inside-test for a unit-sized shape; the triangle points towards +u."""
    if kind == "circle":
        return u * u + v * v <= 1.0
    abs_u, abs_v = np.abs(u), np.abs(v)
    if kind == "square":
        return np.maximum(abs_u, abs_v) <= 0.8
    if kind == "triangle":
        # Equilateral, circumradius 1.1: apex on +u, base edge at u = -0.55.
        return (u >= -0.55) & (0.5 * u + (math.sqrt(3) / 2) * abs_v <= 0.55)
    return (np.maximum(abs_u, abs_v) <= 0.9) & (np.minimum(abs_u, abs_v) <= 0.3)


def _paint(frames: np.ndarray, track: _ShapeTrack) -> None:
    """Draw ``track`` over ``frames`` ([T, H, W, 3] float32) in place."""
    # Only the box swept by the shape over the clip is tested: shapes cover a small part of the frame, and the
    # per-pixel inside tests dominate rendering time.
    reach = _SHAPE_REACH * track.radius
    size = frames.shape[1]
    rows, cols = _pixel_span(track.centre_y, reach, size), _pixel_span(track.centre_x, reach, size)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return
    region = frames[:, rows, cols]
    u, v = _local_coords(track, rows, cols)
    inside = _shape_mask(track.kind, u, v)
    region[inside] = track.colour
    if track.marker_colour is not None:
        region[inside & (u > _MARKER_EDGE)] = track.marker_colour


def render_clip(
    index: int, seed: int, num_frames: int = 16, size: int = 112, scene: SyntheticScene = "busy"
) -> tuple[np.ndarray, int]:
    """Render clip ``index`` of the synthetic motion dataset in ``scene`` ("busy", "plain" or "field").

    Returns a uint8 array of shape [num_frames, size, size, 3] (T, H, W, RGB) and the class index into
    ``MOTION_CLASSES``. The result is a pure function of the arguments; scene geometry is expressed in fractions of
    the frame, so the same (index, seed) shows the same scene at any ``size``; its label is the same in every scene.
    """
    if scene == "field":
        _check_args(index, seed, num_frames, size, scene)
        return _render_field(index, seed, num_frames, size), synthetic_label(index, seed)
    params = _clip_params(index, seed, num_frames, size, scene)
    frames = np.empty((num_frames, size, size, 3), dtype=np.float32)
    frames[:] = _render_background(params.background, size)
    for track in (*params.distractors, params.main):
        _paint(frames, track)
    # Uniform noise of half-range noise_amp, built from raw bytes because that is far cheaper than float draws;
    # the +0.5 folds round-to-nearest into the final truncating cast.
    step = np.float32(2.0 * params.background.noise_amp)
    frames *= np.float32(255.0)
    frames += np.float32(0.5 - 127.5 * step)
    if step > 0:
        noise_ss = np.random.SeedSequence([seed, index]).spawn(3)[2]
        noise = np.frombuffer(np.random.default_rng(noise_ss).bytes(frames.size), dtype=np.uint8)
        frames += noise.reshape(frames.shape) * step
    np.clip(frames, 0.0, 255.0, out=frames)
    return frames.astype(np.uint8), params.label


def field_coords(motion: str, amount: float, tau: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Where the field's texture shown at screen point (x, y) at clip time ``tau`` lies in the mid-clip texture.

    The whole field moves as ``motion`` (a ``MOTION_CLASSES`` name) says, by ``amount`` over the clip (``tau`` runs
    from -0.5 to 0.5): a pan by that fraction of the frame, a turn by that many radians about the centre (clockwise on
    screen for "rotate_cw", since +y points down), or a zoom by that factor about the centre. Inverting the motion
    gives the texture coordinates (u, v); (x, y) are centred, in fractions of the frame.
    """
    toward = 1.0 if motion in ("right", "down", "rotate_cw", "grow") else -1.0
    if motion in ("right", "left"):
        return x - toward * amount * tau, y + 0 * tau  # (+ 0 * tau: both coordinates broadcast to every frame)
    if motion in ("down", "up"):
        return x + 0 * tau, y - toward * amount * tau
    if motion in ("rotate_cw", "rotate_ccw"):
        back = -toward * amount * tau  # undo the turn made by time tau
        return x * np.cos(back) - y * np.sin(back), x * np.sin(back) + y * np.cos(back)
    scale = amount ** (-toward * tau)  # undo the zoom made by time tau
    return x * scale, y * scale


def _render_field(index: int, seed: int, num_frames: int, size: int) -> np.ndarray:
    """The "field" scene: no object; a smooth texture of coloured plane waves fills the frame and moves as a whole.

    Every patch shows the motion, so a masked autoencoder that sees a few patches of each frame can learn it. The
    texture (base colour, wave frequencies, directions, phases and colours) comes from a stream that never sees the
    label, and is defined at mid-clip; how far it moves is drawn from another stream (ranges: _FIELD_MOTION).
    """
    motion = MOTION_CLASSES[synthetic_label(index, seed)]
    appearance_seed, motion_seed, _ = np.random.SeedSequence([seed, index]).spawn(3)
    look = np.random.default_rng(appearance_seed)
    base = look.uniform(*_FIELD_BASE, size=3)
    cycles = look.uniform(*_FIELD_CYCLES, size=_FIELD_WAVES)  # per frame width
    direction = look.uniform(0, 2 * math.pi, size=_FIELD_WAVES)
    phase = look.uniform(0, 2 * math.pi, size=_FIELD_WAVES)
    colour = look.uniform(-_FIELD_CONTRAST, _FIELD_CONTRAST, size=(_FIELD_WAVES, 3))
    amount = np.random.default_rng(motion_seed).uniform(*_FIELD_MOTION[motion])

    tau = np.linspace(-0.5, 0.5, num_frames)[:, None, None]  # [T, 1, 1]
    centred = (np.arange(size) + 0.5) / size - 0.5
    u, v = field_coords(motion, amount, tau, centred[None, None, :], centred[None, :, None])  # each [T, H, W]
    image = np.broadcast_to(base, (num_frames, size, size, 3)).astype(np.float32)  # [T, H, W, 3]
    for k in range(_FIELD_WAVES):
        along = u * math.cos(direction[k]) + v * math.sin(direction[k])
        image += np.sin(2 * math.pi * cycles[k] * along + phase[k])[..., None] * colour[k]
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


class SyntheticVideos(Dataset):
    """``num_videos`` procedurally rendered clips whose class depends only on the main shape's motion.

    Item ``i`` is ``(uint8 tensor [T, H, W, 3], int label)``: clip ``first_index + i``. Clips are rendered on demand
    from ``(seed, first_index + i)`` alone, so they are identical in any process or DataLoader worker and independent of
    access order. Disjoint index ranges give disjoint splits (the fine-tuning validation set starts at
    ``VALIDATION_FIRST_INDEX``).
    """

    classes: tuple[str, ...] = MOTION_CLASSES

    def __init__(
        self,
        num_videos: int,
        num_frames: int = 16,
        size: int = 112,
        seed: int = 0,
        first_index: int = 0,
        scene: SyntheticScene = "busy",
    ) -> None:
        """Configure the dataset; nothing is rendered until an item is requested."""
        if num_videos < 0:
            raise ValueError(f"num_videos must be non-negative, got {num_videos}")
        _check_args(first_index, seed, num_frames, size, scene)
        self.scene = scene
        self.first_index = first_index
        self.num_videos = num_videos
        self.num_frames = num_frames
        self.size = size
        self.seed = seed

    @classmethod
    def from_spec(cls, data: DataSpec, seed: int, held_out: bool = False) -> SyntheticVideos:
        """The built-in videos a DataSpec names: its `synthetic_videos` training clips or, with `held_out`, its
        `synthetic_val_videos` validation clips (from VALIDATION_FIRST_INDEX), in its `synthetic_scene`."""
        count, first = (data.synthetic_val_videos, VALIDATION_FIRST_INDEX) if held_out else (data.synthetic_videos, 0)
        return cls(count, data.num_frames, data.input_size, seed, first, data.synthetic_scene)

    def __len__(self) -> int:
        """Number of clips."""
        return self.num_videos

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Render clip ``index`` (negative indices count from the end)."""
        if index < 0:
            index += self.num_videos
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index out of range for {self.num_videos} videos")
        clip, label = render_clip(self.first_index + index, self.seed, self.num_frames, self.size, self.scene)
        return torch.from_numpy(clip), label

    def labels(self) -> list[int]:
        """All labels, computed without rendering (useful for stratified splits and class counts)."""
        return self.labels_of(range(self.num_videos))

    def labels_of(self, indices: Iterable[int]) -> list[int]:
        """The labels of some items, computed without rendering."""
        return [synthetic_label(self.first_index + i, self.seed) for i in indices]
