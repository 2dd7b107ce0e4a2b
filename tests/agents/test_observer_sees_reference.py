"""Issue 26, item 13: the vision-LLM Observer sees the reference (the paper's Fig. 2 gives the Observer the
reference videos). Each review of pictures sends one reference frame of every character first (the lead's
`subject/frame_01.png`, a cast's `cast/<name>/frame_01.png`), each after a line marking it REFERENCE, and the
pictures to judge after them, each marked TO JUDGE. Through the real crew and a scripted OpenAI-compatible
server on 127.0.0.1; the pictures in the requests are decoded and compared with the run folder's files."""

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from storyagent.agents.crew import run_crew
from storyagent.cast import CastMember
from storyagent.config import RunConfig
from storyagent.media import read_frames
from storyagent.models.planner import PlannerConfig, TemplatePlanner
from tests.support.llm_server import LLMServer, ToolCall
from tests.support.paths import PIP, ROOT

MO = ROOT / "examples" / "mo" / "mo.jpg"
"""The second example character: Mo the owl, a photo on a leafy background (its mask beside it)."""

PROMPT = "Pip teaches Mo to swim"
SHOTS = 2


def cfg(spec: str, supporting: list[CastMember]) -> RunConfig:
    return RunConfig.build(prompt=PROMPT, subject=PIP, name="Pip", class_word="fox", shots=SHOTS, width=128, height=80,
                           fps=4, shot_duration=2.0, llm=spec, review="llm", supporting=supporting)


def story_json(supporting: list[CastMember]) -> str:
    planner = TemplatePlanner(PlannerConfig(shot_duration=2.0))
    return planner(PROMPT, "Pip", SHOTS, seed=5, class_word="fox",
                   supporting=[(m.name, m.class_word) for m in supporting]).model_dump_json()


def review_parts(out: Path, supporting: list[CastMember]) -> dict[str, list[dict[str, Any]]]:
    """Run the crew with the LLM Observer; every review approves. Returns each stage's review message (its
    content parts), taken as the server received it."""
    seen: dict[str, list[dict[str, Any]]] = {}

    def approve(stage: str):
        def answer(body: dict[str, Any]) -> str:
            seen[stage] = body["messages"][-1]["content"]
            return "good"
        return answer

    script = {"designer": [story_json(supporting)],
              "observer": [approve("story"), approve("storyboard"), approve("video")],
              "manager": ["storyboard_generator", "video_creator"],
              "storyboard": [ToolCall("generate_storyboard", {})],
              "video": [ToolCall("animate_shots", {})]}
    with LLMServer(script) as srv:
        result = run_crew(cfg(srv.spec, supporting), out, show_progress=False)
        assert len(srv.llm.requests_of("observer")) == 3
    assert result.film is not None
    return seen


def pictures(parts: list[dict[str, Any]]) -> list[tuple[str, np.ndarray]]:
    """Each picture of a message with the text line just before it (its label)."""
    out, label = [], None
    for part in parts:
        if part["type"] == "text":
            label = part["text"]
        else:
            assert part["type"] == "image_url" and label is not None, "every picture comes after its label"
            url = part["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")
            img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
            out.append((label, np.asarray(img)))
            label = None
    return out


def distance(sent: np.ndarray, path: Path | np.ndarray) -> float:
    """Mean absolute difference (0-255) between a picture as the LLM got it and a file, at the sent size."""
    original = Image.open(path).convert("RGB") if isinstance(path, Path) else Image.fromarray(path)
    resized = np.asarray(original.resize((sent.shape[1], sent.shape[0]), Image.BILINEAR), dtype=np.float32)
    return float(np.abs(resized - sent.astype(np.float32)).mean())


def is_(sent: np.ndarray, path: Path | np.ndarray, *others: Path | np.ndarray) -> bool:
    """`sent` is `path` (JPEG's loss aside), and nearer to it than to any of `others`."""
    d = distance(sent, path)
    return d < 12 and all(d < distance(sent, o) for o in others)


def key_frames(out: Path, shot: int) -> np.ndarray:
    return np.concatenate(read_frames(out / "shots" / f"shot_{shot:02d}.mp4", max_frames=3), axis=1)


def test_one_character_the_reference_comes_first_then_the_pictures_to_judge(tmp_path):
    out = tmp_path / "r"
    seen = review_parts(out, [])
    ref, sheet = out / "subject" / "frame_01.png", out / "storyboard.png"

    assert pictures(seen["story"]) == [], "the story has no pictures to compare the reference with"
    assert "The character is Pip the fox." in seen["story"][0]["text"]

    board = pictures(seen["storyboard"])
    assert [label.split(":")[0] for label, _ in board] == ["REFERENCE (not a shot to judge)", "TO JUDGE"]
    assert "Pip, the fox" in board[0][0] and "contact sheet" in board[1][0]
    assert is_(board[0][1], ref, sheet) and is_(board[1][1], sheet, ref)

    video = pictures(seen["video"])
    assert [label.split(":")[0] for label, _ in video] == ["REFERENCE (not a shot to judge)"] + ["TO JUDGE"] * SHOTS
    assert is_(video[0][1], ref, key_frames(out, 1))
    for shot in range(1, SHOTS + 1):
        label, sent = video[shot]
        assert f"shot {shot}," in label and is_(sent, key_frames(out, shot), ref)


def test_a_cast_each_characters_reference_first_the_lead_first(tmp_path):
    out = tmp_path / "r"
    mo = CastMember(name="Mo", class_word="owl", media=MO)
    seen = review_parts(out, [mo])
    pip_ref, mo_ref, sheet = out / "subject" / "frame_01.png", out / "cast" / "mo" / "frame_01.png", out / "storyboard.png"
    assert mo_ref.exists()
    assert "The characters are Pip the fox and Mo the owl." in seen["story"][0]["text"]

    for stage, judged in (("storyboard", 1), ("video", SHOTS)):
        sent = pictures(seen[stage])
        assert len(sent) == 2 + judged
        (pip_label, pip), (mo_label, mo_sent) = sent[:2]
        assert pip_label.startswith("REFERENCE") and "Pip, the fox" in pip_label
        assert mo_label.startswith("REFERENCE") and "Mo, the owl" in mo_label
        assert is_(pip, pip_ref, mo_ref, sheet) and is_(mo_sent, mo_ref, pip_ref, sheet)
        assert all(label.startswith("TO JUDGE") for label, _ in sent[2:]), "the judged pictures come after every reference"
    assert is_(pictures(seen["storyboard"])[2][1], sheet, pip_ref, mo_ref)


def test_the_role_message_tells_references_from_pictures_to_judge():
    from storyagent.agents.observer import _role

    role = _role()
    assert role.startswith("You are the Observer")
    assert "REFERENCE" in role and "TO JUDGE" in role and "never judge them" in role
