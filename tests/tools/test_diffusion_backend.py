"""The diffusion backend end to end on CPU: every model tiny and random, loaded from local folders
through the same weights lookup (`STORYAGENT_WEIGHTS_*`) a real install uses."""

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.media import read_frames
from storyagent.weights import env_var
from tests.support.diffusion import save_tiny_diffusion_weights

from tests.support.paths import ROOT
PIP = ROOT / "examples" / "pip" / "pip.png"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return save_tiny_diffusion_weights(tmp_path_factory.mktemp("weights"))


def use(monkeypatch, weights: dict[str, Path]) -> None:
    for name, path in weights.items():
        monkeypatch.setenv(env_var(name), str(path))


def diffusion_config(subject: Path, **kw) -> RunConfig:
    """A tiny diffusion run: 64 px, 2 denoising steps, fine-tunes of a step or an epoch."""
    settings = dict(prompt="a day at the seaside", subject=subject, name="Pip", class_word="fox", shots=2, width=64,
                    height=64, fps=4, backend="diffusion", steps=2, storyboard_side=64, anydoor_steps=2,
                    lora_be_epochs=1)
    return RunConfig.build(**(settings | kw))


def test_diffusion_backend_makes_a_film_from_tiny_models(tmp_path, monkeypatch, tiny_weights):
    use(monkeypatch, tiny_weights)
    cfg = diffusion_config(PIP, finetune="off")
    result = run_crew(cfg, tmp_path / "run", show_progress=False)
    out = tmp_path / "run"
    for i in (1, 2):
        assert (out / f"storyboard/shot_0{i}_initial.png").exists()
        board = result.storyboard[i - 1]
        assert Image.open(out / board.path).size == (64, 64)
        clip = read_frames(out / f"shots/shot_0{i}.mp4", 100)
        assert len(clip) == round(2.5 * 4) and clip[0].shape[2] == 3, "the shot's 2.5 s at 4 fps"
        assert np.std(np.stack(clip)) > 1, "random tiny models still draw something"
    assert result.film is not None and (out / "film.mp4").exists()

    # Resume reuses every diffusion artifact.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    run_crew(cfg, out, resume=True, show_progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())


def test_a_failing_model_stops_the_run_with_its_own_message(tmp_path, monkeypatch, tiny_weights):
    import shutil

    from storyagent.errors import WeightsNotFoundError

    broken = shutil.copytree(tiny_weights["dynamicrafter-512"], tmp_path / "dc_without_tokenizer")
    shutil.rmtree(broken / "tokenizer")
    use(monkeypatch, {**tiny_weights, "dynamicrafter-512": broken})
    cfg = diffusion_config(PIP, shots=1, finetune="off")
    with pytest.raises(WeightsNotFoundError, match="no tokenizer"):
        run_crew(cfg, tmp_path / "run", show_progress=False)
    assert (tmp_path / "run" / "storyboard" / "shot_01.png").exists(), "the finished storyboard is kept"


def test_a_given_lora_be_adapter_is_used_by_the_video_tool(tmp_path, monkeypatch, tiny_weights):
    import torch

    from storyagent.models.dynamicrafter.testing import tiny_pipeline
    from storyagent.models.lora_be import BlockwiseEmbeddings, LoRABEAdapter, LoRABEConfig, add_lora

    use(monkeypatch, tiny_weights)
    pipe = tiny_pipeline()
    config = LoRABEConfig(token="<pip>", class_word="fox")
    add_lora(pipe.unet, config)
    emb = BlockwiseEmbeddings(len(pipe.unet.cross_attentions), 32)
    torch.nn.init.normal_(emb.embeddings)
    adapter = LoRABEAdapter.from_model(pipe.unet, emb, config).save_pretrained(tmp_path / "pip.lora_be.safetensors")

    cfg = diffusion_config(PIP, shots=1, anydoor_steps=1, video_adapter=adapter)
    result = run_crew(cfg, tmp_path / "run", show_progress=False)
    clip = result.clips[0]
    assert clip.meta["adapter"] == str(adapter)
    assert "<pip>" in clip.meta["prompt"] and "Pip" not in clip.meta["prompt"]
    finetunes = json.loads((tmp_path / "run" / "manifest.json").read_text())["finetunes"]
    assert set(finetunes) == {"story_anydoor"}, "a given adapter is used as it is, not trained again"


def test_dataset_protocol_with_the_diffusion_generator(monkeypatch, tiny_weights):
    from storyagent.eval.datasets import SubjectReference
    from storyagent.eval.generators import DiffusionGenerator

    use(monkeypatch, tiny_weights)
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    gen = DiffusionGenerator(steps=2)
    frames = gen(first, mask, SubjectReference([first], [mask]), "a fox on a beach", 6)
    assert len(frames) == 6 and all(f.shape == first.shape and f.dtype == np.uint8 for f in frames)
    # The frames come from the animation of the redrawn storyboard, not a copy of the ground truth.
    assert not np.array_equal(frames[0], first)


# ---- the subject's fine-tunes inside the run (paper, Fig. 3) ----------------------------------


@pytest.fixture(scope="module")
def subject_folder(tmp_path_factory):
    """Pip as a photo and as a short clip of a disc moving right (24 frames at 12 fps)."""
    import shutil

    from storyagent.media import write_video

    folder = tmp_path_factory.mktemp("pip")
    shutil.copy(PIP, folder / "pip.png")
    frames = []
    for i in range(24):
        frame = np.full((64, 64, 3), 230, np.uint8)
        yy, xx = np.mgrid[:64, :64]
        frame[(yy - 34) ** 2 + (xx - 14 - i) ** 2 < 120] = (170, 90, 40)
        frames.append(frame)
    write_video(folder / "walk.mp4", frames, 12)
    return folder


def test_a_diffusion_run_learns_the_subject_and_films_with_what_it_learned(tmp_path, monkeypatch, tiny_weights,
                                                                             subject_folder):
    """`run --backend diffusion` with no adapter trains StoryAnyDoor and LoRA-BE, the manifest names
    them, the storyboard is redrawn by the trained StoryAnyDoor and the clips are animated with the
    trained LoRA-BE; a second run of the same subject (another folder) trains nothing."""
    from storyagent.models.anydoor import AnyDoorPipeline
    from storyagent.models.anydoor.finetune import apply_finetune
    from storyagent.tools.backends.diffusion import reference_for_redraw

    use(monkeypatch, tiny_weights)
    cfg = diffusion_config(subject_folder)
    start = time.perf_counter()
    first = run_crew(cfg, tmp_path / "first", show_progress=False)
    first_seconds = time.perf_counter() - start
    manifest = json.loads((tmp_path / "first" / "manifest.json").read_text())
    tunes = manifest["finetunes"]
    assert set(tunes) == {"story_anydoor", "lora_be"}
    assert all(t["trained_now"] and Path(t["path"]).is_file() and t["steps"] > 0 for t in tunes.values())
    assert tunes["story_anydoor"]["steps"] == 2
    methods = {a["meta"]["mask_method"] for k, a in manifest["artifacts"].items() if k.startswith("subject/frame_")}
    # LangSAM cuts out each photo and each clip's first frame; the clip's other frames carry that mask by flow.
    assert methods and all(m in ("langsam", "alpha", "flow-tracked grabcut") or "LangSAM found no fox" in m
                           for m in methods), methods

    assert first.film is not None and (tmp_path / "first" / "film.mp4").exists(), "the whole chain, to the film"
    # The clips were animated with the LoRA-BE the run trained, under the subject's token.
    assert all(c.meta["adapter"] == tunes["lora_be"]["path"] and "<pip>" in c.meta["prompt"] for c in first.clips)

    # The storyboard's subject is the trained StoryAnyDoor's: redraw shot 1 again with it, and with
    # the stock AnyDoor, from the pictures the run kept.
    out = tmp_path / "first"
    board = first.storyboard[0]
    assert board.meta.get("redraw"), "tiny LangSAM finds the subject: shot 1 was redrawn"
    removed = np.asarray(Image.open(out / "storyboard/shot_01_removed.png"))
    hole = np.asarray(Image.open(out / "storyboard/shot_01_hole.png")) > 127
    mask = np.asarray(Image.open(out / board.mask_path)) > 127
    final = np.asarray(Image.open(out / board.path))
    reference = reference_for_redraw(first_subject(out))

    def redraw(pipe):
        return pipe.redraw(*reference, removed, hole, seed=board.meta["seed"], num_inference_steps=2,
                           show_progress=False)

    trained = redraw(apply_finetune(AnyDoorPipeline.from_pretrained(), tunes["story_anydoor"]["path"]))
    stock = redraw(AnyDoorPipeline.from_pretrained())
    np.testing.assert_array_equal(final[mask], trained[mask])
    np.testing.assert_array_equal(final[~mask], removed[~mask])
    assert not np.array_equal(trained[mask], stock[mask]), "the fine-tune changed what AnyDoor draws"

    # A second run of the same subject, in another folder: both fine-tunes come from the cache.
    start = time.perf_counter()
    second = run_crew(cfg, tmp_path / "second", show_progress=False)
    second_seconds = time.perf_counter() - start
    again = json.loads((tmp_path / "second" / "manifest.json").read_text())["finetunes"]
    assert {k: (v["path"], v["trained_now"]) for k, v in again.items()} == {
        k: (v["path"], False) for k, v in tunes.items()}
    assert all(c.meta["adapter"] == tunes["lora_be"]["path"] for c in second.clips)
    print(f"\nfirst run (trains) {first_seconds:.1f} s, second run (cached) {second_seconds:.1f} s, "
          f"fine-tune lookup {sum(v['seconds'] for v in again.values()):.3f} s")


def first_subject(run: Path):
    from storyagent.schemas import Subject

    frames = sorted((run / "subject").glob("frame_??.png"))
    return Subject(name="Pip", class_word="fox", reference_media=frames, frames=frames,
                   masks=[f.with_name(f.stem + "_mask.png") for f in frames])


def test_finetune_off_uses_the_stock_models(tmp_path, monkeypatch, tiny_weights, subject_folder):
    use(monkeypatch, tiny_weights)
    result = run_crew(diffusion_config(subject_folder, shots=1, finetune="off"), tmp_path / "run", show_progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert list(manifest["finetunes"]) == ["off"]
    assert result.clips[0].meta["adapter"] is None and "<pip>" not in result.clips[0].meta["prompt"]
    from storyagent.weights import cache_dir

    assert not cache_dir("subjects").exists(), "nothing was trained"


def test_a_storyboard_redo_of_shot_2_changes_shot_2_only(tmp_path, monkeypatch, tiny_weights):
    """The diffusion storyboard redraws the named shot with a new seed and the reviewer's words, from
    the same identity shots' pass; every other shot's files stay byte-identical."""
    from tests.agents.test_human_review import ScriptedIO

    use(monkeypatch, tiny_weights)
    cfg = diffusion_config(PIP, shots=3, finetune="off")
    run_crew(cfg, tmp_path, show_progress=False)
    before = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in (tmp_path / "storyboard").glob("*.png")}
    first_prompt = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["storyboard/shot_02"]["meta"]

    io = ScriptedIO(["ok", "redo 2: under a red umbrella", "ok", "ok"])
    run_crew(cfg.model_copy(update={"review": "human"}), tmp_path, resume=True, show_progress=False, io=io)
    after = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in (tmp_path / "storyboard").glob("*.png")}
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed and all(k.startswith("storyboard/shot_02") for k in changed), changed
    assert "storyboard/shot_02_initial.png" in changed, "shot 2 was drawn again, not copied"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    meta = manifest["artifacts"]["storyboard/shot_02"]["meta"]
    assert meta["seed"] != first_prompt["seed"] and "under a red umbrella" in meta["prompt"]
    assert manifest["redos"]["storyboard"]["2"] == [{"take": 1, "feedback": "under a red umbrella", "rewrote_story": False}]


def test_a_clip_redo_animates_again_with_a_new_seed_and_the_reviewers_words(tmp_path, monkeypatch, tiny_weights):
    from tests.agents.test_human_review import ScriptedIO

    use(monkeypatch, tiny_weights)
    cfg = diffusion_config(PIP, shots=2, finetune="off")
    first = run_crew(cfg, tmp_path, show_progress=False)
    # Words the story takes in (an action) rewrite shot 2's text, so its picture and clip follow it;
    # words it cannot take in lead the video model's prompt for that shot alone.
    io = ScriptedIO(["ok", "ok", "redo 2: slowly turning its head", "redo 2: with more zing", "ok"])
    metas = []
    from storyagent.tools.backends.diffusion import DiffusionBackend

    animate = DiffusionBackend.animate

    def recording(self, run, shot, board, input_hash):
        clip = animate(self, run, shot, board, input_hash)
        metas.append((shot.index, clip.meta))
        return clip

    monkeypatch.setattr(DiffusionBackend, "animate", recording)
    again = run_crew(cfg.model_copy(update={"review": "human"}), tmp_path, resume=True, show_progress=False, io=io)
    assert again.clips[0] == first.clips[0], "shot 1 untouched"
    assert [i for i, _ in metas] == [2, 2], "only shot 2 is animated, once per redo"
    (_, understood), (_, not_understood) = metas
    assert understood["seed"] != first.clips[1].meta["seed"] and "turning its head" in understood["prompt"]
    assert "turning its head" in again.script.shots[1].subject_action
    assert not_understood["prompt"].startswith("with more zing, ") and "turning its head" in not_understood["prompt"]


def test_an_interrupted_finetune_resumes_where_it_stopped(tmp_path, monkeypatch, tiny_weights, subject_folder):
    """Training StoryAnyDoor in two sittings (1 step, then the run) gives the fine-tune one sitting gives."""
    from safetensors.torch import load_file

    from storyagent.models.anydoor import AnyDoorPipeline
    from storyagent.models.anydoor.training import StoryAnyDoorTrainer
    from storyagent.tools.backends.finetunes import SubjectFineTunes, story_anydoor_config
    from storyagent.tools.subject import LangSAMMasks, prepare_subject
    from storyagent.workspace import Workspace

    use(monkeypatch, tiny_weights)
    cfg = diffusion_config(subject_folder)

    def finetunes(cache: str, resumed_from: int | None = None, **kw):
        monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / cache))
        ws = Workspace.open(tmp_path / f"run-{cache}", cfg.inputs_record(), resume=True)
        run_cfg = cfg.model_copy(update=kw)
        subject = prepare_subject(ws, run_cfg, LangSAMMasks("fox"))
        tunes = SubjectFineTunes(run_cfg, subject, LangSAMMasks("fox"), show_progress=False)
        if resumed_from is not None:  # a first sitting stopped after `resumed_from` steps
            folder, _ = tunes.folder("story_anydoor", asdict(story_anydoor_config(run_cfg)))
            ref = subject.reference
            StoryAnyDoorTrainer(AnyDoorPipeline.from_pretrained(), ref.frames, ref.masks, folder / "work",
                                story_anydoor_config(run_cfg), sources=ref.sources).train(
                steps=resumed_from, show_progress=False)
        return tunes.ensure("story_anydoor")

    steps_taken = []
    step = StoryAnyDoorTrainer.train_step
    monkeypatch.setattr(StoryAnyDoorTrainer, "train_step", lambda self: (steps_taken.append(self.step), step(self))[1])
    whole = finetunes("one-sitting")
    steps_taken.clear()
    resumed = finetunes("two-sittings", resumed_from=1)
    assert steps_taken == [0, 1], "the run took the one step the first sitting had not"
    assert whole.trained_now and resumed.trained_now and whole.steps == resumed.steps == 2
    a, b = load_file(whole.path), load_file(resumed.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # force trains again from scratch, auto finds it in the cache.
    assert not finetunes("two-sittings").trained_now
    assert finetunes("two-sittings", finetune="force").trained_now
