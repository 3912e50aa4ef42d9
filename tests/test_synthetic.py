"""Tests for the procedural motion-classification dataset in videomae_cli.data.synthetic."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from videomae_cli.config.schema import DataSpec, SyntheticScene
from videomae_cli.data import synthetic
from videomae_cli.data.synthetic import MOTION_CLASSES, SyntheticVideos, render_clip, synthetic_label


def _first_index_of(label: int, seed: int = 0) -> int:
    return next(i for i in range(1000) if synthetic_label(i, seed) == label)


def _force_label(monkeypatch: pytest.MonkeyPatch, label: int) -> None:
    monkeypatch.setattr(synthetic, "synthetic_label", lambda index, seed: label)


@pytest.mark.parametrize(("num_frames", "size"), [(16, 112), (4, 32), (5, 33)])
def test_render_clip_shape_and_dtype(num_frames: int, size: int) -> None:
    clip, label = render_clip(3, seed=0, num_frames=num_frames, size=size)
    assert clip.shape == (num_frames, size, size, 3)
    assert clip.dtype == np.uint8
    assert isinstance(label, int)
    assert 0 <= label < len(MOTION_CLASSES)


def test_render_clip_is_deterministic() -> None:
    first, label_a = render_clip(7, seed=3, num_frames=4, size=32)
    second, label_b = render_clip(7, seed=3, num_frames=4, size=32)
    np.testing.assert_array_equal(first, second)
    assert label_a == label_b


def test_different_index_or_seed_gives_different_pixels() -> None:
    base, _ = render_clip(7, seed=3, num_frames=4, size=32)
    other_index, _ = render_clip(8, seed=3, num_frames=4, size=32)
    other_seed, _ = render_clip(7, seed=4, num_frames=4, size=32)
    assert not np.array_equal(base, other_index)
    assert not np.array_equal(base, other_seed)


def test_synthetic_label_matches_rendered_label() -> None:
    for index in range(40):
        assert synthetic_label(index, seed=5) == render_clip(index, seed=5, num_frames=2, size=16)[1]


def test_labels_are_balanced() -> None:
    counts = Counter(synthetic_label(index, seed=11) for index in range(800))
    assert set(counts) == set(range(len(MOTION_CLASSES)))
    assert all(60 <= n <= 140 for n in counts.values())


def test_labels_depend_on_seed() -> None:
    assert [synthetic_label(i, 0) for i in range(32)] != [synthetic_label(i, 1) for i in range(32)]


def test_dataset_items_and_length() -> None:
    dataset = SyntheticVideos(num_videos=5, num_frames=4, size=32, seed=2)
    assert len(dataset) == 5
    assert dataset.classes == MOTION_CLASSES
    video, label = dataset[4]
    assert isinstance(video, torch.Tensor)
    assert video.dtype == torch.uint8
    assert video.shape == (4, 32, 32, 3)
    assert isinstance(label, int)
    assert label == synthetic_label(4, seed=2)
    assert dataset.labels() == [synthetic_label(i, seed=2) for i in range(5)]


def test_dataset_is_independent_of_access_order() -> None:
    forward = SyntheticVideos(num_videos=4, num_frames=3, size=24, seed=9)
    backward = SyntheticVideos(num_videos=4, num_frames=3, size=24, seed=9)
    first = [forward[i][0] for i in range(4)]
    second = [backward[i][0] for i in reversed(range(4))][::-1]
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(forward[-1][0], first[3])


def test_dataset_rejects_out_of_range_index() -> None:
    with pytest.raises(IndexError):
        SyntheticVideos(num_videos=3, num_frames=2, size=16)[3]


@pytest.mark.parametrize(("index", "seed", "num_frames", "size"), [(-1, 0, 4, 32), (0, -1, 4, 32), (0, 0, 1, 32)])
def test_invalid_arguments_are_rejected(index: int, seed: int, num_frames: int, size: int) -> None:
    with pytest.raises(ValueError):
        render_clip(index, seed, num_frames, size)


def _increasing(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(values) > 0))


def _decreasing(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(values) < 0))


def _constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


@pytest.mark.parametrize("name", ["right", "left", "down", "up"])
def test_translation_moves_main_shape_in_class_direction(name: str) -> None:
    size = 112
    label = MOTION_CLASSES.index(name)
    for index in [i for i in range(200) if synthetic_label(i, 0) == label][:10]:
        main = synthetic._clip_params(index, 0, 16, size).main
        along, across = (main.centre_x, main.centre_y) if name in ("right", "left") else (main.centre_y, main.centre_x)
        assert (_increasing if name in ("right", "down") else _decreasing)(along)
        assert abs(float(along[-1] - along[0])) >= 0.2 * size  # a clearly visible distance
        assert _constant(across) and _constant(main.angle) and _constant(main.radius)
        assert np.all((along > 0) & (along < size))  # the centre never leaves the frame


@pytest.mark.parametrize(("name", "num_frames"), [("rotate_cw", 16), ("rotate_ccw", 16), ("rotate_cw", 2)])
def test_rotation_is_monotonic_and_unambiguous(name: str, num_frames: int) -> None:
    label = MOTION_CLASSES.index(name)
    for index in [i for i in range(200) if synthetic_label(i, 0) == label][:10]:
        angle = synthetic._clip_params(index, 0, num_frames, 112).main.angle
        # +angle is clockwise on screen because image y points down.
        assert (_increasing if name == "rotate_cw" else _decreasing)(angle)
        assert math.radians(60) < abs(float(angle[-1] - angle[0])) < math.radians(360)
        assert np.max(np.abs(np.diff(angle))) < math.pi  # each step's direction is unambiguous


@pytest.mark.parametrize("name", ["grow", "shrink"])
def test_scaling_changes_radius_in_class_direction(name: str) -> None:
    label = MOTION_CLASSES.index(name)
    for index in [i for i in range(200) if synthetic_label(i, 0) == label][:10]:
        main = synthetic._clip_params(index, 0, 16, 112).main
        assert (_increasing if name == "grow" else _decreasing)(main.radius)
        ratio = float(max(main.radius[0], main.radius[-1]) / min(main.radius[0], main.radius[-1]))
        assert 1.75 <= ratio <= 2.55
        assert _constant(main.angle)


def test_rendered_main_shape_follows_its_parameters() -> None:
    # The shape centre is inside every shape kind and outside the marker, so it must show the main colour.
    for index in range(16):
        params = synthetic._clip_params(index, 1, 8, 64)
        clip, _ = render_clip(index, 1, 8, 64)
        tolerance = params.background.noise_amp * 255 + 1
        expected = params.main.colour * 255
        for t in range(8):
            row, col = int(params.main.centre_y[t]), int(params.main.centre_x[t])
            assert np.all(np.abs(clip[t, row, col].astype(np.float32) - expected) <= tolerance)


def test_frames_change_over_time_for_every_class() -> None:
    for label in range(len(MOTION_CLASSES)):
        clip, _ = render_clip(_first_index_of(label), 0, 8, 48)
        first, last = clip[0].astype(np.float32), clip[-1].astype(np.float32)
        changed = np.abs(first - last).max(axis=-1) > 60  # well above the per-pixel noise
        assert changed.mean() > 0.01


def test_appearance_does_not_depend_on_class(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = synthetic._clip_params(12, 4, 9, 48)
    for label in range(len(MOTION_CLASSES)):
        _force_label(monkeypatch, label)
        params = synthetic._clip_params(12, 4, 9, 48)
        assert params.main.kind == reference.main.kind
        np.testing.assert_array_equal(params.main.colour, reference.main.colour)
        np.testing.assert_array_equal(params.background.colour_a, reference.background.colour_a)
        assert len(params.distractors) == len(reference.distractors)
        for ours, theirs in zip(params.distractors, reference.distractors, strict=True):
            np.testing.assert_array_equal(ours.centre_x, theirs.centre_x)


def test_middle_frame_is_identical_whatever_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    # With an odd frame count the middle frame sits at the pose all classes share, so it alone reveals nothing.
    middles = []
    for label in range(len(MOTION_CLASSES)):
        _force_label(monkeypatch, label)
        middles.append(render_clip(21, 2, num_frames=9, size=40)[0][4])
    for middle in middles[1:]:
        np.testing.assert_array_equal(middle, middles[0])


def test_every_class_uses_every_shape_kind() -> None:
    kinds: dict[int, set[str]] = {label: set() for label in range(len(MOTION_CLASSES))}
    for index in range(400):
        params = synthetic._clip_params(index, 0, 2, 16)
        kinds[params.label].add(params.main.kind)
    assert all(found == set(synthetic._SHAPE_KINDS) for found in kinds.values())


# ---------------------------------------------------------------------------------------------------------------------
# Scenes


def test_unknown_scene_is_rejected() -> None:
    with pytest.raises(ValueError, match="scene must be one of busy, plain"):
        render_clip(0, 0, 4, 32, scene="sunny")  # type: ignore[arg-type]  # the point of the test


def test_plain_scene_keeps_labels_and_colours_but_drops_texture_and_distractors() -> None:
    for index in range(24):
        busy = synthetic._clip_params(index, 3, 8, 32, "busy")
        plain = synthetic._clip_params(index, 3, 8, 32, "plain")
        assert plain.label == busy.label
        np.testing.assert_array_equal(plain.main.colour, busy.main.colour)
        np.testing.assert_array_equal(plain.background.colour_a, busy.background.colour_a)
        assert plain.distractors == ()
        assert plain.background.noise_amp == 0 and plain.background.stripe_amp == 0
        assert not plain.background.blob_colour.any()


def test_plain_background_is_static_and_noise_free() -> None:
    # Without noise or distractors, every pixel the main shape never touches is the same in every frame.
    for index in range(8):
        clip, _ = render_clip(index, 0, 8, 32, scene="plain")
        untouched = (clip == clip[0]).all(axis=(0, 3))
        assert untouched.mean() > 0.3
        busy, _ = render_clip(index, 0, 8, 32, scene="busy")
        assert (busy == busy[0]).all(axis=(0, 3)).mean() < 0.3  # the busy scene's pixel noise differs per frame


def test_plain_main_shape_is_larger_and_travels_farther() -> None:
    def mean_diameter_and_travel(scene: SyntheticScene) -> tuple[float, float]:
        params = [synthetic._clip_params(i, 0, 8, 100, scene) for i in range(200)]
        moving = [p.main for p in params if MOTION_CLASSES[p.label] in ("right", "left", "down", "up")]
        travel = [math.hypot(m.centre_x[-1] - m.centre_x[0], m.centre_y[-1] - m.centre_y[0]) for m in moving]
        return float(np.mean([2 * p.main.radius[len(p.main.radius) // 2] for p in params])), float(np.mean(travel))

    busy_size, busy_travel = mean_diameter_and_travel("busy")
    plain_size, plain_travel = mean_diameter_and_travel("plain")
    assert busy_size < 30 < plain_size  # mean mid-clip diameter 25 vs 40 pixels of 100
    assert busy_travel < 45 < plain_travel  # mean travel 35 vs 55 pixels


def test_dataset_from_spec_uses_the_spec_scene_and_splits() -> None:
    data = DataSpec(num_frames=4, input_size=16, synthetic_videos=3, synthetic_val_videos=2, synthetic_scene="plain")
    train = SyntheticVideos.from_spec(data, seed=5)
    held_out = SyntheticVideos.from_spec(data, seed=5, held_out=True)
    assert (len(train), len(held_out)) == (3, 2)
    np.testing.assert_array_equal(train[1][0].numpy(), render_clip(1, 5, 4, 16, scene="plain")[0])
    first = synthetic.VALIDATION_FIRST_INDEX
    np.testing.assert_array_equal(held_out[0][0].numpy(), render_clip(first, 5, 4, 16, scene="plain")[0])


# ---------------------------------------------------------------------------------------------------------------------
# The field scene: no object, a smooth texture that moves as a whole


def test_field_scene_is_deterministic_and_keeps_the_label() -> None:
    for index in range(16):
        clip, label = render_clip(index, 4, 8, 16, scene="field")
        again, _ = render_clip(index, 4, 8, 16, scene="field")
        np.testing.assert_array_equal(clip, again)
        assert clip.shape == (8, 16, 16, 3) and clip.dtype == np.uint8
        assert label == synthetic_label(index, 4) == render_clip(index, 4, 4, 16, scene="busy")[1]


@pytest.mark.parametrize(
    ("motion", "screen", "came_from"),
    [
        ("right", (0.0, 0.0), "left"),
        ("left", (0.0, 0.0), "right"),
        ("down", (0.0, 0.0), "above"),
        ("up", (0.0, 0.0), "below"),
        ("rotate_cw", (0.3, 0.0), "above"),  # clockwise on screen (+y down): 12 o'clock turns towards 3 o'clock
        ("rotate_ccw", (0.3, 0.0), "below"),
        ("grow", (0.3, 0.0), "left"),  # the texture at x = 0.3 came from nearer the centre
        ("shrink", (0.3, 0.0), "right"),
    ],
)
def test_field_texture_moves_as_its_class_says(motion: str, screen: tuple[float, float], came_from: str) -> None:
    x, y = np.array(screen[0]), np.array(screen[1])
    u, v = synthetic.field_coords(motion, synthetic._FIELD_MOTION[motion][0], np.array(0.5), x, y)  # last frame
    offset = {"left": x - u, "right": u - x, "above": y - v, "below": v - y}  # +y points down
    assert offset[came_from] > 0.05
    still_u, still_v = synthetic.field_coords(motion, synthetic._FIELD_MOTION[motion][0], np.array(0.0), x, y)
    assert (still_u, still_v) == (x, y)  # mid-clip, every class shows the texture as drawn


def _best_shift(first: np.ndarray, last: np.ndarray, reach: int) -> tuple[int, int]:
    """The (dx, dy) in pixels that best maps `first` onto `last` (least squared error over the overlap)."""
    size = first.shape[0]
    errors = {}
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            moved = last[max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)]
            source = first[max(-dy, 0) : size + min(-dy, 0), max(-dx, 0) : size + min(-dx, 0)]
            errors[dx, dy] = float(((moved.astype(float) - source) ** 2).mean())
    return min(errors, key=errors.__getitem__)


@pytest.mark.parametrize(
    ("motion", "sign_x", "sign_y"), [("right", 1, 0), ("left", -1, 0), ("down", 0, 1), ("up", 0, -1)]
)
def test_field_clip_pans_by_a_quarter_to_almost_half_the_frame(
    monkeypatch: pytest.MonkeyPatch, motion: str, sign_x: int, sign_y: int
) -> None:
    _force_label(monkeypatch, MOTION_CLASSES.index(motion))
    for index in range(3):
        clip, _ = render_clip(index, 0, 8, 48, scene="field")
        dx, dy = _best_shift(clip[0], clip[-1], reach=24)
        travel = dx * sign_x + dy * sign_y
        assert 0.25 * 48 - 1 <= travel <= 0.45 * 48 + 1  # pans 25-45% of the frame
        assert abs(dx * sign_y) + abs(dy * sign_x) <= 1  # nothing across (the waves make it ambiguous to a pixel)


def test_field_mid_clip_frame_is_the_same_for_every_class(monkeypatch: pytest.MonkeyPatch) -> None:
    # With an odd number of frames the middle one is at clip time 0: it shows the texture as drawn, whatever the class.
    for index in range(4):
        middles = []
        for label in range(len(MOTION_CLASSES)):
            _force_label(monkeypatch, label)
            middles.append(render_clip(index, 1, 9, 16, scene="field")[0][4])
        for middle in middles[1:]:
            np.testing.assert_array_equal(middle, middles[0])


def test_field_texture_is_smooth_and_varied() -> None:
    clips = np.stack([render_clip(index, 2, 4, 32, scene="field")[0] for index in range(32)]).astype(float)
    neighbour_step = np.abs(np.diff(clips, axis=3)).mean()
    assert neighbour_step < 8  # 1-2.2 cycles per frame width: a few grey levels between neighbouring pixels
    assert clips.std(axis=(1, 2, 3)).mean() > 10  # but each clip has visible structure
    assert clips.mean(axis=(1, 2, 3, 4)).std() > 5  # and clips differ in colour
