"""LoRA-BE on a tiny DynamiCrafter (CPU): gradients, block-wise contexts, localization, adapter file, resume."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from storyagent.errors import InputError
from storyagent.models.dynamicrafter import DynamiCrafterUNet, variant_config
from storyagent.models.dynamicrafter.testing import tiny_pipeline
from storyagent.models.lora_be import (
    BlockwiseEmbeddings, Clip, LoRABEConfig, LoRABETrainer, SubjectPromptEncoder, add_lora, augment_clip, fit_clip,
    is_temporal, load_adapter, load_subject_clips, module_text_contexts, tokenize_with_subject,
)
from tests.support.clips import moving_clip
from tests.support.media import write_index_video
from tests.support.model_tester import ModelTesterMixin

TOKEN = "<miffy>"



def synthetic_clip(frames: int = 4, size: int = 16) -> Clip:
    """A green block moving right over a red background, the block the subject; no frame rate."""
    return moving_clip(frames, size, fps=None)


def config(**kw) -> LoRABEConfig:
    base = dict(token=TOKEN, class_word="rabbit", epochs=2, augment=False, learning_rate=1e-2, checkpoint_every=1000)
    return LoRABEConfig(**(base | kw))


def test_only_lora_and_embeddings_get_gradients(tmp_path):
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, config(), tmp_path)
    trainer.train_step(synthetic_clip())
    with_grad = {n for n, p in pipe.unet.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert {n for n, p in pipe.unet.named_parameters() if p.requires_grad} == {
        n for n, _ in pipe.unet.named_parameters() if "lora_" in n}
    lora_targets = {n.split(".lora_")[0] for n in with_grad}
    assert any(".spatial." in n and ".attn1." in n for n in lora_targets)  # spatial self-attention
    assert any(n.endswith("attn2.to_k") for n in lora_targets)  # text branch
    assert any(n.endswith("attn2.to_k_ip") for n in lora_targets)  # image branch
    assert any(".temporal." in n for n in lora_targets)  # temporal attention
    assert trainer.embeddings.embeddings.grad.abs().sum() > 0
    for module in (pipe.vae, pipe.resampler, pipe.text_encoder, pipe.image_encoder):
        assert all(p.grad is None for p in module.parameters())


def test_each_module_sees_its_own_embedding():
    pipe = tiny_pipeline()
    modules = len(pipe.unet.cross_attentions)
    emb = BlockwiseEmbeddings(modules, 32)
    torch.nn.init.normal_(emb.embeddings)
    ids, mask = tokenize_with_subject(pipe.text_encoder, [f"a {TOKEN} hops"], TOKEN)
    pos = int(mask[0].nonzero())
    with torch.no_grad():
        texts = module_text_contexts(pipe.text_encoder, emb, ids, mask)  # (M, 1, 77, d)
    assert texts.shape[:2] == (modules, 1)
    for i in range(modules):
        for j in range(i + 1, modules):
            diff = (texts[i, 0] - texts[j, 0]).abs().amax(dim=-1)
            assert torch.all(diff[:pos] == 0)  # causal text encoder: nothing before the token changes
            assert diff[pos] > 1e-4  # the token's position carries the module's own embedding

    # Inside the UNet, module i attends to exactly the i-th context.
    seen: dict[int, torch.Tensor] = {}
    hooks = [a.register_forward_pre_hook(lambda m, args, kw: seen.__setitem__(m.index, kw["context"]), with_kwargs=True)
             for a in pipe.unet.cross_attentions]
    contexts = [torch.cat([t, torch.randn(1, 64, 32)], dim=1) for t in texts]
    with torch.no_grad():
        pipe.unet(torch.randn(1, 8, 4, 8, 8), torch.tensor([10]), contexts[0], module_contexts=contexts)
    for h in hooks:
        h.remove()
    assert sorted(seen) == list(range(modules))
    for i, ctx in seen.items():
        assert torch.equal(ctx[0, :77], texts[i, 0])


def test_512_configuration_has_16_blockwise_embeddings():
    with torch.device("meta"):
        unet = DynamiCrafterUNet(variant_config("512").unet)
    assert len(unet.cross_attentions) == 16


def test_localization_loss_has_a_gradient_into_the_embeddings(tmp_path):
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, config(localization_weight=1.0), tmp_path)
    fitted = synthetic_clip()
    video = torch.from_numpy(fitted.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    masks = torch.from_numpy(fitted.masks).float()[None]
    with trainer.keeping_attention():
        _, _, loc, _ = trainer.losses(video, masks, timestep=300)
        loc.backward()
    grad = trainer.embeddings.embeddings.grad
    assert grad is not None and torch.all(grad.abs().sum(dim=1) > 0)  # every module's embedding


def test_training_raises_attention_inside_the_mask_and_lowers_the_loss(tmp_path):
    pipe = tiny_pipeline()
    # 16 epochs: attention in the mask rises by ~0.9 (it passes +0.1 at epoch 10 and saturates at ~0.99 by 20).
    trainer = LoRABETrainer(pipe, config(epochs=16), tmp_path)
    clip = synthetic_clip()
    before = trainer.evaluate(clip)
    trainer.train([clip], show_progress=False)
    after = trainer.evaluate(clip)
    assert trainer.step == 16
    assert after.mask_attention > before.mask_attention + 0.1
    assert after.loss < before.loss
    assert after.diffusion < before.diffusion


def test_zero_initialised_adapter_changes_nothing():
    pipe = tiny_pipeline()
    x, ctx = torch.randn(1, 8, 4, 8, 8), torch.randn(1, 77 + 64, 32)
    with torch.no_grad():
        base = pipe.unet(x, torch.tensor([400]), ctx)
        add_lora(pipe.unet, config())
        adapted = pipe.unet(x, torch.tensor([400]), ctx)
    assert torch.equal(base, adapted)


@dataclasses.dataclass
class Adapted:
    """A tiny DynamiCrafter carrying a LoRA-BE adapter, and the trainer that made it (None: loaded from a file)."""

    pipe: object
    trainer: LoRABETrainer | None = None


class TestLoRABEAdapterModel(ModelTesterMixin):
    """The adapter file: a trained pipeline and a fresh one with the saved adapter draw the same video,
    with the subject's token and without; the adapted pipeline runs in half precision; a LoRA weight
    for a module the UNet lacks is refused."""

    strict_weights = ("",)  # the adapter is one file
    unknown_key = "lora.not_a_module.lora_A.weight"
    unknown_key_error = InputError
    unknown_key_match = r"does not fit this UNet \(not_a_module\.lora_A\.weight"

    @pytest.fixture(scope="class")
    def model(self, tmp_path_factory):
        """Trained once for the class: the checks only read it (`cast` works on a copy)."""
        pipe = tiny_pipeline()
        trainer = LoRABETrainer(pipe, config(epochs=3), tmp_path_factory.mktemp("lora_be") / "run")
        trainer.train([synthetic_clip()], show_progress=False)
        pipe.prompt_hook = SubjectPromptEncoder(pipe.text_encoder, trainer.embeddings, TOKEN)
        return Adapted(pipe, trainer)

    def forward(self, model, inputs):
        image = np.full((16, 16, 3), 90, np.uint8)
        return {prompt: model.pipe(image, prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                                   show_progress=False).frames for prompt in (f"a {TOKEN} hops", "a rabbit hops")}

    def save(self, model, folder):
        return model.trainer.save(folder / "miffy.safetensors")

    def load(self, path, model):
        fresh = tiny_pipeline()
        load_adapter(fresh, path)
        return Adapted(fresh)

    def cast(self, model, dtype):
        return Adapted(copy.deepcopy(model.pipe).to(dtype=dtype))

    def modules(self, model):
        return list(model.pipe.modules.values())

    def test_the_adapter_changes_the_subjects_video(self, model):
        without = self.forward(Adapted(tiny_pipeline()), {})
        assert not torch.allclose(self.forward(model, {})[f"a {TOKEN} hops"], without[f"a {TOKEN} hops"])


def test_adapter_for_another_configuration_is_refused(tmp_path):
    trained = tiny_pipeline()
    trainer = LoRABETrainer(trained, config(), tmp_path / "run")
    path = trainer.save(tmp_path / "a.safetensors")
    other = tiny_pipeline()
    other.unet.cross_attentions.pop()  # a list copy: the model itself is unchanged
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    tensors["embeddings"] = tensors["embeddings"][:-1]
    save_file(tensors, tmp_path / "b.safetensors", metadata=meta)
    with pytest.raises(InputError, match="cross-attention modules"):
        load_adapter(other, tmp_path / "b.safetensors")


def test_resumed_training_continues_from_the_last_checkpoint(tmp_path):
    clip = synthetic_clip()
    # Uninterrupted: 4 steps.
    straight = LoRABETrainer(tiny_pipeline(), config(epochs=4, checkpoint_every=2), tmp_path / "straight")
    straight.train([clip], show_progress=False)
    # Interrupted after step 2 (its checkpoint), then a new process picks up the same folder.
    first = LoRABETrainer(tiny_pipeline(), config(epochs=4, checkpoint_every=2), tmp_path / "resumed")
    first.train([clip], epochs=1, show_progress=False)
    first.train([clip], epochs=2, show_progress=False)
    assert first.step == 2
    second = LoRABETrainer(tiny_pipeline(), config(epochs=4, checkpoint_every=2), tmp_path / "resumed")
    history = second.train([clip], show_progress=False)
    assert len(history) == 2 and second.step == 4  # only the two missing steps ran
    assert torch.allclose(second.embeddings.embeddings, straight.embeddings.embeddings, atol=1e-6)


def test_augmentation_keeps_the_subject_and_changes_the_background():
    clip = synthetic_clip(frames=3, size=32)
    rng = np.random.default_rng(0)
    for _ in range(5):
        out = augment_clip(clip, rng, others=[np.zeros((32, 32, 3), np.uint8)])
        assert out.frames.shape == clip.frames.shape and out.masks.shape == clip.masks.shape
        assert out.masks.any(axis=(1, 2)).all()
        # Inside the (moved) mask the subject's colour survives.
        assert np.abs(out.frames[out.masks].astype(int) - (20, 220, 40)).mean() < 40
        # The red background is gone almost everywhere outside the mask.
        red = (np.abs(out.frames[~out.masks].astype(int) - (200, 0, 0)).sum(-1) < 30).mean()
        assert red < 0.5


def test_no_clips_is_a_clear_error(tmp_path):
    trainer = LoRABETrainer(tiny_pipeline(), config(), tmp_path)
    with pytest.raises(InputError, match="at least one reference clip"):
        trainer.train([], show_progress=False)


def test_lora_weights_stay_float32_under_a_bf16_base(tmp_path):
    pipe = tiny_pipeline().to(dtype=torch.bfloat16)
    trainer = LoRABETrainer(pipe, config(), tmp_path)
    result = trainer.train_step(synthetic_clip())
    assert {p.dtype for p in trainer.lora_params} == {torch.float32}
    assert next(pipe.unet.conv_in.parameters()).dtype == torch.bfloat16
    assert np.isfinite(result.loss) and trainer.embeddings.embeddings.grad.abs().sum() > 0


# ---------------------------------------------------------------- faithful training steps

def unet_inputs(pipe) -> tuple[list[tuple], object]:
    """Record (x, t, context, fs) of every UNet call."""
    seen: list[tuple] = []

    def hook(module, args, kwargs):
        seen.append((args[0].detach().clone(), args[1].clone(), args[2].detach().clone(), kwargs["fs"].clone()))

    return seen, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


def test_conditioning_is_a_random_frame_of_the_clip_with_its_unscaled_latent(tmp_path):
    """Upstream draws the conditioning frame inside the clip (`rand_cond_frame: true`,
    configs/training_512_v1.0/config.yaml), uses it for the CLIP tokens and concatenates its latent
    z[:, :, cond_frame_index] (get_batch_input, lvdm/models/ddpm3d.py) before `forward` scales only
    x_start by scale_arr[t] (`use_dynamic_rescale: true`, `base_scale: 0.7`)."""
    pipe = tiny_pipeline()
    sched = pipe.scheduler
    assert sched.scale_arr is not None and sched.scale_arr.min() < 1  # dynamic rescale is on
    trainer = LoRABETrainer(pipe, config(), tmp_path)
    clip = synthetic_clip()  # 4 frames that differ: the block moves
    video, _ = trainer._tensors(fit_clip(clip, 4, 16, 16))
    seen, handle = unet_inputs(pipe)
    drawn = []
    for _ in range(6):
        state = trainer.generator.get_state()
        result = trainer.train_step(clip)
        x, t, context, _ = seen[-1]
        c = result.cond_frame
        drawn.append(c)
        generator = torch.Generator()
        generator.set_state(state)
        z = pipe.encode_latents(video, generator)  # the same posterior sample the step drew
        assert sched.scale_arr[t].item() != 1.0
        assert torch.equal(x[:, 4:], z[:, :, c : c + 1].expand_as(z))
        assert torch.equal(context[:, 77:], pipe.encode_image_tokens(video[:, :, c]))
    handle.remove()
    assert all(0 <= c < 4 for c in drawn) and len(set(drawn)) > 1


def test_fs_is_the_clips_frame_rate_after_striding(tmp_path):
    """fs is the clip's fps after striding (webvid.py: fps_ori // frame_stride, with
    `fps_condition_type: 'fps'` in configs/training_512_v1.0/config.yaml); photos get the default."""
    (video,) = load_subject_clips([write_index_video(tmp_path / "v.mp4", 40)], segment=lambda fs: [
        (np.ones(f.shape[:2], bool), "all") for f in fs])
    assert video.stride == 2 and video.fps == 15.0
    photo = dataclasses.replace(synthetic_clip(frames=1), still=True)
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, config(), tmp_path / "run")
    seen, handle = unet_inputs(pipe)
    assert trainer.train_step(video).fs == round(30 / 2)
    trainer.train_step(photo)
    handle.remove()
    assert [int(s[3][0]) for s in seen] == [15, pipe.config.unet.default_fs]
    # Models conditioned on the frame stride (the 256 model, `fps_condition_type: 'fs'`) get the stride.
    pipe.config.diffusion.fps_condition_type = "fs"
    assert trainer.clip_fs(video) == 2


def lora_weights(pipe, temporal: bool) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in pipe.unet.named_parameters() if "lora_" in n and is_temporal(n) == temporal}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[n], after[n]) for n in before)


def test_photos_train_appearance_only(tmp_path):
    """A still has no motion: photo steps must leave the temporal LoRA bit-identical (even with Adam
    momentum from earlier video steps) while spatial LoRA and the block-wise embeddings learn."""
    photo = dataclasses.replace(synthetic_clip(frames=1), still=True)
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, config(), tmp_path / "photos")
    temporal, spatial, emb = lora_weights(pipe, True), lora_weights(pipe, False), trainer.embeddings.embeddings.clone()
    assert temporal and spatial
    results = [trainer.train_step(photo) for _ in range(3)]
    assert all(r.appearance_only for r in results)
    assert not changed(temporal, lora_weights(pipe, True))
    assert changed(spatial, lora_weights(pipe, False)) and not torch.equal(emb, trainer.embeddings.embeddings)

    # Photos mixed with a video: the video moves the temporal LoRA, the next photo step does not.
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, config(), tmp_path / "mix")
    temporal = lora_weights(pipe, True)
    assert not trainer.train_step(synthetic_clip()).appearance_only
    after_video = lora_weights(pipe, True)
    assert changed(temporal, after_video)
    spatial = lora_weights(pipe, False)
    assert trainer.train_step(photo).appearance_only
    assert not changed(after_video, lora_weights(pipe, True))
    assert changed(spatial, lora_weights(pipe, False))
