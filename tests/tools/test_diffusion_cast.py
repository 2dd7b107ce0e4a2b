"""The diffusion backend with a cast (issue 25), on CPU with every model tiny and random: each character's
own StoryAnyDoor (cached by its own media, so a second film with that character trains none), one
LoRA-BE for the cast with a token per character, each character redrawn with its own fine-tune and
pasted only inside its own mask; and a film of one character keeps today's cache keys."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyagent.cast import CastMember
from storyagent.config import RunConfig
from storyagent.hashing import hash_json
from storyagent.schemas import Region, Shot, ShotCharacter, StoryScript
from storyagent.tools.run import Run
from storyagent.weights import resolve_weights, weights_fingerprint
from tests.support.creature import write_creature_png
from tests.support.diffusion import use_weights
from tests.support.paths import PIP


@pytest.fixture()
def weights(monkeypatch, tiny_weights):
    return use_weights(monkeypatch, tiny_weights)


def config(subject: Path, name: str, class_word: str, supporting: list[CastMember] = (), **kw) -> RunConfig:
    """A tiny diffusion film: 64 px, 2 denoising steps, fine-tunes of a step or an epoch."""
    settings = {"prompt": "a day at the seaside", "subject": subject, "name": name, "class_word": class_word,
                "shots": 2, "width": 64, "height": 64, "fps": 4, "backend": "diffusion", "steps": 2,
                "storyboard_side": 64, "anydoor_steps": 1, "lora_be_epochs": 1, "supporting": list(supporting)}
    return RunConfig.build(**(settings | kw))


def shot(index: int, place: str, characters: list[ShotCharacter] = (), who: str = "Pip") -> Shot:
    return Shot(index=index, narration=f"line {index}", description=f"{who} in {place}", subject_action="hops",
                subject_region=Region.named("center"), background=place, shot_type="wide", camera_motion="static",
                characters=list(characters))


# ---- a film of one character: today's cache keys ------------------------------------------------------

# Computed with the backend as it was before casts (commit 8113d7a), for this film: a cast of one
# must keep every one of them (the fine-tunes' keys and every storyboard picture's hash).
PIP_SUBJECT = "a40f2f3106245394"
PIP_FRAMES = {"storyboard/shot_01": "56986a11449a5fb2", "storyboard/shot_02": "c55b8da3d56b7c5e"}
PIP_IDENTITY = "533e3ff92c7573a6"
ANYDOOR_SETTINGS = "70ef55cb3302d06e"
LORA_BE_SETTINGS = "c94641bdb5ee7492"


def test_a_film_of_one_character_keeps_the_cache_keys_it_had(tmp_path, weights):
    from storyagent.tools.backends.finetunes import (
        SubjectFineTunes,
        lora_be_config,
        story_anydoor_config,
    )

    cfg = config(PIP, "Pip", "fox", finetune="off", anydoor_steps=2)
    script = StoryScript(title="Pip", logline="Pip goes out.",
                         shots=[shot(1, "a sunny beach"), shot(2, "a dark forest")])
    with Run.open(cfg, tmp_path / "run", show_progress=False) as run:
        boards = run.backend.storyboard(run, script)
        assert run.subject.input_hash == PIP_SUBJECT
        assert {k: run.manifest.artifact(k)["input_hash"] for k in PIP_FRAMES} == PIP_FRAMES
        assert hash_json(run.manifest.storyboard_identity) == PIP_IDENTITY
        assert run.backend.clip_inputs() == {"backend": "diffusion", "adapter": None}
        assert all("character_masks" not in b.meta and "characters" not in b.meta for b in boards)
        assert not list((tmp_path / "run" / "storyboard").glob("shot_??_mask_*.png")), "no per-character masks"

        tuned = cfg.model_copy(update={"finetune": "auto"})
        tunes = SubjectFineTunes(tuned, run.subject, run.backend.reference_masks(tuned.cast[0]), False)
        for model, config_of, pinned in (("story_anydoor", story_anydoor_config, ANYDOOR_SETTINGS),
                                         ("lora_be", lora_be_config, LORA_BE_SETTINGS)):
            settings = asdict(config_of(tuned))
            assert hash_json(settings) == pinned, model
            base = weights_fingerprint(resolve_weights({"story_anydoor": "anydoor", "lora_be": "dynamicrafter-512"}[model]))
            assert tunes.folder(model, settings)[1] == hash_json(
                {"model": model, "subject": PIP_SUBJECT, "base": base, "settings": settings}), model


# ---- a cast of two -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Bo (tests/support/creature.py) and Kit, a third character: a green square on a clear canvas."""
    folder = tmp_path_factory.mktemp("cast")
    kit = np.zeros((96, 96, 4), np.uint8)
    kit[20:80, 24:72] = (40, 170, 70, 255)
    kit[30:40, 34:44] = (250, 250, 250, 255)
    Image.fromarray(kit).save(folder / "kit.png")
    return {"bo": write_creature_png(folder / "bo.png", 96), "kit": folder / "kit.png"}


def test_a_cast_of_two_trains_each_its_own_story_anydoor_and_one_lora_be_and_pastes_each_in_its_own_mask(
        tmp_path, weights, media, monkeypatch):
    from storyagent.models.lora_be import LoRABEAdapter
    from storyagent.models.storyboard import StoryboardPipeline

    bo = CastMember(name="Bo", class_word="creature", media=media["bo"])
    cfg = config(PIP, "Pip", "fox", [bo])
    both = [ShotCharacter(name="Pip", action="hops", region="left"), ShotCharacter(name="Bo", action="waves",
                                                                                  region="right")]
    script = StoryScript(title="Pip and Bo", logline="Pip meets Bo.", shots=[
        shot(1, "a sunny beach", both, "a day"),
        shot(2, "a dark forest", [ShotCharacter(name="Bo", action="sleeps", region="center")], "a night")])
    redraws = []  # (shot position, character, fine-tune AnyDoor wore, its hole and the redraw)
    redraw_into = StoryboardPipeline.redraw_into  # -> (the redraw, AnyDoor's paste box)
    monkeypatch.setattr(StoryboardPipeline, "redraw_into", lambda self, s, who, hole, low_vram: (
        out := redraw_into(self, s, who, hole, low_vram),
        redraws.append((s.position, who.name, str(self._finetunes.current), hole, out[0])))[0])

    with Run.open(cfg, tmp_path / "first", show_progress=False) as run:
        run.train()  # the storyboard stage's first step (the story is approved by then)
        tunes = json.loads((tmp_path / "first" / "manifest.json").read_text())["finetunes"]
        # Two StoryAnyDoor fine-tunes, each the one a film of that character alone would use, and one LoRA-BE.
        assert set(tunes) == {"story_anydoor/Pip", "story_anydoor/Bo", "lora_be"}
        assert all(t["trained_now"] for t in tunes.values())
        assert tunes["story_anydoor/Pip"]["path"] != tunes["story_anydoor/Bo"]["path"]
        assert [tunes[f"story_anydoor/{n}"]["character"] for n in ("Pip", "Bo")] == ["Pip", "Bo"]
        alone = config(PIP, "Pip", "fox")
        from storyagent.tools.backends.finetunes import (
            SubjectFineTunes,
            story_anydoor_config,
        )

        pip_alone = SubjectFineTunes(alone, run.cast[0], run.backend.reference_masks(alone.cast[0]), False)
        assert tunes["story_anydoor/Pip"]["key"] == pip_alone.folder("story_anydoor",
                                                                     asdict(story_anydoor_config(alone)))[1]
        adapter = LoRABEAdapter.from_pretrained(tunes["lora_be"]["path"])
        assert [(c.name, c.token) for c in adapter.characters] == [("Pip", "<pip>"), ("Bo", "<bo>")]
        assert adapter.embeddings.ndim == 3 and adapter.embeddings.shape[0] == 2, "16 block-wise embeddings each"
        assert tunes["lora_be"]["tokens"] == {"Pip": "<pip>", "Bo": "<bo>"}

        boards = run.backend.storyboard(run, script)
        out = tmp_path / "first"
        first, second = boards
        assert first.meta["redraw"], first.meta
        assert first.meta["character_masks"] == {"Pip": "storyboard/shot_01_mask_pip.png",
                                                 "Bo": "storyboard/shot_01_mask_bo.png"}
        assert second.meta["character_masks"] == {"Bo": "storyboard/shot_02_mask_bo.png"}, "Pip is not in shot 2"
        assert "Pip, a fox, hops on the left and Bo, a creature, waves on the right" in first.meta["prompt"]

        # Each character was redrawn by AnyDoor wearing its own StoryAnyDoor ...
        assert sorted((p, n, worn) for p, n, worn, *_ in redraws) == sorted([
            (0, "Pip", tunes["story_anydoor/Pip"]["path"]), (0, "Bo", tunes["story_anydoor/Bo"]["path"]),
            (1, "Bo", tunes["story_anydoor/Bo"]["path"])])
        # ... and shot 1's picture holds each one's redraw inside its own mask (its hole), the removal's
        # background outside every mask.
        final = np.asarray(Image.open(out / first.path))
        removed = np.asarray(Image.open(out / "storyboard/shot_01_removed.png"))
        union = np.asarray(Image.open(out / first.mask_path)) > 127
        masks = {n: np.asarray(Image.open(out / p)) > 127 for n, p in first.meta["character_masks"].items()}
        assert all(m.any() for m in masks.values()) and not (masks["Pip"] & masks["Bo"]).any()
        np.testing.assert_array_equal(union, masks["Pip"] | masks["Bo"])
        for _, name, _, hole, redrawn in (r for r in redraws if r[0] == 0):
            assert not (masks[name] & ~hole).any(), f"{name} is pasted inside its own hole only"
            np.testing.assert_array_equal(final[masks[name]], redrawn[masks[name]])
        np.testing.assert_array_equal(final[~union], removed[~union])

        # The video prompt writes each character's token for its name.
        run.backend.pipe  # noqa: B018 -- loads the cast's LoRA-BE
        prompt = run.backend.prompt(script.shots[0])
        assert "<pip> hops" in prompt and "<bo> waves" in prompt and "Pip" not in prompt and "Bo " not in prompt
        assert run.backend.prompt(script.shots[1]) == "a night in a dark forest, <bo> sleeps, camera static"
        run.backend.release()

    # A second film with Bo and a new character: Bo's StoryAnyDoor comes from the cache, untrained.
    kit = CastMember(name="Kit", class_word="frog", media=media["kit"])
    again = config(media["bo"], "Bo", "creature", [kit])
    with Run.open(again, tmp_path / "second", show_progress=False) as run:
        run.train()
    second_tunes = json.loads((tmp_path / "second" / "manifest.json").read_text())["finetunes"]
    assert set(second_tunes) == {"story_anydoor/Bo", "story_anydoor/Kit", "lora_be"}
    assert second_tunes["story_anydoor/Bo"]["trained_now"] is False
    assert second_tunes["story_anydoor/Bo"]["path"] == tunes["story_anydoor/Bo"]["path"]
    assert second_tunes["story_anydoor/Kit"]["trained_now"] and second_tunes["lora_be"]["trained_now"]
    assert second_tunes["lora_be"]["path"] != tunes["lora_be"]["path"], "another cast, another LoRA-BE"


def test_a_two_character_diffusion_film_runs_the_whole_chain(tmp_path, weights):
    """What a user runs, end to end on tiny models: the planner's cast story -> each character's StoryAnyDoor and
    the cast's LoRA-BE -> storyboard pictures with a mask per character -> clips made with the cast adapter -> film."""
    from storyagent.agents.crew import run_crew

    bo = write_creature_png(tmp_path / "bo.png", 96)
    cfg = config(PIP, "Pip", "fox", [CastMember(name="Bo", class_word="creature", media=bo)],
                 prompt="Pip and Bo build a sandcastle")
    result = run_crew(cfg, tmp_path / "run", show_progress=False)
    assert result.film is not None and (tmp_path / "run" / "film.mp4").stat().st_size > 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    tunes = manifest["finetunes"]
    assert {"story_anydoor/Pip", "story_anydoor/Bo", "lora_be"} <= set(tunes)
    assert len(tunes["lora_be"]["tokens"]) == 2
    named = [{c.name for c in shot.cast("Pip")} for shot in result.script.shots]
    assert any(names == {"Pip", "Bo"} for names in named), "the planner's story shows both"
    for board, names in zip(result.storyboard, named, strict=True):
        assert set(board.meta["character_masks"]) <= names  # a character not found has no mask, and says why
        assert set(board.meta["characters"]) == names
    for clip, board in zip(result.clips, result.storyboard, strict=True):
        assert clip.meta["adapter"] == tunes["lora_be"]["path"]
        assert clip.num_frames == round(result.script.shots[clip.shot - 1].duration * cfg.fps)
