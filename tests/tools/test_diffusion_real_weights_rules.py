"""The diffusion backend's rules that only real weights would otherwise show (issue 26, items 6, 8, 9 and
11), checked on tiny random models on the CPU:

- the sampler's defaults are upstream DynamiCrafter's, and a clip samples at the fs its adapter pins;
- every clip has its own seed (`run.seed("video", shot)`), which really drives its noise;
- a storyboard of another aspect is letterboxed into DynamiCrafter's frame (not centre-cropped) and the
  clip keeps the storyboard's aspect; the film letterboxes a clip of another shape (never squashes it);
- the storyboard frame's meta says how the redraw was pasted, and falls back to AnyDoor's own blend
  when LangSAM's mask of the redrawn subject misses AnyDoor's paste box.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from storyagent.config import RunConfig
from storyagent.media import read_video, write_png, write_video
from storyagent.models.dynamicrafter import DynamiCrafterPipeline, variant_config
from storyagent.models.langsam import LangSAMConfig
from storyagent.models.storyboard import (
    PASTE_BLEND,
    StoryboardConfig,
    StoryboardPipeline,
)
from storyagent.models.storyboard.pipeline import box_mask
from storyagent.models.storydiffusion import StoryDiffusionConfig
from storyagent.schemas import Region, Shot, StoryboardFrame, StoryScript, Subject
from storyagent.tools.backends.diffusion import DiffusionBackend
from storyagent.tools.film import FILM, FilmOrder, make_film, title_frames
from storyagent.tools.run import Run
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace
from tests.support.diffusion import use_weights
from tests.support.paths import PIP


# ---- item 11: upstream's sampler defaults -------------------------------------------------------------

def test_the_sampler_defaults_are_upstream_dynamicrafters():
    """Upstream DynamiCrafter (github.com/Doubiiu/DynamiCrafter, scripts/run.sh, the inference script
    every released model is sampled with): `--ddim_steps 50 --unconditional_guidance_scale 7.5
    --ddim_eta 1.0 --video_length 16`, and per model `FS=24` (512: "This model adopts FPS=24") at
    320x512, `FS=10` at 576x1024, `FS=3` (a frame stride) at 256x256; the 512 and 1024 models with
    `--timestep_spacing 'uniform_trailing' --guidance_rescale 0.7 --perframe_ae`. The paper (StoryAgent,
    arXiv 2411.04925) animates with DynamiCrafter-512 and states no other sampler settings
    (../shared/paper/tables.json, "implementation")."""
    s = variant_config("512").sampling
    assert (s.ddim_steps, s.cfg_scale, s.eta, s.frames) == (50, 7.5, 1.0, 16)
    assert (s.fs, s.height, s.width, s.timestep_spacing, s.guidance_rescale) == (24, 320, 512, "uniform_trailing", 0.7)
    s = variant_config("1024").sampling
    assert (s.ddim_steps, s.cfg_scale, s.eta, s.fs, s.height, s.width) == (50, 7.5, 1.0, 10, 576, 1024)
    s = variant_config("256").sampling
    assert (s.ddim_steps, s.cfg_scale, s.eta, s.fs, s.height, s.width) == (50, 7.5, 1.0, 3, 256, 256)
    assert (s.timestep_spacing, s.guidance_rescale) == ("uniform", 0.0)


def test_a_call_without_settings_samples_with_the_variants_own():
    from storyagent.models.dynamicrafter.testing import tiny_pipeline

    pipe = tiny_pipeline()
    s = pipe.config.sampling
    s.ddim_steps, s.cfg_scale, s.eta, s.fs, s.guidance_rescale = 3, 6.0, 0.5, 11, 0.3
    seen = {}
    pipe.denoise = lambda latents, cond, fs, steps, guidance, rescale, eta, **kw: seen.update(
        fs=int(fs[0]), steps=steps, guidance=guidance, rescale=rescale, eta=eta) or latents
    pipe(np.zeros((16, 16, 3), np.uint8), "a fox", output_type="latent", show_progress=False)
    assert seen == {"fs": 11, "steps": 3, "guidance": 6.0, "rescale": 0.3, "eta": 0.5}


# ---- items 6, 8, 11 through the backend ---------------------------------------------------------------

@pytest.fixture()
def weights(monkeypatch, tiny_weights):
    return use_weights(monkeypatch, tiny_weights)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A tiny LoRA-BE for the tiny DynamiCrafter, its file pinning fs 7 (as if trained on ~7 fps clips)."""
    from storyagent.models.dynamicrafter.testing import tiny_pipeline
    from storyagent.models.lora_be import LoRABEConfig, LoRABETrainer

    folder = tmp_path_factory.mktemp("adapter")
    trainer = LoRABETrainer(tiny_pipeline(), LoRABEConfig(token="<pip>", class_word="fox"), folder / "work")
    trainer.sample_fs = 7
    return trainer.save(folder / "pip.safetensors")


def shot(index: int, duration: float = 2.0) -> Shot:
    return Shot(index=index, narration="Pip waits.", description="Pip on a beach", subject_action="waits",
                subject_region=Region.named("center"), background="a beach", shot_type="wide",
                camera_motion="static", duration=duration)


def backend_run(folder, subject: Subject | None = None, **kw) -> Run:
    settings = {"prompt": "a day", "subject": PIP, "name": "Pip", "class_word": "fox", "backend": "diffusion",
                "width": 64, "height": 64, "fps": 4, "steps": 2, "storyboard_side": 64, "finetune": "off", "seed": 11}
    cfg = RunConfig.build(**(settings | kw))
    subject = subject or Subject(name="Pip", class_word="fox", reference_media=[PIP])
    return Run(cfg, Workspace.open(folder, inputs={}, resume=False), DiffusionBackend(cfg),
               [PreparedSubject(subject=subject, reference=None, input_hash="pip")], False)


def board(run: Run, picture: np.ndarray, index: int) -> StoryboardFrame:
    rel = f"storyboard/shot_{index:02d}.png"
    write_png(run.ws.path(rel), picture)
    return StoryboardFrame(path=rel, input_hash=f"b{index}", shot=index)


def recording(monkeypatch) -> list[dict]:
    """Every DynamiCrafter call's generator seed, settings and conditioning pixels."""
    calls: list[dict] = []
    call, prepare = DynamiCrafterPipeline.__call__, DynamiCrafterPipeline.prepare_image

    def recorded(self, *args, generator=None, **kw):
        calls.append({"seed": generator.initial_seed(), **{k: v for k, v in kw.items() if k != "image"}})
        return call(self, *args, generator=generator, **kw)

    def prepared(self, *args, **kw):
        pixels = prepare(self, *args, **kw)
        calls[-1]["pixels"] = pixels.clone()
        return pixels

    monkeypatch.setattr(DynamiCrafterPipeline, "__call__", recorded)
    monkeypatch.setattr(DynamiCrafterPipeline, "prepare_image", prepared)
    return calls


def test_every_clip_has_its_own_seed_and_samples_at_its_adapters_fs(tmp_path, weights, adapter, monkeypatch):
    run = backend_run(tmp_path / "run", video_adapter=adapter, finetune="auto")
    calls = recording(monkeypatch)
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[16:48, 16:48] = (200, 120, 40)
    backend = run.backend
    # The same picture and the same text for both shots: only the seed tells their clips apart.
    clips = [backend.animate(run, shot(i, duration=1.0), board(run, picture, i), f"h{i}") for i in (1, 2)]
    seeds = [run.seed("video", i) for i in (1, 2)]
    assert seeds[0] != seeds[1] and [c["seed"] for c in calls] == seeds, "one generator per clip, its own seed"
    assert [c.meta["seed"] for c in clips] == seeds
    frames = [np.stack(read_video(run.ws.path(c.path), max_frames=100)[0]).astype(int) for c in clips]
    assert np.abs(frames[0] - frames[1]).mean() > 1, "the seeds drive the noise: the clips differ"
    again = backend.animate(run, shot(1, duration=1.0), board(run, picture, 1), "h1")
    np.testing.assert_array_equal(np.stack(read_video(run.ws.path(again.path), max_frames=100)[0]), frames[0])

    # The sampler: upstream's guidance and eta, the run's steps, the adapter's fs (not the variant's 24).
    s = backend.pipe.config.sampling
    assert backend.pipe.adapter_fs == 7 != s.fs
    for c in calls:
        assert (c["fs"], c["guidance_scale"], c["eta"], c["num_inference_steps"]) == (7, s.cfg_scale, s.eta, 2)
    assert clips[0].meta["sampler"] == {"steps": 2, "guidance_scale": s.cfg_scale, "eta": s.eta, "fs": 7}
    assert backend.clip_inputs()["fs"] == 7, "a clip made at another fs is another clip"


def test_a_storyboard_of_another_aspect_is_letterboxed_into_the_model_and_the_clip_keeps_its_aspect(
        tmp_path, weights, monkeypatch):
    run = backend_run(tmp_path / "run", width=128, height=64, storyboard_side=128)
    calls = recording(monkeypatch)
    picture = np.full((64, 128, 3), 90, np.uint8)  # 2:1, the tiny model animates 1:1 (16x16)
    picture[:, :8] = (250, 0, 0)  # its left and right edges: a centre crop would cut both off
    picture[:, -8:] = (0, 0, 250)
    clip = run.backend.animate(run, shot(1, duration=1.0), board(run, picture, 1), "h")
    pixels = calls[0]["pixels"][0]  # (3, 16, 16) in [-1, 1]
    assert calls[0]["image_fit"] == "pad"
    assert (pixels[:, :4] == -1).all() and (pixels[:, 12:] == -1).all(), "black bars above and below"
    assert pixels[0, 4:12, 0].min() > 0.5 and pixels[2, 4:12, -1].min() > 0.5, "both edges reach the model"
    frames, _ = read_video(run.ws.path(clip.path), max_frames=100)
    assert frames[0].shape == (8, 16, 3), "the bars are cut off again: the clip is 2:1, as its storyboard"

    # No adapter: no fs pinned, DynamiCrafter's own default, and the clip's key is as it was.
    assert calls[0]["fs"] == run.backend.pipe.config.sampling.fs
    assert run.backend.clip_inputs() == {"backend": "diffusion", "adapter": None}


def test_the_film_letterboxes_a_clip_of_another_shape_never_squashes_it(tmp_path):
    cfg = RunConfig.build(prompt="a day", subject=PIP, name="Pip", class_word="fox", width=96, height=64, fps=8,
                          voice="none", music="none")
    with Run.open(cfg, tmp_path / "run", show_progress=False) as run:
        square = np.zeros((6, 48, 48, 3), np.uint8)
        square[:, :, :24] = (230, 40, 40)
        square[:, :, 24:] = (40, 40, 230)
        write_video(run.ws.path("shots/shot_01.mp4"), list(square), fps=8, crf=0)
        make_film(run, FilmOrder(title="T", logline="L", clips=["shots/shot_01.mp4"], input_hash="x"))
        frame = read_video(run.ws.path(FILM), max_frames=100)[0][title_frames(8) + 2].astype(int)
    assert frame.shape == (64, 96, 3)
    # The square clip fills the height (64 px) and is 64 px wide, centred: 16 px bars each side.
    assert np.abs(frame[:, :14]).max() < 20 and np.abs(frame[:, -14:]).max() < 20
    red, blue = frame[32, 18:46], frame[32, 50:78]
    assert (red[:, 0] > 180).all() and (blue[:, 2] > 180).all(), "each half 32 px wide: not stretched to 48"


# ---- item 9: the storyboard frame says how the redraw was pasted --------------------------------------

class MissingLangSAM:
    """LangSAM as loaded, except that in the redrawn pictures it finds its 'fox' outside AnyDoor's paste box."""

    def __init__(self, langsam, boxes: list) -> None:
        self.langsam, self.boxes, self.calls = langsam, boxes, 0

    def __getattr__(self, name):
        return getattr(self.langsam, name)

    def __call__(self, images, word):
        from storyagent.models.langsam import SubjectMask

        self.calls += 1
        if self.calls == 1:  # step 2: the drawn subjects, found as ever
            return self.langsam(images, word)
        outside = ~box_mask(self.boxes[-1], images[0].shape[:2])
        if not outside.any():
            return [SubjectMask(found=False, mask=outside, reason="no 'fox' found")]
        ys, xs = np.nonzero(outside)
        return [SubjectMask(found=True, mask=outside, box=(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), score=0.9)]


def test_a_redraw_whose_mask_misses_the_paste_box_keeps_anydoors_blend_and_the_frame_says_so(
        tmp_path, tiny_weights, monkeypatch):
    cfg = StoryboardConfig(story=StoryDiffusionConfig(style="none"),
                           langsam=LangSAMConfig(box_threshold=0.0, text_threshold=0.0), width=64, height=64,
                           steps=2, num_identity=2)
    pipe = StoryboardPipeline.from_pretrained(cfg, sdxl_path=tiny_weights["sdxl-base"],
                                              dino_path=tiny_weights["grounding-dino-base"],
                                              sam_path=tiny_weights["sam-vit-h"], anydoor_path=tiny_weights["anydoor"],
                                              removal="opencv", device="cpu")
    boxes: list = []
    redraw = pipe.anydoor_redraw

    def kept_box(*args, **kw):
        image, box = redraw(*args, **kw)
        boxes.append(box)
        return image, box

    monkeypatch.setattr(pipe, "anydoor_redraw", kept_box)
    pipe.langsam = MissingLangSAM(pipe.langsam, boxes)
    frames, masks = [], []
    for i, side in enumerate([8, 14]):
        frame = np.full((24, 24, 3), 200, np.uint8)
        frame[:side, :side] = (90, 60, 30)
        frames.append(tmp_path / f"f{i}.png")
        masks.append(tmp_path / f"m{i}.png")
        Image.fromarray(frame).save(frames[-1])
        Image.fromarray(((np.indices((24, 24)).max(axis=0) < side) * 255).astype(np.uint8)).save(masks[-1])
    run = backend_run(tmp_path / "run", Subject(name="Pip", class_word="fox", reference_media=[frames[0]],
                                                frames=frames, masks=masks), seed=5)
    run.backend._storyboard = pipe
    script = StoryScript(title="Pip", logline="Pip waits.", shots=[shot(1)])
    (frame,) = run.backend.storyboard(run, script)
    assert frame.meta["redraw"] and boxes, "the shot was redrawn"
    assert frame.meta["paste"] == {"method": PASTE_BLEND, "box": list(boxes[-1])}
    assert "AnyDoor's own blend was kept" in frame.meta["reason"]
    picture = np.asarray(Image.open(run.ws.path(frame.path)).convert("RGB")).astype(int)
    removed = np.asarray(Image.open(run.ws.path("storyboard/shot_01_removed.png")).convert("RGB")).astype(int)
    inside = box_mask(boxes[-1], picture.shape[:2])
    assert np.abs(picture - removed)[inside].max() > 0, "AnyDoor's redraw reached the storyboard"
    np.testing.assert_array_equal(picture[~inside], removed[~inside])
