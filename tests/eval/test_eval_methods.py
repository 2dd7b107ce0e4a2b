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
from storyagent.models.lora_be import Clip


def moving_clip(frames: int = 4, size: int = 16) -> Clip:
    video = np.zeros((frames, size, size, 3), np.uint8)
    video[..., 0] = 200
    masks = np.zeros((frames, size, size), bool)
    for f in range(frames):
        masks[f, 4:12, 2 + f: 8 + f] = True
    video[masks] = (20, 220, 40)
    return Clip(video, masks, fps=8.0)


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
