"""Framing: the subject stays in the frame in every shot type, camera move and motion it acts, and the
subtitles never cover its face. Checked on the layout function and on the rendered pictures."""

import itertools
import math
import random

import numpy as np
import pytest

from storyagent.media import load_reference
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.models.animatic.layout import FACE_DEPTH, plan_shot, shot_layout
from storyagent.schemas import NAMED_REGIONS, CameraMotion, Region, Shot, ShotType

SHOT_TYPES = [t.value for t in ShotType]
MOTIONS = [m.value for m in CameraMotion]
ACTIONS = ["stands still", "runs along the shore", "jumps for joy"]
# One action per motion the subject acts (motion.MOTIONS): the turned, squashed, cut-at-the-water poses.
ACTING = {"hop": "jumps high", "fall": "trips and falls", "swim": "tries to swim", "walk": "strolls along",
          "run": "races home", "sleep": "curls up and sleeps", "turn": "turns around", "wave": "waves hello",
          "fly": "flies over the trees", "climb": "climbs the rock", "glide": "stops, worried"}
LONG_LINE = "Pip runs along the sandy beach as the waves roll in and the gulls cry above the little harbour."


def make_shot(shot_type: str, motion: str, region, action: str = "runs along the shore", index: int = 1) -> Shot:
    return Shot(index=index, narration=LONG_LINE, description="d", subject_action=action, subject_region=region,
                background="a sandy beach at noon", shot_type=shot_type, camera_motion=motion, duration=2.0)


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_layouts(layouts, shot_type: str, W: int, H: int, tol: float = 1e-6) -> None:
    sub = layouts[0].subtitle_box
    for t, lay in enumerate(layouts):
        x0, y0, x1, y1 = lay.extent  # the subject's box as turned by its pose
        assert x1 > x0 and y1 > y0
        assert x0 >= -tol and y0 >= -tol and x1 <= W + tol, f"frame {t}: {lay.extent} leaves the {W}x{H} frame"
        if shot_type != "close-up":
            assert y1 <= H + tol, f"frame {t}: {lay.extent} runs off the bottom"
        fy1 = lay.face_box[3]
        assert fy1 <= H + tol, f"frame {t}: the face {lay.face_box} is not all in the frame"
        assert lay.subtitle_box == sub, "the subtitles stay in one place for the whole shot"
        assert not overlap(lay.face_box, sub), f"frame {t}: subtitles {sub} cover the face {lay.face_box}"


@pytest.mark.parametrize("shot_type,motion", list(itertools.product(SHOT_TYPES, MOTIONS)))
def test_layout_keeps_subject_in_frame_and_face_clear(shot_type, motion):
    for (region, action, aspect), (W, H) in itertools.product(
            itertools.product(NAMED_REGIONS, ACTIONS, (0.5, 1.6, 3.0)), [(512, 320), (128, 96), (320, 480), (96, 64)]):
        shot = make_shot(shot_type, motion, region, action)
        layouts = plan_shot(shot, 16, W, H, aspect, fps=8.0, seed=3)
        assert len(layouts) == 16
        check_layouts(layouts, shot_type, W, H)
        # A wide shot keeps a still subject's feet above the bottom subtitle band (where the frame has room).
        if shot_type == "wide" and motion == "static" and action == "stands still" and H >= 96:
            assert layouts[0].subject_box[3] <= layouts[0].subtitle_box[1] + 1e-6


@pytest.mark.parametrize("shot_type", SHOT_TYPES)
@pytest.mark.parametrize("motion", sorted(ACTING))
def test_every_acted_motion_keeps_the_subject_in_frame_and_face_clear(shot_type, motion):
    for camera, region, (W, H) in itertools.product(MOTIONS, ("left", "center", "bottom right", "full"),
                                                     [(512, 320), (192, 128), (320, 480), (96, 64)]):
        shot = make_shot(shot_type, camera, region, ACTING[motion])
        check_layouts(plan_shot(shot, 16, W, H, 0.79, fps=8.0, seed=5), shot_type, W, H)


def test_layout_random_regions_and_seeds():
    rng = random.Random(0)
    for i in range(300):
        x, y = rng.uniform(0, 0.9), rng.uniform(0, 0.9)
        region = Region(x=x, y=y, w=rng.uniform(0.05, 1 - x), h=rng.uniform(0.05, 1 - y))
        shot_type, motion, action = rng.choice(SHOT_TYPES), rng.choice(MOTIONS), rng.choice([*ACTIONS, *ACTING.values()])
        shot = make_shot(shot_type, motion, region.model_dump(), action, index=1 + i % 5)
        W, H = rng.choice([(512, 320), (192, 128), (256, 256), (64, 64), (96, 64), (64, 128)])
        check_layouts(plan_shot(shot, rng.randint(1, 40), W, H, rng.uniform(0.3, 2.5), seed=i), shot_type, W, H)


def test_close_up_is_cut_only_at_the_bottom_and_shows_the_head():
    for region in NAMED_REGIONS:
        lay = shot_layout(make_shot("close-up", "zoom in", region), 9, 10, 512, 320, 0.8)
        _, y0, _, y1 = lay.subject_box
        assert y1 > 320, "a close-up is bigger than the frame: the body runs off the bottom"
        assert 0 <= y0 < 0.15 * 320, "the head is near the top of the frame"


def test_shot_layout_is_one_frame_of_the_plan_and_checks_its_index():
    shot = make_shot("medium", "pan left", "right")
    plan = plan_shot(shot, 12, 256, 160, 0.8)
    assert shot_layout(shot, 5, 12, 256, 160, 0.8).subject_box == plan[5].subject_box
    assert plan[0].subject_box != plan[-1].subject_box, "the pan moves the subject on screen"
    with pytest.raises(ValueError, match="outside"):
        shot_layout(shot, 12, 12, 256, 160, 0.8)


# ---- rendered frames -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pip(pip_png):
    return SubjectSprites.from_reference(load_reference(pip_png))


def mask_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("shot_type", SHOT_TYPES)
@pytest.mark.parametrize("motion", MOTIONS)
def test_rendered_subject_matches_layout_and_subtitles_stay_off_the_face(pip, shot_type, motion):
    W, H = 192, 128
    region = ["left", "right", "bottom left", "bottom right", "full", "center", "left"][MOTIONS.index(motion)]
    plain_pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=4, subtitles=False))
    titled_pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=4))
    for acting, action in [("hop", "runs and jumps"), *ACTING.items()]:
        shot = make_shot(shot_type, motion, region, action)
        plain, titled = plain_pipe(shot, pip, seed=1), titled_pipe(shot, pip, seed=1)
        assert plain.layouts is not None and plain.masks is not None
        sub = plain.layouts[0].subtitle_box
        for t, (mask, lay) in enumerate(zip(plain.masks, plain.layouts)):
            where = (acting, t)
            bx0, by0, bx1, by1 = mask_box(mask)
            _, y0, _, y1 = lay.subject_box
            ex0, ey0, ex1, ey1 = lay.extent
            # The sprite's alpha lies inside the layout's (turned) box: the picture is the layout.
            assert ex0 - 1 <= bx0 and bx1 <= ex1 + 1 and ey0 - 1 <= by0 and by1 <= ey1 + 1, (where, mask_box(mask), lay.extent)
            if not lay.angle:
                assert by0 <= y0 + 0.06 * (y1 - y0), (where, "the subject's head is at the top of its box")
            # Nothing of it is cut by the frame's edges (close-ups: the bottom edge only).
            assert bx0 > 0 and by0 > 0 and bx1 < W, where
            if lay.water_line is not None:
                assert by1 <= lay.water_line + 1, (where, "the body is cut at the water line")
            elif shot_type == "close-up" and ey1 >= H:
                assert by1 == H or lay.angle, where  # a turned box's lowest corner may be empty
            else:
                assert by1 < H, where
                if not lay.angle:
                    assert abs(by1 - y1) <= 0.06 * (y1 - y0), (where, "feet at the box's bottom")
            # The burnt-in subtitle is inside its band and off the subject's face.
            text = np.abs(titled.frames[t].astype(int) - plain.frames[t].astype(int)).max(axis=2) > 40
            assert text.any(), "the narration is drawn"
            tx0, ty0, tx1, ty1 = mask_box(text)
            assert sub[0] <= tx0 and sub[1] <= ty0 and tx1 <= sub[2] and ty1 <= sub[3], ((tx0, ty0, tx1, ty1), sub)
            fx0, fy0, fx1, fy1 = (round(v) for v in lay.face_box)
            face = mask[max(0, fy0):fy1, max(0, fx0):fx1]
            assert face.any(), (where, "the face is seen")
            assert not text[max(0, fy0):fy1, max(0, fx0):fx1].any(), (where, "subtitle over the face")


def test_close_up_subtitles_stay_off_pips_real_face(pip):
    """Pip's face reaches 57% down its cut-out (ears on top, the scarf below the chin): in close-ups the
    subtitles covered its mouth and chin while the layout kept only the top third clear."""
    alpha = pip.sprites[0][..., 3] > 127
    rows = np.flatnonzero(alpha.any(axis=1))
    chin = 0.57  # the scarf's top edge, as a fraction of the cut-out's height
    assert 0.2 < alpha[rows[0] + int(chin * len(rows)) - 4].mean() and FACE_DEPTH >= chin
    W, H = 192, 128
    plain_pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=4, subtitles=False))
    titled_pipe = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=4))
    for camera in MOTIONS:
        shot = make_shot("close-up", camera, "center", "looks at the sea")
        plain, titled = plain_pipe(shot, pip, seed=1), titled_pipe(shot, pip, seed=1)
        for t, (mask, lay) in enumerate(zip(plain.masks, plain.layouts)):
            _, y0, _, y1 = lay.subject_box
            chin_row = math.ceil(y0 + chin * (y1 - y0))
            text = np.abs(titled.frames[t].astype(int) - plain.frames[t].astype(int)).max(axis=2) > 40
            assert not (text & mask)[:chin_row].any(), (camera, t, "subtitle over Pip's face")


def test_storyboard_is_the_clips_first_frame(pip):
    shot = make_shot("wide", "zoom out", "bottom right")
    pipe = AnimaticPipeline(AnimaticConfig(width=192, height=128, fps=4, subtitles=False))
    board, clip = pipe(shot, pip, seed=2, num_frames=1), pipe(shot, pip, seed=2)
    assert len(board.frames) == 1 and len(clip.frames) == 8
    assert np.array_equal(board.storyboard_mask, clip.masks[0])
    assert np.array_equal(board.storyboard, clip.frames[0])
