"""Step 5 of the storyboard (issue 26, item 9): the redrawn subject is pasted through LangSAM's mask of it
*inside AnyDoor's paste box*; when nothing of that mask lies inside the box (LangSAM's best box is
elsewhere in the picture, where AnyDoor changed nothing, or nothing is found), AnyDoor's own blend is
kept and the result says so. For one subject and for each character of a cast.

LangSAM is replaced by a stand-in that answers with the masks the test chooses (which box LangSAM
prefers is exactly what cannot be steered in tiny random weights); AnyDoor's output is drawn by hand:
the removal's picture with its paste box regenerated.
"""

from __future__ import annotations

import numpy as np
import pytest

from storyagent.media import Box as MediaBox
from storyagent.models.langsam import SubjectMask
from storyagent.models.langsam.detector import Detections
from storyagent.models.removal import RemovalResult
from storyagent.models.storyboard import (
    PASTE_BLEND,
    PASTE_MASK,
    CharacterResult,
    ShotResult,
    StoryboardPipeline,
)
from storyagent.models.storyboard.pipeline import StoryboardSubject, box_mask

SIDE = 64
BOX = (16, 48, 16, 48)  # AnyDoor's paste box (y1, y2, x1, x2)
RED = (220, 30, 30)


def region(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def found(mask: np.ndarray | None, reason: str = "") -> SubjectMask:
    if mask is None:
        return SubjectMask(found=False, mask=np.zeros((SIDE, SIDE), bool), reason=reason or "no 'fox' found")
    ys, xs = np.nonzero(mask)
    return SubjectMask(found=True, mask=mask, box=(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), score=0.9)


class StandInLangSAM:
    """Answers every question with the next of `answers` (one per picture asked about, in order)."""

    def __init__(self, *answers: SubjectMask) -> None:
        self.answers = list(answers)
        self.current: SubjectMask | None = None

    def __call__(self, images, word):
        return [self.answers.pop(0) for _ in images]

    def detector(self, images, prompt):  # a cast's find: the box, then `subject_mask` on it
        self.current = self.answers.pop(0)
        if not self.current.found:
            return [Detections(np.zeros((0, 4)), np.zeros(0), [])]
        return [Detections(np.array([self.current.box], float), np.array([0.9]), ["fox"])]

    def subject_mask(self, image, detections, prompt):
        return self.current


def pipeline(langsam) -> StoryboardPipeline:
    return StoryboardPipeline(story=None, langsam=langsam, remover=None, anydoor=None, device="cpu")


def redrawn_scene(subject: np.ndarray, box=BOX) -> tuple[np.ndarray, np.ndarray]:
    """(the removal's picture, AnyDoor's output): grey 100 refilled background; AnyDoor regenerated its
    paste box (grey 110) with the red subject drawn in it."""
    removed = np.full((SIDE, SIDE, 3), 100, np.uint8)
    out = removed.copy()
    y1, y2, x1, x2 = box
    out[y1:y2, x1:x2] = 110
    out[subject] = RED
    return removed, out


def shot_with(removed: np.ndarray, redrawn: np.ndarray, hole: np.ndarray) -> ShotResult:
    return ShotResult(position=0, prompt="Pip, a fox", seed=0, initial=removed.copy(), found=found(hole),
                      mask=hole, removal=RemovalResult(removed, hole, hole, MediaBox(20, 44, 20, 44), "opencv"),
                      redrawn=redrawn, paste_box=BOX)


HOLE = region(20, 44, 20, 44)
SUBJECT = region(24, 40, 26, 38)  # where AnyDoor drew the fox, inside its paste box


def test_the_redrawn_subject_inside_the_paste_box_is_pasted_through_its_mask():
    removed, redrawn = redrawn_scene(SUBJECT)
    shot = shot_with(removed, redrawn, HOLE)
    picture, mask, how, note = pipeline(StandInLangSAM(found(SUBJECT))).paste(shot, "fox", False)
    assert how == PASTE_MASK and note == ""
    np.testing.assert_array_equal(mask, SUBJECT)
    np.testing.assert_array_equal(picture[mask], redrawn[mask])
    np.testing.assert_array_equal(picture[~mask], removed[~mask])  # AnyDoor's regenerated background left out


def test_a_paste_box_that_misses_the_mask_falls_back_to_anydoors_blend_and_says_so():
    removed, redrawn = redrawn_scene(SUBJECT)
    elsewhere = region(2, 12, 50, 62)  # LangSAM's best 'fox' in the picture, far from the paste box
    assert not (elsewhere & box_mask(BOX, (SIDE, SIDE))).any()
    # What used to happen: pasting that mask copies the removal's own pixels; the fox is lost, silently.
    lost = np.where(elsewhere[..., None], redrawn, removed)
    assert not (lost == RED).all(axis=-1).any()

    shot = shot_with(removed, redrawn, HOLE)
    picture, mask, how, note = pipeline(StandInLangSAM(found(elsewhere))).paste(shot, "fox", False)
    assert how == PASTE_BLEND and "outside AnyDoor's paste box" in note and "own blend" in note
    np.testing.assert_array_equal(picture, redrawn)  # AnyDoor's own blend: its output as it is
    assert (picture[SUBJECT] == RED).all(), "the redraw reaches the storyboard"
    np.testing.assert_array_equal(mask, HOLE & box_mask(BOX, (SIDE, SIDE)))


def test_a_mask_reaching_past_the_paste_box_is_cut_at_the_box():
    removed, redrawn = redrawn_scene(SUBJECT)
    reaching = SUBJECT | region(24, 40, 38, 60)  # the fox and something beside it outside the box
    shot = shot_with(removed, redrawn, HOLE)
    picture, mask, how, _ = pipeline(StandInLangSAM(found(reaching))).paste(shot, "fox", False)
    assert how == PASTE_MASK
    np.testing.assert_array_equal(mask, reaching & box_mask(BOX, (SIDE, SIDE)))
    np.testing.assert_array_equal(picture[~mask], removed[~mask])


def test_a_redrawn_subject_not_found_keeps_anydoors_blend():
    removed, redrawn = redrawn_scene(SUBJECT)
    shot = shot_with(removed, redrawn, HOLE)
    picture, _, how, note = pipeline(StandInLangSAM(found(None))).paste(shot, "fox", False)
    assert how == PASTE_BLEND and "was not found" in note and "no 'fox' found" in note
    np.testing.assert_array_equal(picture, redrawn)


@pytest.mark.parametrize("a_misses", [True, False])
def test_each_character_of_a_cast_falls_back_on_its_own(a_misses):
    """Two characters, each redrawn by its own AnyDoor call with its own paste box: the one whose LangSAM
    mask misses its box keeps AnyDoor's blend inside its own hole; the other is pasted through its mask."""
    hole_a, hole_b = region(8, 30, 4, 28), region(34, 60, 36, 60)
    box_a, box_b = (4, 34, 0, 32), (30, 64, 32, 64)
    fox_a, fox_b = region(12, 26, 8, 24), region(38, 56, 40, 56)
    removed, redrawn_a = redrawn_scene(fox_a, box_a)
    _, redrawn_b = redrawn_scene(fox_b, box_b)
    shot = ShotResult(position=0, prompt="", seed=0, initial=removed.copy(), found=found(hole_a | hole_b),
                      mask=hole_a | hole_b, removal=RemovalResult(removed, hole_a | hole_b, hole_a | hole_b,
                                                                  MediaBox(8, 60, 4, 60), "opencv"))
    shot.characters = [CharacterResult(0, found(hole_a), hole=hole_a, redrawn=redrawn_a, paste_box=box_a),
                       CharacterResult(1, found(hole_b), hole=hole_b, redrawn=redrawn_b, paste_box=box_b)]
    cast = [StoryboardSubject("Pip, a fox", "fox", name="Pip"), StoryboardSubject("Bo, a fox", "fox", name="Bo")]
    # LangSAM's answer for Pip's redraw: its fox, or one in Bo's corner (outside Pip's hole and paste box).
    answer_a = found(region(40, 52, 44, 54)) if a_misses else found(fox_a)
    picture, union, note = pipeline(StandInLangSAM(answer_a, found(fox_b))).paste_cast(shot, cast, False)
    a, b = shot.characters
    assert b.paste == PASTE_MASK and np.array_equal(b.mask, fox_b)
    if a_misses:
        inside_a = hole_a & box_mask(box_a, (SIDE, SIDE))
        assert a.paste == PASTE_BLEND and np.array_equal(a.mask, inside_a)
        assert note.startswith("Pip: the redrawn character was found only outside") and "own blend" in note
        assert (picture[fox_a] == RED).all(), "Pip's redraw reaches the storyboard"
    else:
        assert a.paste == PASTE_MASK and np.array_equal(a.mask, fox_a) and note == ""
    assert (picture[fox_b] == RED).all() and not (a.mask & b.mask).any()
    np.testing.assert_array_equal(picture[~union], removed[~union])
