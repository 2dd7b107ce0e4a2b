"""The character acts the shot's action: each motion read from the rendered masks (where the subject is
seen in every frame), the verb table in any word form, and the storyboard picture as the clip's first
frame whatever the motion."""

import itertools

import numpy as np
import pytest

from storyagent.media import load_reference
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.models.animatic.motion import MOTIONS, act, base_verb, motion_of
from storyagent.models.animatic.pipeline import retime
from storyagent.schemas import Shot

W, H, FPS = 256, 160, 8
ACTING = {"hop": "jumps high", "fall": "trips and falls", "swim": "tries to swim", "walk": "strolls along",
          "run": "races home", "sleep": "curls up and sleeps", "turn": "turns around", "wave": "waves hello",
          "fly": "flies over the trees", "climb": "climbs the rock", "glide": "stops, worried"}


@pytest.fixture(scope="module")
def pip(pip_png):
    return SubjectSprites.from_reference(load_reference(pip_png))


@pytest.fixture(scope="module")
def pipe():
    return AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS, subtitles=False))


def make_shot(action: str, *, shot_type: str = "medium", camera: str = "static", background: str = "a sandy beach at noon",
              duration: float = 2.0, index: int = 1) -> Shot:
    return Shot(index=index, narration=f"Pip {action}.", description="d", subject_action=action, subject_region="center",
                background=background, shot_type=shot_type, camera_motion=camera, duration=duration)


def box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def lean(mask: np.ndarray) -> float:
    """How far the top half's middle is right of the bottom half's (pixels): a body leaning right > 0."""
    _, y0, _, y1 = box(mask)
    mid = (y0 + y1) // 2
    return float(np.nonzero(mask[y0:mid])[1].mean() - np.nonzero(mask[mid:y1])[1].mean())


# ---- the verb table ---------------------------------------------------------------------------

@pytest.mark.parametrize("action,motion", [
    ("swims", "swim"), ("swimming across the lake", "swim"), ("swam home", "swim"), ("tries to swim", "swim"),
    ("takes a deep breath and swims", "swim"), ("learns to paddle", "swim"), ("dives in", "swim"),
    ("falls and gets up", "fall"), ("trips over a root", "fall"), ("slipped on the ice", "fall"), ("fell", "fall"),
    ("jumps high", "hop"), ("hopping about", "hop"), ("leapt", "hop"), ("sets off with a happy hop", "hop"),
    ("runs and jumps", "hop"), ("strolls along", "walk"), ("marched", "walk"), ("wanders along", "walk"),
    ("hurries along", "run"), ("races the wind", "run"), ("is chasing a ball", "run"), ("ran", "run"),
    ("sleeps", "sleep"), ("takes a nap", "sleep"), ("curls up, sleepy and happy", "sleep"), ("falls asleep", "sleep"),
    ("sits down and rests", "sleep"), ("lies down", "sleep"),
    ("turns around", "turn"), ("spun", "turn"), ("looks around, puzzled", "turn"),
    ("waves goodbye", "wave"), ("greets a friend", "wave"), ("cheering", "wave"),
    ("flies over the trees", "fly"), ("floats in the air", "fly"), ("flew away", "fly"),
    ("climbs the tree", "climb"), ("climbing", "climb"),
    # Not an action of the table: a negated verb, a noun after "the", no verb at all.
    ("does not swim", "glide"), ("can't swim yet", "glide"), ("watches the waves", "glide"),
    ("stops, worried", "glide"), ("discovers the answer", "glide"), ("", "glide"),
])
def test_actions_map_to_motions(action, motion):
    assert motion_of(action) == motion


def test_word_forms_come_back_to_their_verb():
    for verb, forms in {"swim": ("swims", "swimming", "swam", "swum"), "hop": ("hops", "hopped", "hopping"),
                        "hurry": ("hurries", "hurried", "hurrying"), "dive": ("dives", "dived", "diving", "dove"),
                        "lie": ("lies", "lying", "lay")}.items():
        assert all(base_verb(f) == verb for f in forms), verb
    assert base_verb("table") is None and base_verb("swimmer") is None


def test_an_unknown_motion_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="unknown motion 'dance'; use one of hop"):
        act("dances", 8, 8.0, 0, motion="dance")


# ---- each motion, read from the rendered masks ------------------------------------------------

def render(pipe, pip, action: str, **kw):
    r = pipe(make_shot(action, **kw), pip)
    assert r.masks is not None and r.layouts is not None and all(m.any() for m in r.masks)
    return r


def test_hop_rises_above_its_start_and_comes_back_squashing_and_stretching(pipe, pip):
    r = render(pipe, pip, ACTING["hop"])
    boxes = [box(m) for m in r.masks]
    tops, heights = [b[1] for b in boxes], [b[3] - b[1] for b in boxes]
    top = int(np.argmin(tops))
    assert tops[top] < tops[0] - 0.3 * heights[0], "the hop's top is well above where it started"
    assert any(t >= tops[0] - 2 for t in tops[top + 1:]), "and it comes back down"
    grounded = [b[3] >= boxes[0][3] - 1 for b in boxes]  # feet on the starting line
    assert any(g and h < 0.95 * heights[0] for g, h in zip(grounded, heights)), "squashed on the ground"
    assert any(not g and h > 1.04 * heights[0] for g, h in zip(grounded, heights)), "stretched in the air"


def test_fall_tips_over_and_ends_lower(pipe, pip):
    r = render(pipe, pip, ACTING["fall"])
    (x0, y0, x1, y1), (a0, b0, a1, b1) = box(r.masks[0]), box(r.masks[-1])
    assert y1 - y0 > x1 - x0 and a1 - a0 > b1 - b0, "standing, then lying: width and height swap"
    assert b0 > y0 + 0.15 * (y1 - y0), "its top ends lower"
    centre = [np.nonzero(m)[0].mean() for m in (r.masks[0], r.masks[-1])]
    assert centre[1] > centre[0] + 0.05 * (y1 - y0) and b1 >= y1 - 2, "it lies on the ground it stood on"
    assert abs(r.layouts[-1].angle) > 80 and r.layouts[0].angle == 0


def test_swim_is_cut_at_the_water_line_under_a_drawn_water_band(pipe, pip):
    shot = {"background": "a lake in the jungle at noon"}
    swim, still = render(pipe, pip, ACTING["swim"], **shot), render(pipe, pip, ACTING["glide"], **shot)
    tops = []
    for frame, mask, lay, dry in zip(swim.frames, swim.masks, swim.layouts, still.frames):
        assert lay.water_line is not None
        line = int(np.ceil(lay.water_line))
        _, y0, _, y1 = box(mask)
        assert not mask[line:].any() and y1 >= line - 2, "seen down to the water line, not below it"
        # Below the line the picture is water (bluer than the dry scene), the body hidden under it.
        water, ground = frame[line + 3:].astype(int), dry[line + 3:].astype(int)
        assert (water[..., 2] - water[..., 0]).mean() > (ground[..., 2] - ground[..., 0]).mean() + 20
        tops.append(y0)
    assert max(tops) - min(tops) >= 2, "it bobs"
    assert all(lay.water_line is None for lay in still.layouts)


def test_walk_travels_with_a_bounce_and_run_goes_further_leaning(pipe, pip):
    walk, run = render(pipe, pip, ACTING["walk"]), render(pipe, pip, ACTING["run"])
    travel = {}
    for name, r in (("walk", walk), ("run", run)):
        centres = [(box(m)[0] + box(m)[2]) / 2 for m in r.masks]
        tops = [box(m)[1] for m in r.masks]
        steps = np.diff(centres)
        assert (np.all(steps >= -1) or np.all(steps <= 1)) and abs(centres[-1] - centres[0]) > 0.08 * W, name
        ups = np.diff(tops)
        assert (ups < 0).any() and (ups > 0).any(), f"{name}: the top bobs up and down (a bounce per step)"
        travel[name] = centres[-1] - centres[0]
    assert np.sign(travel["walk"]) == np.sign(travel["run"]), "one seed, one direction"
    assert abs(travel["run"]) > 1.5 * abs(travel["walk"]), "in the same time a run goes further"
    # Leaning forward: its top is further ahead of its feet than the walker's (same sprite, same side).
    assert all(np.sign(travel["run"]) * (lean(m) - lean(w)) > 3 for m, w in zip(run.masks, walk.masks))


def test_sleep_lies_down_and_breathes(pipe, pip):
    r = render(pipe, pip, ACTING["sleep"])
    boxes = [box(m) for m in r.masks]
    assert all(b[2] - b[0] > 1.15 * (b[3] - b[1]) for b in boxes), "lying: wider than tall in every frame"
    thickness = [b[3] - b[1] for b in boxes]
    assert max(thickness) - min(thickness) >= 2, "the body swells and settles"


def test_turn_flips_the_sprite_mid_clip(pipe, pip):
    r = render(pipe, pip, ACTING["turn"])
    first, last = (m[box(m)[1]:box(m)[3], box(m)[0]:box(m)[2]] for m in (r.masks[0], r.masks[-1]))
    assert first.shape == last.shape

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    assert iou(first[:, ::-1], last) > 0.95 and iou(first, last) < 0.85, "the last frame is the first mirrored"
    flips = [lay.flipped for lay in r.layouts]
    assert flips[0] is False and flips[-1] is True and flips.index(True) in range(len(flips) // 3, 2 * len(flips) // 3)
    widths = [box(m)[2] - box(m)[0] for m in r.masks]
    assert min(widths) < 0.5 * widths[0], "edge-on as it turns"


def test_wave_rocks_both_ways(pipe, pip):
    r = render(pipe, pip, ACTING["wave"])
    angles = [lay.angle for lay in r.layouts]
    assert min(angles) < -3 and max(angles) > 3
    tilt = [lean(m) - lean(r.masks[0]) for m in r.masks]
    assert min(tilt) < -2 and max(tilt) > 2, "the picture leans left and right of its resting pose"


@pytest.mark.parametrize("motion", ["fly", "climb"])
def test_fly_and_climb_rise(pipe, pip, motion):
    r = render(pipe, pip, ACTING[motion])
    (_, y0, _, y1), (_, b0, _, _) = box(r.masks[0]), box(r.masks[-1])
    assert b0 < y0 - 0.3 * (y1 - y0)


def test_an_action_without_a_motion_glides_as_before(pip):
    acting = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS, subtitles=False))
    gliding = AnimaticPipeline(AnimaticConfig(width=W, height=H, fps=FPS, subtitles=False, acting=False))
    for action in ("stops, worried", "discovers the answer"):
        a, b = acting(make_shot(action), pip), gliding(make_shot(action), pip)
        assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
        assert all(lay.angle == 0 and lay.scale_y == 1 and lay.water_line is None for lay in a.layouts)
        boxes = [box(m) for m in a.masks]
        assert max(abs(p - q) for b in boxes for p, q in zip(b, boxes[0])) <= 0.04 * W, "a small drift, nothing more"
    hop, glide = acting(make_shot("jumps high"), pip), gliding(make_shot("jumps high"), pip)
    assert not all(np.array_equal(m, n) for m, n in zip(hop.masks, glide.masks)), "acting off: every action glides"


# ---- the storyboard picture and a new take ----------------------------------------------------

@pytest.mark.parametrize("motion", sorted(ACTING))
def test_storyboard_picture_is_the_clips_first_frame_for_every_motion(pip, motion):
    pipe = AnimaticPipeline(AnimaticConfig(width=192, height=128, fps=4))
    for shot_type, camera in itertools.product(("wide", "medium", "close-up"), ("static", "zoom in", "pan left")):
        background = "a lake at dawn" if motion == "swim" else "a flowery meadow at dawn"
        shot = make_shot(ACTING[motion], shot_type=shot_type, camera=camera, background=background)
        board, clip = pipe(shot, pip, seed=4, num_frames=1), pipe(shot, pip, seed=4)
        assert len(board.frames) == 1 and len(clip.frames) == 8
        assert np.array_equal(board.storyboard, clip.storyboard) and np.array_equal(board.storyboard_mask, clip.masks[0])
        take = pipe(shot, pip, seed=4, motion_seed=11)
        assert np.array_equal(take.storyboard, board.storyboard) and np.array_equal(take.masks[0], board.storyboard_mask)


@pytest.mark.parametrize("motion", sorted(ACTING))
def test_a_new_take_keeps_the_motions_pose(pipe, pip, motion):
    """A clip's new take runs the same path at another tempo: the first and last frames stay, every
    frame between is a pose of the path (turned, squashed, cut at the water as the motion says)."""
    r = pipe(make_shot(ACTING[motion]), pip, seed=2)
    layouts = r.layouts
    for seed in (1, 2):
        take = retime(layouts, seed)
        assert take[0] is layouts[0] and take[-1].subject_box == layouts[-1].subject_box
        assert take[-1].angle == pytest.approx(layouts[-1].angle) and take[-1].flipped == layouts[-1].flipped
        angles = [lay.angle for lay in layouts]
        for lay in take:
            assert min(angles) - 1e-6 <= lay.angle <= max(angles) + 1e-6
            assert (lay.water_line is None) == (layouts[0].water_line is None)
    retaken = pipe(make_shot(ACTING[motion]), pip, seed=2, motion_seed=5)
    assert np.array_equal(retaken.frames[0], r.frames[0])
    for mask, lay in zip(retaken.masks, retaken.layouts):
        assert mask.any()
        if lay.water_line is not None:
            assert not mask[int(np.ceil(lay.water_line)):].any()


def test_every_motion_is_in_the_table_or_the_fallback():
    assert set(ACTING) == set(MOTIONS)
    assert {motion_of(a) for a in ACTING.values()} == set(MOTIONS)
