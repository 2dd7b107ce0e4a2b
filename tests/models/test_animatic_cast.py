"""The animatic draws a cast (issue 25): every character of a shot cut from its own sprites, in its own
region, acting its own action, drawn farthest first, with one mask per character of the pixels where it
is seen; and a film of one character drawn exactly as before casts existed."""

import hashlib

import numpy as np
import pytest

from storyagent.media import ReferenceMedia, load_reference
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.models.animatic.layout import CAST_OVERLAP, stable_seed
from storyagent.schemas import HIDDEN_FRACTION, Region, Shot, ShotCharacter, covered_fraction, front_to_back

W, H, FPS = 256, 160, 6
MAGENTA = (220, 40, 200)


def magenta_blob(frames: int = 2) -> ReferenceMedia:
    """A second character no part of Pip (orange, cream, brown, a blue scarf) or of any scene looks like: a
    magenta blob photographed on grey, with its mask; its reference frames change shape (it wobbles)."""
    out = ReferenceMedia(frames=[], masks=[])
    for i in range(frames):
        h, w = 180, 130 + 20 * i
        img = np.full((h, w, 3), 128, np.uint8)
        yy, xx = np.mgrid[:h, :w]
        mask = ((xx - w / 2) / (w * 0.46)) ** 2 + ((yy - h / 2) / (h * 0.47)) ** 2 <= 1
        img[mask] = MAGENTA
        out.frames.append(img)
        out.masks.append(mask)
    return out


def magenta(pixels: np.ndarray) -> np.ndarray:
    """Which of these RGB pixels are the blob's colour (also blended half with anything, or in shadow)."""
    p = pixels.astype(np.int16)
    return np.minimum(p[..., 0], p[..., 2]) - p[..., 1] > 50


def invisible_like(sprites: SubjectSprites) -> SubjectSprites:
    """Sprites laid out as `sprites` are (same sizes) but fully transparent: a character that draws nothing."""
    return SubjectSprites([np.zeros_like(s) for s in sprites.sprites])


@pytest.fixture(scope="module")
def cast(pip_png):
    return {"Pip": SubjectSprites.from_reference(load_reference(pip_png)),
            "Mag": SubjectSprites.from_reference(magenta_blob())}


def pixels(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# ---- a film of one character is drawn as it was --------------------------------------------------

# (shot type, camera, action, subtitles, motion seed of the clip's take)
PIN_SHOTS = [
    ("wide", "static", "hops over a log", False, None),
    ("medium", "zoom in", "swims across the pond", True, None),
    ("close-up", "pan left", "falls asleep", False, None),
    ("wide", "tilt up", "walks to the old tree", True, 7),
    ("medium", "zoom out", "trips and falls", False, None),
]
# The pixels (storyboard picture + mask; every clip frame + mask) of these shots of Pip alone, as
# `pin_render` renders them. Made by running `pin_render` on the renderer as it was before casts (commit
# 9c23893, storyagent/models/animatic at that commit), before any of the cast's code was written; every
# value here is what that renderer drew, on this machine's OpenCV and fonts.
PINNED = {1: ("5e531f90496bda2e", "f326431546eac1f1"), 2: ("3384e3fe4f01db26", "66694e1d7dab476c"),
          3: ("0e76c966c7c70ed5", "0f7fdec16c623220"), 4: ("4a7f55c14936cf10", "9eb483d559abe926"),
          5: ("dac1060034fc0d24", "a6760e2ea78fe9a6")}


def pin_shot(i: int, characters: bool = False) -> Shot:
    kind, camera, action, _, _ = PIN_SHOTS[i - 1]
    region = "left" if i % 2 else "right"
    return Shot(index=i, narration=f"Pip {action}.", description="d", subject_action=action, subject_region=region,
                background="a pond in a meadow at dusk", shot_type=kind, camera_motion=camera, duration=2.0,
                characters=[ShotCharacter(name="Pip", action=action, region=region)] if characters else [])


def pin_render(i: int, sprites) -> tuple[str, str]:
    _, _, _, subtitles, motion_seed = PIN_SHOTS[i - 1]
    shot = pin_shot(i)
    pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS, subtitles=subtitles))
    board = pipe(shot, sprites, seed=11, num_frames=1)
    clip = pipe(shot, sprites, seed=11, motion_seed=motion_seed)
    return pixels([board.storyboard, board.storyboard_mask]), pixels(clip.frames + clip.masks)


@pytest.mark.parametrize("i", sorted(PINNED))
def test_a_one_character_shot_is_drawn_exactly_as_before_casts(i, cast):
    """Pip alone, given as before (its sprites), as the lead of a cast of one, or as the lead of a cast
    of two in a shot that shows Pip alone: the same pixels and masks as the renderer before casts."""
    assert pin_render(i, cast["Pip"]) == PINNED[i]
    assert pin_render(i, {"Pip": cast["Pip"]}) == PINNED[i]
    assert pin_render(i, cast) == PINNED[i]


def test_a_shot_listing_its_one_character_is_the_same_shot(cast):
    pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS))
    plain, listed = pipe(pin_shot(2), cast, seed=4), pipe(pin_shot(2, characters=True), cast, seed=4)
    assert pixels(plain.frames + plain.masks) == pixels(listed.frames + listed.masks)
    assert list(listed.storyboard_masks) == ["Pip"] and listed.storyboard_masks["Pip"] is listed.storyboard_mask


# ---- no shot loses a character the story names ---------------------------------------------------

REGIONS = {
    "side by side": ("left", "right"),
    # Overlapping, but within what the story's check allows (the farther one less than HIDDEN_FRACTION behind).
    "overlapping": ({"x": 0.25, "y": 0.15, "w": 0.4, "h": 0.6}, {"x": 0.4, "y": 0.3, "w": 0.45, "h": 0.65}),
    "one behind the other": ({"x": 0.3, "y": 0.1, "w": 0.4, "h": 0.5}, {"x": 0.3, "y": 0.4, "w": 0.4, "h": 0.55}),
}
ACTIONS = [("hops over a stone", "swims in the pond"), ("trips and falls", "waves hello"),
           ("runs to the tree", "jumps for joy"), ("falls asleep", "walks along")]


def two_shot(kind: str, camera: str, regions, actions, names=("Pip", "Mag"), index: int = 3,
             narration: str = "Pip and Mag meet by the water and talk for a long while.") -> Shot:
    people = [ShotCharacter(name=n, action=a, region=r) for n, a, r in zip(names, actions, regions)]
    return Shot(index=index, narration=narration, description="d", subject_action=actions[0],
                subject_region=regions[0], background="a sunny meadow at noon", shot_type=kind, camera_motion=camera,
                duration=2.0, characters=people)


def check_cast_render(pipe, shot, cast, seed=5, min_seen=0.3, **kw):
    """Every character of `shot` is seen in every frame, at least `min_seen` of what it would show were the
    others not there; in its own colours; and no pixel is two characters'."""
    render = pipe(shot, cast, seed=seed, **kw)
    names = [c.name for c in shot.characters]
    # The same shot with each character alone (the others drawn fully transparent, laid out the same).
    alone = {n: pipe(shot, {m: (s if m == n else invisible_like(s)) for m, s in cast.items()}, seed=seed, **kw)
             for n in names}
    assert render.storyboard_mask is render.masks[0]
    for t, (frame, masks) in enumerate(zip(render.frames, render.character_masks)):
        assert list(masks) == names
        assert np.array_equal(render.masks[t], np.logical_or.reduce(list(masks.values())))
        for a in names:
            for b in names:
                assert a == b or not (masks[a] & masks[b]).any(), f"frame {t}: {a} and {b} share pixels"
            full = alone[a].character_masks[t][a]
            assert masks[a].sum() >= min_seen * full.sum() > 0, (
                f"{shot.shot_type.value} {shot.camera_motion.value}, frame {t}: {a} shows {masks[a].sum()} of "
                f"its {full.sum()} pixels")
            assert masks[a].sum() >= 0.004 * W * H, f"frame {t}: {a} is {masks[a].sum()} pixels"
            assert not (masks[a] & ~full).any()  # seen only where it is drawn
        # Its own sprites' colours, above the subtitles (burnt in over bodies, never over faces): the blob's
        # pixels magenta, Pip's never.
        above = np.arange(H)[:, None] < render.layouts[t].subtitle_box[1]
        assert magenta(frame[masks["Mag"] & above]).mean() > 0.95
        assert magenta(frame[masks["Pip"] & above]).mean() < 0.01
    return render


@pytest.mark.parametrize("kind", ["wide", "medium", "close-up"])
@pytest.mark.parametrize("where", sorted(REGIONS))
def test_every_character_a_shot_names_is_seen_in_every_frame(kind, where, cast):
    pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS))
    for k, actions in enumerate(ACTIONS):
        camera = ("static", "zoom in", "pan left", "zoom out")[k]
        regions = REGIONS[where] if k % 2 == 0 else REGIONS[where][::-1]  # each character on either side
        shot = two_shot(kind, camera, regions, actions, index=k + 1)
        clip = check_cast_render(pipe, shot, cast)
        board = check_cast_render(pipe, shot, cast, num_frames=1)
        # The storyboard picture is the clip's first frame, masks and all.
        assert np.array_equal(board.storyboard, clip.storyboard)
        for name in ("Pip", "Mag"):
            assert np.array_equal(board.storyboard_masks[name], clip.character_masks[0][name])


def test_a_new_take_of_a_clip_and_three_characters_lose_no_one(cast):
    pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS))
    shot = two_shot("medium", "zoom in", REGIONS["overlapping"], ACTIONS[2])
    check_cast_render(pipe, shot, cast, motion_seed=1234)
    trio = {**cast, "Bea": SubjectSprites.from_reference(magenta_blob(1))}
    for kind in ("wide", "medium", "close-up"):
        for actions in (("walks along", "trips and falls", "hops"), ("swims", "runs off", "falls asleep")):
            shot = two_shot(kind, "zoom in", ("left", "center", "right"), actions, names=("Pip", "Mag", "Bea"))
            render = pipe(shot, trio, seed=2)
            for t, masks in enumerate(render.character_masks):
                total = sum(m.astype(int) for m in masks.values())
                assert total.max() <= 1
                for name, m in masks.items():
                    assert m.sum() >= 0.004 * W * H, f"{kind} {actions}, frame {t}: {name} is {m.sum()} pixels"


def test_the_nearer_character_covers_the_farther_one(cast):
    """Where the two overlap, the one whose region reaches lower (nearer the camera) is seen."""
    pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS, subtitles=False))
    back, front = REGIONS["overlapping"]
    for names in (("Pip", "Mag"), ("Mag", "Pip")):
        shot = two_shot("medium", "static", (back, front), ("waves", "waves"), names=names)
        assert [c.name for c in front_to_back(shot.characters)] == [names[1], names[0]]
        render = pipe(shot, cast, seed=1)
        drawn = {n: pipe(shot, {m: (s if m == n else invisible_like(s)) for m, s in cast.items()}, seed=1)
                 for n in names}
        both = drawn[names[0]].storyboard_mask & drawn[names[1]].storyboard_mask
        assert both.sum() > 50  # they do overlap here
        assert render.storyboard_masks[names[1]][both].all() and not render.storyboard_masks[names[0]][both].any()


def test_each_character_acts_its_own_action_in_its_own_region_with_its_face_clear_of_the_subtitles(cast):
    pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS))
    for kind in ("wide", "medium", "close-up"):
        shot = two_shot(kind, "zoom in", ("left", "right"), ("hops about", "falls asleep"))
        plans = pipe.cast_layout(shot, cast, seed=3)
        assert list(plans) == ["Pip", "Mag"]
        hop, sleep = plans["Pip"], plans["Mag"]
        assert all(lay.angle == 0 for lay in hop)
        feet = [lay.subject_box[3] for lay in hop]
        assert max(feet) - min(feet) > 0.05 * H  # in the air
        assert all(abs(lay.angle) == 90 for lay in sleep)  # lying down from the first frame
        # Pip on the left, Mag on the right, one camera.
        assert all((p.extent[0] + p.extent[2]) / 2 < W / 2 < (m.extent[0] + m.extent[2]) / 2 for p, m in zip(hop, sleep))
        assert all(np.array_equal(p.camera, m.camera) for p, m in zip(hop, sleep))
        for lay in (*hop, *sleep):
            assert lay.face_box[3] <= lay.subtitle_box[1]
    # A character's direction of travel is its own draw (seeded by its name), not its neighbour's.
    assert stable_seed(3, 3, "Pip") != stable_seed(3, 3, "Mag")


def test_the_story_check_and_the_renderer_agree_on_overlaps():
    """The regions the tests above call allowed are allowed by the story's own check, and the renderer's
    limit is the stricter one (it keeps more of a farther character in sight than the story asks)."""
    for back, front in REGIONS.values():
        b, f = Region(**back) if isinstance(back, dict) else Region.named(back), \
            Region(**front) if isinstance(front, dict) else Region.named(front)
        assert covered_fraction(b, f) <= HIDDEN_FRACTION
    assert CAST_OVERLAP < HIDDEN_FRACTION


def test_a_shot_names_only_characters_with_sprites(cast):
    pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS))
    shot = two_shot("wide", "static", ("left", "right"), ("waves", "waves"), names=("Pip", "Crong"))
    with pytest.raises(ValueError, match="Crong"):
        pipe(shot, cast)
    with pytest.raises(ValueError, match="by name"):
        pipe(two_shot("wide", "static", ("left", "right"), ("waves", "waves")), cast["Pip"])
    # Names match in any case; the masks go under the cast's spelling.
    render = pipe(two_shot("wide", "static", ("left", "right"), ("waves", "waves"), names=("pip", "MAG")), cast,
                  num_frames=1)
    assert list(render.storyboard_masks) == ["Pip", "Mag"]
