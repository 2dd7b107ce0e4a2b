"""Issue 23 across the stages: the film a user gets acts the prompt's action in the prompt's place.

The planner's and the renderer's own tests hold each part; this one reads what a run leaves on disk
(story.json, the storyboard pictures and their masks) the way a user would see it.
"""

import json

import numpy as np
from PIL import Image

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.models.animatic.backgrounds import SceneSpec
from tests.support.paths import PIP


def film(prompt: str, out) -> dict:
    run_crew(RunConfig.build(prompt=prompt, subject=PIP, name="Pip", class_word="fox", shots=4, width=256,
                             height=160, fps=4, shot_duration=2.0, review="none"), out, show_progress=False)
    return json.loads((out / "story.json").read_text())


def aspect(mask_file) -> float:
    """Height over width of the subject's box in a mask picture."""
    ys, xs = np.nonzero(np.asarray(Image.open(mask_file).convert("L")) > 127)
    return (np.ptp(ys) + 1) / (np.ptp(xs) + 1)


def test_a_fox_learning_to_swim_swims_in_water_in_every_picture(tmp_path):
    story = film("a fox learns to swim", tmp_path / "swim")
    standing = aspect(tmp_path / "swim/subject/frame_01_mask.png")
    for shot in story["shots"]:
        assert "swim" in shot["subject_action"] or "swam" in shot["subject_action"], shot["subject_action"]
        assert SceneSpec.from_text(shot["background"]).place in {"lake", "sea"}, shot["background"]
        # In the water the body is cut at the water line: the picture shows a shorter subject than the photo.
        cut = aspect(tmp_path / f"swim/storyboard/shot_{shot['index']:02d}_mask.png") / standing
        assert cut < 0.85, (shot["subject_action"], cut)

    # The same subject on dry land stands whole (the measure is not the renderer's doing alone).
    dry = film("a day at the seaside", tmp_path / "dry")
    whole = [aspect(tmp_path / f"dry/storyboard/shot_{s['index']:02d}_mask.png") / standing for s in dry["shots"]
             if "swim" not in s["subject_action"]]
    assert whole and min(whole) > 0.9, whole


def test_an_astronaut_lost_in_a_jungle_is_drawn_in_a_jungle(tmp_path):
    story = film("an astronaut lost in a jungle", tmp_path)
    assert all("jungle" in s["background"] for s in story["shots"]), [s["background"] for s in story["shots"]]
    assert {SceneSpec.from_text(s["background"]).place for s in story["shots"]} == {"jungle"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stages"]["video"] == "done"
