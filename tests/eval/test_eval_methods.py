"""The dataset protocol's fine-tuned methods (issue 26, item 2), each training only what it should:

- `storyagent`: StoryAnyDoor and LoRA-BE (LoRA + block-wise embeddings);
- `lora-dc` (the paper's Table 4 LoRA-DC): StoryAnyDoor and LoRA alone, the token keeping its class
  word's embedding in every module;
- `dc-finetuning` (the paper's Table 5 baseline): StoryAnyDoor and DynamiCrafter's image injection
  module alone (the image context projector and the image branch of cross-attention), no LoRA-BE.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storyagent.errors import InputError
from storyagent.models.dynamicrafter.finetune_image import (
    ImageInjectionConfig,
    ImageInjectionTrainer,
    apply_image_injection,
    image_injection_parameters,
)
from storyagent.models.dynamicrafter.testing import tiny_pipeline
from tests.support.clips import moving_clip


def snapshot(pipe) -> dict[str, torch.Tensor]:
    """Every tensor of every component, by component-qualified name."""
    return {f"{c}.{n}": p.detach().clone() for c, m in pipe.modules.items() | {"text_encoder": pipe.text_encoder,
                                                                                "image_encoder": pipe.image_encoder}.items()
            for n, p in m.state_dict().items()}


def changed(before: dict[str, torch.Tensor], pipe) -> set[str]:
    after = snapshot(pipe)
    assert after.keys() == before.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def injection_config(**kw) -> ImageInjectionConfig:
    return ImageInjectionConfig(**({"class_word": "man", "epochs": 2, "learning_rate": 1e-2,
                                    "gradient_checkpointing": False, "checkpoint_every": 1000} | kw))


def test_image_injection_is_the_projector_and_the_image_branch():
    pipe = tiny_pipeline()
    names = set(image_injection_parameters(pipe))
    assert {n for n in names if n.startswith("resampler.")} == {f"resampler.{n}" for n, _ in pipe.resampler.named_parameters()}
    unet = {n.removeprefix("unet.") for n in names if n.startswith("unet.")}
    assert unet and all(n.endswith(("to_k_ip.weight", "to_v_ip.weight")) for n in unet)
    # Every spatial cross-attention's image branch, nothing of its text branch nor of self-attention.
    assert len(unet) == 2 * len(pipe.unet.cross_attentions)
    assert not any(".to_k." in n or ".to_v." in n or ".attn1." in n or ".temporal" in n for n in unet)


def test_dc_finetuning_changes_the_image_injection_module_alone(tmp_path):
    pipe = tiny_pipeline()
    before = snapshot(pipe)
    trainer = ImageInjectionTrainer(pipe, injection_config(), tmp_path / "work")
    history = trainer.train([moving_clip(), moving_clip(2)], show_progress=False)
    assert len(history) == 4 and history[1].held_frames == 2  # the 2-frame clip's held frames: no loss
    moved = changed(before, pipe)
    injection = set(image_injection_parameters(pipe))
    assert moved <= injection, sorted(moved - injection)[:5]
    # Both parts learnt: the projector and the image keys/values of the cross-attention.
    assert any(n.startswith("resampler.") for n in moved)
    assert any(n.endswith("to_k_ip.weight") for n in moved) and any(n.endswith("to_v_ip.weight") for n in moved)
    # The file holds exactly those tensors; loading it into a fresh pipeline gives the trained one.
    path = trainer.save(tmp_path / "dc.safetensors")
    fresh = tiny_pipeline()
    base = snapshot(fresh)
    tuned = apply_image_injection(fresh, path)
    assert set(tuned.tensors) == injection and tuned.config.class_word == "man" and tuned.sample_fs == 8
    assert changed(base, fresh) == moved
    after = snapshot(pipe)
    assert all(torch.equal(after[k], v) for k, v in snapshot(fresh).items())


def test_dc_finetuning_resumes_and_refuses_a_stranger(tmp_path):
    clips = [moving_clip(), moving_clip(3)]
    one = tiny_pipeline()
    ImageInjectionTrainer(one, injection_config(epochs=2), tmp_path / "straight").train(clips, show_progress=False)
    # Stopped after one epoch, then a new trainer (a fresh process: a fresh pipeline) on the same folder.
    ImageInjectionTrainer(tiny_pipeline(), injection_config(epochs=1, checkpoint_every=1), tmp_path / "resumed").train(
        clips, show_progress=False)
    two = tiny_pipeline()
    resumed = ImageInjectionTrainer(two, injection_config(epochs=2), tmp_path / "resumed")
    resumed.train(clips, show_progress=False)
    assert resumed.step == 4
    for (n, a), (_, b) in zip(image_injection_parameters(one).items(), image_injection_parameters(two).items()):
        assert torch.allclose(a, b, atol=1e-6), n
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"unet.nowhere.weight": torch.zeros(1)}, str(bad), metadata={"format": "storyagent-dc-image-injection-1"})
    with pytest.raises(InputError, match="does not have"):
        apply_image_injection(tiny_pipeline(), bad)


# ---- the three fine-tuned methods on the tiny dataset ---------------------------------------------

def normalised(pipe) -> dict[str, torch.Tensor]:
    """`snapshot`, with peft's wrapping undone in the names (`to_q.base_layer.weight` -> `to_q.weight`)."""
    return {k.replace(".base_layer", ""): v for k, v in snapshot(pipe).items()}


def test_storyagent_dc_finetuning_and_lora_dc_each_train_only_what_they_should(tmp_path, monkeypatch, tiny_weights):
    from storyagent.eval import generators
    from storyagent.eval.dataset_protocol import prepare_character
    from storyagent.eval.dataset_split import resolve_split
    from storyagent.eval.datasets import FlintstonesIndex
    from storyagent.models.dynamicrafter import DynamiCrafterPipeline
    from storyagent.models.lora_be import LoRABEAdapter, LoRABETrainer
    from storyagent.weights import env_var
    from tests.eval.test_eval_dataset import tiny_split, write_flintstones

    for name, path in tiny_weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    index = FlintstonesIndex(write_flintstones(tmp_path / "fl"))
    (fred,) = resolve_split(tiny_split("flintstones", ["fred"], samples=1, references=2, shots=2), index)
    # What LoRA-BE's clips were masked with, and how many frames each LangSAM call saw.
    seen_clips: list = []
    calls: list[int] = []
    train = LoRABETrainer.train
    monkeypatch.setattr(LoRABETrainer, "train", lambda self, clips, *a, **k: seen_clips.extend(clips) or train(
        self, clips, *a, **k))
    masks_call = generators.ProtocolMasks.__call__
    monkeypatch.setattr(generators.ProtocolMasks, "__call__",
                        lambda self, frames, fallback=None: calls.append(len(frames)) or masks_call(self, frames, fallback))
    base = normalised(DynamiCrafterPipeline.from_pretrained())
    injection = set(image_injection_parameters(DynamiCrafterPipeline.from_pretrained()))

    def method(video):
        gen = generators.FineTunedGenerator(video=video, steps=2, anydoor_steps=1, lora_be_epochs=1,
                                            show_progress=False, work_dir=tmp_path / "subjects")
        prepared = prepare_character(index, fred, gen, tmp_path / video)
        gen.use(fred, prepared.finetunes)
        return gen, prepared

    # storyagent: StoryAnyDoor, then LoRA-BE: LoRA and block-wise embeddings; the base weights untouched.
    story, prepared = method("lora-be")
    assert story.trainings == [("fred", "story_anydoor"), ("fred", "lora_be")]
    after = normalised(story.animator)
    assert all(torch.equal(after[k], v) for k, v in base.items())
    assert set(after) - set(base) and all("lora_" in k for k in set(after) - set(base))
    table = LoRABEAdapter.from_pretrained(prepared.finetunes["lora_be"]["path"]).embeddings
    assert not torch.equal(table, table[:1].expand_as(table))  # the block-wise embeddings learnt, apart
    assert story.token == "<fred>"

    # Reference masks (item 3): none written beside the media (no mask for every frame of a clip);
    # LoRA-BE's clips were masked frame by frame, LangSAM seeing whole 16-frame windows.
    media = tmp_path / "lora-be" / "references" / "fred"
    assert not list(media.glob("*_mask.png")) and len(list((media / "dataset_masks").glob("*.png"))) == 2
    assert seen_clips and 16 in calls
    for clip in seen_clips:
        assert len(clip.mask_methods) == len(clip.frames) and "user mask" not in clip.mask_methods
        assert all(m.startswith(("langsam", "dataset mask", "grabcut")) for m in clip.mask_methods), clip.mask_methods

    # lora-dc (Table 4's LoRA-DC): the same StoryAnyDoor (found), its own LoRA; the embeddings stay the class word's.
    lora_dc, prepared = method("lora-dc")
    assert lora_dc.trainings == [("fred", "lora_be")]
    assert prepared.finetunes["story_anydoor"]["key"] == story.finetunes["fred"]["story_anydoor"]["key"]
    after = normalised(lora_dc.animator)
    assert all(torch.equal(after[k], v) for k, v in base.items())
    table = LoRABEAdapter.from_pretrained(prepared.finetunes["lora_be"]["path"]).embeddings
    assert torch.equal(table, table[:1].expand_as(table))

    # dc-finetuning (Table 5): the same StoryAnyDoor (found), DynamiCrafter's image injection module alone.
    dc, prepared = method("dc-finetuning")
    assert dc.trainings == [("fred", "dc_image_injection")] and dc.token is None and dc.fs is not None
    after = normalised(dc.animator)
    assert set(after) == set(base)  # no LoRA, no adapter
    moved = {k for k, v in base.items() if not torch.equal(after[k], v)}
    assert moved and moved <= injection, sorted(moved - injection)[:5]
    assert any(k.startswith("resampler.") for k in moved) and any(k.endswith("to_k_ip.weight") for k in moved)
    # It animates the caption as written (no subject token) at the fs its clips were trained at.
    assert dc.prompt("Fred and Wilma talk.", "fred") == "Fred and Wilma talk."
    assert story.prompt("Fred and Wilma talk.", "fred") == "<fred> and Wilma talk."


def test_protocol_masks_take_the_dataset_first_frame_mask_only_where_langsam_misses(tmp_path):
    """PororoSV included: the reference of a clip showing two characters is masked by LangSAM on every
    frame; on a clip's first frame, where LangSAM's best box is the other character (no pixel in common
    with the dataset's mask), the dataset's mask stands in."""
    from storyagent.eval.dataset_protocol import build_reference
    from storyagent.eval.dataset_split import resolve_split
    from storyagent.eval.datasets import PororoIndex
    from storyagent.eval.generators import ProtocolMasks
    from storyagent.models.langsam.pipeline import SubjectMask
    from tests.eval.test_eval_dataset import tiny_split, write_pororo

    index = PororoIndex(write_pororo(tmp_path / "po"))
    (pororo,) = resolve_split(tiny_split("pororo", ["pororo"], samples=1, references=2), index)

    def red(frame):  # where the test scene draws Pororo
        return (frame[..., 0] > 180) & (frame[..., 2] < 100)

    class LangSAMStub:
        """Finds Pororo in later frames; in a clip's first frame, the blue one (Crong) instead."""

        def __init__(self):
            self.firsts = {index.load(c, "pororo").frames[0].tobytes() for c in pororo.train_clips}

        def __call__(self, frames, text):
            out = []
            for f in frames:
                blue = (f[..., 2] > 180) & (f[..., 0] < 100)
                out.append(SubjectMask(True, blue if f.tobytes() in self.firsts else red(f)))
            return out

    stub = LangSAMStub()
    masks = ProtocolMasks.for_media("penguin", "cpu", None)
    masks._pipe = stub
    reference = build_reference(index, pororo, tmp_path / "ref", masks)
    assert all(how.startswith("dataset mask (LangSAM's penguin is another") for how in reference.mask_methods)
    assert all((m & red(f)).sum() > 0.5 * red(f).sum() for f, m in zip(reference.frames, reference.masks))
    # The trainings' masks (a fresh ProtocolMasks from the media): every frame LangSAM's, the first
    # frame of each clip the dataset's, found again from the written media.
    again = ProtocolMasks.for_media("penguin", "cpu", tmp_path / "ref")
    again._pipe = stub
    clip = index.load(pororo.train_clips[0], "pororo")
    found = again(clip.frames)
    # Frames 0-3 are the first frame itself (the square moves a pixel every 4 frames): the dataset's mask.
    assert all(how.startswith("dataset mask (LangSAM's penguin is another") for _, how in found[:4])
    assert {how for _, how in found[4:]} == {"langsam"}
    assert all(np.array_equal(m, red(f)) for (m, _), f in zip(found[4:], clip.frames[4:]))
    assert len({m.tobytes() for m, _ in found[4:]}) == 3  # the square moves: a mask per frame, not one for all
    assert masks.name != ProtocolMasks.for_media("dinosaur", "cpu", tmp_path / "ref").name  # in the cache key
    # LangSAM finding nothing: the written clip's decoded first frame (compressed) still gets the dataset's
    # mask; a frame the dataset knows no mask of gets the run's own fallback (GrabCut), labelled.
    from storyagent.media.reading import read_video

    class Blind:
        def __call__(self, frames, text):
            return [SubjectMask(False, np.zeros(f.shape[:2], bool)) for f in frames]

    again._pipe = Blind()
    decoded, _ = read_video(tmp_path / "ref" / "clip_000.mp4", 16)
    (first, how), *_ = again([decoded[0]])
    assert how == "dataset mask (LangSAM found no penguin)" and first.any()
    (_, how), = again([np.ascontiguousarray(decoded[0][:, ::-1])])  # a mirrored frame: no hint
    assert how.endswith("(LangSAM found no penguin)") and not how.startswith("dataset")


def test_dc_is_the_deprecated_name_of_lora_dc(tmp_path):
    from typer.testing import CliRunner

    from storyagent.commands.eval import _generator, app

    result = CliRunner().invoke(app, ["dataset", str(tmp_path), "--format", "flintstones", "--method", "dc", "-q"])
    assert "--method dc is deprecated: it is lora-dc" in " ".join(result.output.split())
    assert result.exit_code == 2 and "not a FlintstonesSV folder" in result.output  # and then it runs as lora-dc
    for method, video in (("storyagent", "lora-be"), ("lora-dc", "lora-dc"), ("dc-finetuning", "dc-finetuning")):
        gen = _generator(method, tmp_path, 2, 0, "cpu", "quick", None, None, True)
        assert gen.video == video and gen.name.split(" (")[0] in {"StoryAgent", "LoRA-DC", "DC-finetuning"}
