"""`eval film` on a film with a cast: subject consistency per character (each character's crops inside its
own mask against its own references, and against the others'), inter-shot consistency per character, and
the characters a shot names but does not show. The run folders here are made by hand (two sprites
composited and moved, encoded as H.264), so the scores are tested apart from any renderer."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from storyagent.commands.eval import app as eval_app
from storyagent.eval.consistency import LightingRobustFeatures
from storyagent.eval.protocols import EvalModels, cast_references, evaluate_film, write_film_report
from storyagent.fileio import slugify
from storyagent.media import load_reference, write_video
from storyagent.schemas import Shot, ShotCharacter, StoryScript
from tests.support.creature import write_creature_png
from tests.support.paths import PIP

FB = LightingRobustFeatures.name
W, H, N_FRAMES = 256, 160, 8


def sprite(path) -> tuple[np.ndarray, np.ndarray]:
    """The character cut out of its reference: (RGB crop, mask crop)."""
    ref = load_reference(path)
    frame, mask = ref.frames[0], ref.masks[0]
    ys, xs = np.nonzero(mask)
    return frame[ys.min():ys.max() + 1, xs.min():xs.max() + 1], mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def background(seed: int) -> np.ndarray:
    """A sky over a meadow with a little texture, different per shot."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (150 + 10 * seed % 60, 190, 230)
    img[H * 3 // 5:] = (90, 150 - 8 * seed, 70)
    return np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)


def paste(frame: np.ndarray, art: tuple[np.ndarray, np.ndarray], x: int, bottom: int, height: int) -> np.ndarray:
    """Draw a sprite `height` pixels tall with its feet at (x, bottom); returns the pixels it covers."""
    rgb, mask = art
    width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    full = np.zeros((H, W), bool)
    full[bottom - height:bottom, x:x + width] = mask
    frame[full] = rgb[mask]
    return full


def make_cast_run(tmp_path, placements: dict[int, list[tuple[str, int, int]]], *, named: dict[int, list[str]] | None = None,
                  swap_masks: bool = False, write_masks: bool = True) -> tuple:
    """A finished two-character run folder: Pip (the lead) and Bo. `placements`: per shot, back to front,
    (character, x, bottom) of each character drawn; `named`: who the story names per shot (default: who is
    drawn). Each character walks 3 px a frame. `swap_masks` files each character's mask under the other's
    name (a renderer that mixed them up)."""
    run = tmp_path / "run"
    bo_png = write_creature_png(tmp_path / "bo.png")
    arts = {"Pip": sprite(PIP), "Bo": sprite(bo_png)}
    for folder, name in (("subject", "Pip"), ("cast/bo", "Bo")):
        (run / folder).mkdir(parents=True)
        ref = load_reference(PIP if name == "Pip" else bo_png)
        Image.fromarray(ref.frames[0]).save(run / folder / "frame_01.png")
        Image.fromarray(ref.masks[0].astype(np.uint8) * 255).save(run / folder / "frame_01_mask.png")
    (run / "storyboard").mkdir()
    (run / "shots").mkdir()
    artifacts, shots = {}, []
    for index, drawn in placements.items():
        frames, masks_per_frame = [], []
        for t in range(N_FRAMES):
            frame = background(index)
            masks: dict[str, np.ndarray] = {}
            for who, x, bottom in drawn:
                full = paste(frame, arts[who], x + 3 * t, bottom, 90)
                for other in masks.values():
                    other &= ~full  # a nearer character hides these pixels of the ones behind it
                masks[who] = full
            frames.append(frame)
            masks_per_frame.append(masks)
        write_video(run / "shots" / f"shot_{index:02d}.mp4", frames, 4)
        Image.fromarray(frames[0]).save(run / "storyboard" / f"shot_{index:02d}.png")
        union = np.zeros((H, W), bool)
        recorded = {}
        for who, mask in masks_per_frame[0].items():
            union |= mask
            filed = {"Pip": "Bo", "Bo": "Pip"}[who] if swap_masks else who
            rel = f"storyboard/shot_{index:02d}_mask_{slugify(filed, 30)}.png"
            if write_masks:
                Image.fromarray(mask.astype(np.uint8) * 255).save(run / rel)
                recorded[filed] = rel
        Image.fromarray(union.astype(np.uint8) * 255).save(run / "storyboard" / f"shot_{index:02d}_mask.png")
        artifacts[f"storyboard/shot_{index:02d}"] = {
            "kind": "storyboard_frame", "path": f"storyboard/shot_{index:02d}.png", "shot": index,
            "mask_path": f"storyboard/shot_{index:02d}_mask.png", "input_hash": "x",
            "meta": {"seed": index, **({"character_masks": recorded} if recorded else {})}}
        who_named = (named or {}).get(index, [who for who, _, _ in drawn])
        shots.append(Shot(index=index, narration="They play.", description="two friends in a meadow",
                          subject_action="plays", subject_region="left", background="a meadow at noon",
                          shot_type="wide", camera_motion="static", duration=2.0,
                          characters=[ShotCharacter(name=n, action="walks", region=r)
                                      for n, r in zip(who_named, ("left", "right"))]))
    (run / "story.json").write_text(StoryScript(title="Pip and Bo", logline="Two friends.", shots=shots)
                                    .model_dump_json(indent=2))
    (run / "manifest.json").write_text(json.dumps({
        "inputs": {"name": "Pip", "subject": str(PIP), "supporting": [{"name": "Bo", "media": str(bo_png)}]},
        "artifacts": artifacts}))
    return run, bo_png


TWO_SHOTS = {1: [("Pip", 20, 140), ("Bo", 140, 150)],
             2: [("Bo", 30, 140), ("Pip", 90, 150)],  # Pip, nearer, covers a strip of Bo
             3: [("Pip", 80, 150)]}


@pytest.fixture(scope="module")
def cast_eval(tmp_path_factory):
    run, _ = make_cast_run(tmp_path_factory.mktemp("cast"), TWO_SHOTS)
    return run, evaluate_film(run, EvalModels(), show_progress=False)


def test_cast_references_are_each_characters_own(cast_eval):
    run, _ = cast_eval
    refs = cast_references(run)
    assert list(refs) == ["Pip", "Bo"]
    assert refs["Pip"].source == str(run / "subject") and refs["Bo"].source == str(run / "cast" / "bo")
    assert refs["Pip"].frames[0].mean(axis=(0, 1))[0] > refs["Bo"].frames[0].mean(axis=(0, 1))[0]


def test_each_character_matches_its_own_references_better_than_the_others(cast_eval):
    _, result = cast_eval
    assert result.cast == ["Pip", "Bo"]
    shown = {(c.shot, c.name) for c in result.characters}
    assert shown == {(1, "Pip"), (1, "Bo"), (2, "Pip"), (2, "Bo"), (3, "Pip")}
    for seen in result.characters:
        assert not seen.lost and len(seen.mask_pixels) == N_FRAMES and min(seen.mask_pixels) > 200, seen
        other = {"Pip": "Bo", "Bo": "Pip"}[seen.name]
        assert seen.others(FB) == {other: seen.against(FB, other)}
        # Own clearly above cross: the score tells the characters apart in every shot that shows them.
        assert seen.own(FB) > seen.against(FB, other) + 0.1, (seen.shot, seen.name, seen.own(FB), seen.others(FB))
        assert seen.margin(FB) == pytest.approx(seen.own(FB) - seen.against(FB, other))
    rows = {r["Shot"]: r for r in result.shots}
    assert rows[3][f"Subject Pip ({FB})"] > 0.5 and f"Subject Bo ({FB})" not in rows[3]
    assert f"Subject ({FB})" not in rows[1]  # a cast has no one "subject" column
    # Inter-shot per character, over the shots that show it.
    assert 0.5 < result.summary[f"Inter-shot Pip ({FB})"] <= 1.0001
    assert 0.5 < result.summary[f"Inter-shot Bo ({FB})"] <= 1.0001
    assert f"Inter-shot ({FB})" not in result.summary


def test_swapped_masks_score_below_the_cross_score(tmp_path):
    """A storyboard that files Pip's pixels as Bo's: each 'own' score drops below its cross score."""
    run, _ = make_cast_run(tmp_path, {1: TWO_SHOTS[1]}, swap_masks=True)
    result = evaluate_film(run, EvalModels(), show_progress=False)
    assert len(result.characters) == 2
    for seen in result.characters:
        assert seen.margin(FB) < -0.1, (seen.name, seen.own(FB), seen.others(FB))


def test_a_named_character_the_storyboard_does_not_show_is_lost(tmp_path):
    run, _ = make_cast_run(tmp_path, {1: [("Pip", 60, 150)]}, named={1: ["Pip", "Bo"]})
    result = evaluate_film(run, EvalModels(), show_progress=False)
    lost = [c for c in result.characters if c.lost]
    assert [(c.shot, c.name, c.mask_pixels) for c in lost] == [(1, "Bo", [])]
    assert "Shot 1 names Bo, but its storyboard has no mask of Bo." in result.notes
    assert not next(c for c in result.characters if c.name == "Pip").lost


def test_a_storyboard_without_character_masks_gives_a_lone_character_the_union_mask(tmp_path):
    """A cast run drawn by a renderer that wrote only the union mask: a shot of one character still scores."""
    run, _ = make_cast_run(tmp_path, {1: [("Bo", 60, 150)]}, write_masks=False)
    result = evaluate_film(run, EvalModels(), show_progress=False)
    (bo,) = result.characters
    assert bo.name == "Bo" and not bo.lost and bo.margin(FB) > 0.1


def test_cast_report_names_rows_and_columns_by_character(tmp_path, cast_eval):
    _, result = cast_eval
    written = write_film_report(result, tmp_path / "rep")
    names = {p.name for p in written}
    assert {"film_metrics.md", "film_metrics.csv", "cast_consistency.md", "cast_consistency.csv",
            "subject_per_shot_fallback.png", "subject_per_frame_fallback.png"} <= names
    header = (tmp_path / "rep" / "film_metrics.md").read_text().splitlines()[2]
    for col in (f"Subject Pip ({FB})↑", f"Subject Bo ({FB})↑"):
        assert col in header
    film = list(csv.DictReader((tmp_path / "rep" / "film_metrics.csv").open()))
    assert film[2][f"Subject Bo ({FB})"] == ""  # shot 3 does not show Bo
    assert float(film[-1][f"Inter-shot Bo ({FB})"]) > 0.5
    rows = list(csv.DictReader((tmp_path / "rep" / "cast_consistency.csv").open()))
    assert [(r["Shot"], r["Character"]) for r in rows] == [("1", "Pip"), ("1", "Bo"), ("2", "Bo"), ("2", "Pip"),
                                                           ("3", "Pip"), ("mean", "Pip"), ("mean", "Bo")]
    for r in rows:
        own, other = (float(r[f"vs {n} ({FB})"]) for n in (r["Character"], {"Pip": "Bo", "Bo": "Pip"}[r["Character"]]))
        assert own > other and float(r[f"Margin ({FB})"]) == pytest.approx(own - other)
        assert float(r["In frames"]) == 1.0
    with Image.open(tmp_path / "rep" / "subject_per_shot_fallback.png") as img:
        colours = {c for _, c in img.convert("RGB").getcolors(1 << 16)}
        assert (31, 119, 180) in colours and (255, 127, 14) in colours  # a bar series per character


def test_eval_film_command_on_a_cast_run(tmp_path):
    run, _ = make_cast_run(tmp_path, {1: TWO_SHOTS[1]})
    result = CliRunner().invoke(eval_app, ["film", str(run), "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    assert "Pip" in result.output and "Bo" in result.output
    assert (run / "eval" / "cast_consistency.md").exists()


def test_one_character_report_has_no_cast_parts(tmp_path):
    """A film of one character keeps today's report: one Subject column per feature, no cast table."""
    run, _ = make_cast_run(tmp_path, {1: [("Pip", 60, 150)]})
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["inputs"]["supporting"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    story = json.loads((run / "story.json").read_text())
    for shot in story["shots"]:
        del shot["characters"]
    (run / "story.json").write_text(json.dumps(story))
    result = evaluate_film(run, EvalModels(), show_progress=False)
    assert result.cast == [] and result.characters == [] and len(result.curves[FB]) == 1
    assert set(result.shots[0]) == {"Shot", "Warping error", "Flow score", f"Subject ({FB})"}
    assert set(result.summary) == {"Warping error", "Flow score", f"Subject ({FB})", f"Inter-shot ({FB})"}
    assert result.notes[-1] == f"Reference subject: {run / 'subject'} (1 frames)."
    names = {p.name for p in write_film_report(result, tmp_path / "rep")}
    assert "cast_consistency.md" not in names and "subject_per_shot_fallback.png" in names
