"""A cast's own voices: a line the story gives to a character is said in that character's voice (its `voice`
in the cast), every other line in the narrator's; changing who says a line speaks that line alone again."""

import json

import numpy as np
import pytest

from storyagent.agents.crew import run_crew
from storyagent.cast import CastMember
from storyagent.media import read_audio
from tests.tools.test_sound import cfg, files, manifest_of, needs_sound
from tests.support.paths import PIP_VIDEO

pytestmark = pytest.mark.sound

MO_VOICE = "espeak:en-us+f3"


@needs_sound
def test_a_line_given_to_a_character_is_said_in_its_voice(tmp_path):
    root = tmp_path / "run"
    config = cfg(prompt="two friends build a raft", music="none",
                 supporting=[CastMember(name="Mo", class_word="owl", media=PIP_VIDEO, voice=MO_VOICE)])
    run_crew(config, root, show_progress=False)
    before = files(root)
    story = json.loads((root / "story.json").read_text())
    story["shots"][1]["speaker"] = "Mo"
    (root / "story.json").write_text(json.dumps(story))
    run_crew(config, root, resume=True, show_progress=False)

    arts = manifest_of(root)["artifacts"]
    voices = {k: arts[k]["meta"]["voice"] for k in arts if k.startswith("audio/narration_")}
    assert voices == {"audio/narration_01": "espeak", "audio/narration_02": MO_VOICE, "audio/narration_03": "espeak"}
    assert arts["audio/narration_02"]["meta"]["speaker"] == "Mo"
    after = files(root)
    assert {k for k in after if k.startswith("audio/narration") and after[k] != before[k]} == {"audio/narration_02.wav"}
    # The same words in another voice: Mo's line is not the narrator's samples.
    (tmp_path / "narrator.wav").write_bytes(before["audio/narration_02.wav"])
    narrator, mo = read_audio(tmp_path / "narrator.wav"), read_audio(root / "audio/narration_02.wav")
    assert mo.samples.size and (mo.samples.shape != narrator.samples.shape or not np.allclose(mo.samples, narrator.samples))


def test_a_line_said_by_a_stranger_is_refused(tmp_path):
    from storyagent.schemas import StoryScript

    shot = {"index": 1, "narration": "\"Hello!\"", "description": "d", "subject_action": "waves",
            "subject_region": "left", "background": "a beach", "shot_type": "wide", "camera_motion": "static",
            "speaker": "Crong"}
    errors, _ = StoryScript(title="t", logline="l", shots=[shot]).cast_problems(["Pip", "Mo"])
    assert errors == ["shot 1's line is said by 'Crong', who is not in the cast (Pip, Mo); "
                      "name a character or leave it to the narrator"]
    assert "speaker" not in StoryScript(title="t", logline="l", shots=[shot | {"speaker": None}]).model_dump_json()
