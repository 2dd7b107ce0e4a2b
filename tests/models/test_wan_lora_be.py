"""LoRA-BE on Wan (issue 27, item 2), on tiny random Wan pipelines built as diffusers' own tests build them:
one subject-token embedding per transformer block, each block reading only its own; the localization
loss in the paper's form on Wan's maps and token grid; training, the adapter file, and frames that
depend on the adapter; a cast of two tokens."""

from dataclasses import replace
from typing import get_args

import numpy as np
import pytest
import torch

from storyagent.models.lora_be import CastToken, Clip, LoRABEConfig, cast_config
from storyagent.models.wan import (
    VIDEO_MODELS, WAN_TARGET_MODULES, WAN_VIDEO_MODELS, BlockwiseState, WanLoRABETrainer, WanVideoPipeline,
    install_blockwise, latent_masks, localization_loss, window_frames,
)
from storyagent.models.wan.prompts import pack
from storyagent.models.wan.testing import BLOCKS, tiny_config, tiny_pipeline

KINDS = ("wan2.2-ti2v-5b", "wan2.1-i2v-14b-480p", "wan2.2-i2v-a14b")


def tiny(kind: str) -> WanVideoPipeline:
    return WanVideoPipeline(tiny_pipeline(kind), tiny_config(kind))


def lora_config(**kw) -> LoRABEConfig:
    return LoRABEConfig(token="<pip>", class_word="fox", target_modules=WAN_TARGET_MODULES, learning_rate=1e-2,
                        epochs=1, checkpoint_every=100, **kw)


def walking_clip(frames: int = 9, size: tuple[int, int] = (64, 128)) -> Clip:
    """A brown disc walking right on a pale ground, with its masks."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    video = np.full((frames, h, w, 3), 225, np.uint8)
    masks = np.zeros((frames, h, w), bool)
    for i in range(frames):
        masks[i] = (yy - h // 2) ** 2 + (xx - w // 3 - 3 * i) ** 2 < (h // 3) ** 2
        video[i][masks[i]] = (160, 90, 40)
    return Clip(video, masks, fps=8.0)


def test_the_video_models_are_the_run_settings_and_the_weights_registry():
    from storyagent.config import RunConfig
    from storyagent.weights import WEIGHTS

    assert get_args(RunConfig.model_fields["video_model"].annotation) == VIDEO_MODELS
    assert RunConfig.model_fields["video_model"].default == VIDEO_MODELS[0] == "dynamicrafter-512"
    for name, config in WAN_VIDEO_MODELS.items():
        assert WEIGHTS[name].repo_id == config.repo_id and WEIGHTS[name].repo_id.endswith("-Diffusers")
        assert (config.max_frames - 1) % 4 == 0 and (config.train_frames - 1) % 4 == 0
    # A window is 4k+1 frames at the model's rate, as long as the shot asks, at most the model's longest.
    assert window_frames(2.0, 16, 81) == 33 and window_frames(10.0, 24, 121) == 121 and window_frames(0.1, 16, 81) == 5


@pytest.mark.parametrize("kind", ["wan2.2-ti2v-5b", "wan2.1-i2v-14b-480p"])
def test_the_blockwise_processors_equal_diffusers_for_an_ordinary_prompt(kind):
    """Installed but given one context for all blocks, the block-wise cross-attention is diffusers' own
    (text, and the CLIP image branch of Wan2.1), so a prompt without a subject token is animated as before."""
    pipe = tiny_pipeline(kind)
    transformer = pipe.transformer
    torch.manual_seed(1)
    channels = transformer.config.in_channels
    x = torch.randn(1, channels, 2, 4, 4)
    text = torch.randn(1, 512 if transformer.config.image_dim else 16, transformer.config.text_dim)
    image = torch.randn(1, 17, 8) if transformer.config.image_dim else None
    t = torch.tensor([500.0])
    with torch.no_grad():
        stock = transformer(x, t, text, image, return_dict=False)[0]
        install_blockwise([transformer], BlockwiseState(num_blocks=BLOCKS, text_len=text.shape[1]))
        ours = transformer(x, t, text, image, return_dict=False)[0]
    torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["wan2.2-ti2v-5b", "wan2.2-i2v-a14b"])
def test_one_embedding_per_block_and_each_block_reads_only_its_own(kind, tmp_path):
    video = tiny(kind)
    trainer = WanLoRABETrainer(video, lora_config(), tmp_path)
    assert video.num_blocks == BLOCKS
    assert [tuple(e.embeddings.shape) for e in trainer.token_embeddings] == [(BLOCKS, 32)]
    seen: dict[tuple[str, int], list[torch.Tensor]] = {}
    for name, transformer in video.experts.items():  # both experts of A14B: block m of each reads e[m]
        for m, block in enumerate(transformer.blocks):
            block.attn2.to_k.register_forward_pre_hook(
                lambda _mod, args, key=(name, m): seen.setdefault(key, []).append(args[0].detach().clone()))

    def contexts_read() -> dict[tuple[str, int], torch.Tensor]:
        seen.clear()
        with torch.no_grad():
            contexts, _ = trainer.encoder.contexts(["a video of <pip> on the beach"])
            packed = pack(contexts)
            for transformer in video.experts.values():
                transformer(torch.randn(1, transformer.config.in_channels, 2, 4, 4), torch.tensor([400.0]), packed,
                            return_dict=False)
        return {k: v[-1] for k, v in seen.items()}

    before = contexts_read()
    assert len(before) == BLOCKS * len(video.experts)
    for k in range(BLOCKS):
        with torch.no_grad():
            trainer.token_embeddings[0].embeddings[k] += 1.0
        after = contexts_read()
        for (name, m), context in after.items():
            changed = not torch.allclose(context, before[(name, m)])
            assert changed == (m == k), f"{name} block {m} after changing e[{k}]"
        before = after
    # An ordinary prompt (no token) reaches every block whole, as diffusers gives it.
    assert trainer.encoder(["a fox on the beach"]) is None


def test_the_localization_loss_has_the_papers_form_on_wans_maps(tmp_path):
    """Masks go to Wan's token grid (frame 0 alone, then 4 frames per latent frame; 16 pixels per token on
    the 8x VAE with 2x2 patches); D is the block's softmax over the text tokens at the subject token; the
    loss is -(1/F) sum_f mean(D[f, m_f = 1]) per block (frames without the subject skipped), the mean over blocks."""
    masks = torch.zeros(1, 9, 32, 32)
    masks[:, 0, :16, :16] = 1  # frame 0: the top-left token
    masks[:, 5:9, 16:, 16:] = 1  # frames 5-8, i.e. latent frame 2: the bottom-right token
    masks[:, 1:4, 16:, :16] = 1  # three of latent frame 1's four frames (1-4): more than half
    grid = latent_masks(masks, 3, (2, 2))
    assert grid[0, 0].tolist() == [[1, 0], [0, 0]]
    assert grid[0, 1].tolist() == [[0, 0], [1, 0]]
    assert grid[0, 2].tolist() == [[0, 0], [0, 1]]
    half = masks.clone()
    half[:, 1:4] = 0
    half[:, 1:3, 16:, :16] = 1  # two of four frames: half, not more
    assert latent_masks(half, 3, (2, 2))[0, 1].sum() == 0, "an empty latent frame"

    maps = [torch.rand(1, 3 * 4), torch.rand(1, 3 * 4)]
    loss = localization_loss(maps, latent_masks(half, 3, (2, 2)))
    expected = []
    for d in maps:
        d = d.view(3, 2, 2)
        expected.append(-(d[0, 0, 0] + d[2, 1, 1]) / 2)  # frames 0 and 2; frame 1 (empty) skipped
    torch.testing.assert_close(loss, torch.stack(expected).mean())

    # The maps the blocks keep are their own attention at the subject token: softmax(q k^T / sqrt(d)) by hand.
    video = tiny("wan2.2-ti2v-5b")
    trainer = WanLoRABETrainer(video, lora_config(), tmp_path)
    keys: dict[int, torch.Tensor] = {}
    queries: dict[int, torch.Tensor] = {}
    for m, block in enumerate(video.pipe.transformer.blocks):
        block.attn2.norm_k.register_forward_hook(lambda _m, _a, out, m=m: keys.__setitem__(m, out.detach()))
        block.attn2.norm_q.register_forward_hook(lambda _m, _a, out, m=m: queries.__setitem__(m, out.detach()))
    clip = trainer.sample(walking_clip(), [])
    tensors, clip_masks, _ = trainer.inputs(clip)
    with torch.no_grad(), trainer.keeping_attention():
        total, diffusion, loc, share = trainer.losses(tensors, clip_masks[0], sigma=0.7)
        maps = {m: d.clone() for m, d in trainer.state.maps.items()}
        weights = trainer.state.token_weights[0, 0]
    position = int(weights.nonzero()[0])
    for m in range(BLOCKS):
        q, k = queries[m].unflatten(2, (2, -1)).transpose(1, 2), keys[m].unflatten(2, (2, -1)).transpose(1, 2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)  # (1, heads, N, L)
        torch.testing.assert_close(maps[m][0, 0], probs[0, :, :, position].mean(0), rtol=1e-4, atol=1e-6)
    p = video.patch_size
    latent_frames = (clip.frames.shape[0] - 1) // 4 + 1
    on_grid = latent_masks(clip_masks[0], latent_frames, (trainer.height // 32, trainer.width // 32))
    assert on_grid.sum() > 0
    torch.testing.assert_close(loc, localization_loss([maps[m][0] for m in range(BLOCKS)], on_grid))
    torch.testing.assert_close(total, diffusion + loc)
    assert p == (1, 2, 2) and 0 < share <= 1


@pytest.mark.parametrize("kind", KINDS)
def test_training_learns_the_subject_and_the_frames_depend_on_the_adapter(kind, tmp_path):
    """Two steps (a video window, then a photo: one frame, no image condition) move every expert's LoRA
    and the block-wise embeddings; the adapter file loads into a fresh pipeline, whose frames for a prompt
    naming the token then differ from the stock model's."""
    video = tiny(kind)
    trainer = WanLoRABETrainer(video, lora_config(), tmp_path / "work")
    start = [e.embeddings.detach().clone() for e in trainer.token_embeddings]
    photo = replace(walking_clip(1), still=True, fps=None)
    history = trainer.train([walking_clip(), photo], epochs=1, show_progress=False)
    assert [h.appearance_only for h in history] == [False, True]
    assert all(np.isfinite(h.loss) and h.localization < 0 for h in history)
    assert not torch.equal(trainer.token_embeddings[0].embeddings.detach(), start[0])
    adapter = trainer.adapter()
    experts = {k.split(".", 1)[0] for k in adapter.lora}
    assert experts == set(video.experts)
    projections = {k.split(".attn", 1)[1].split(".lora", 1)[0] for k in adapter.lora}
    want = {"1.to_q", "1.to_k", "1.to_v", "1.to_out.0", "2.to_q", "2.to_k", "2.to_v", "2.to_out.0"}
    if kind == "wan2.1-i2v-14b-480p":
        want |= {"2.add_k_proj", "2.add_v_proj"}  # the image cross-attention
    assert projections == want
    assert len({k.split(".")[2] for k in adapter.lora}) == BLOCKS, "every block"
    moved = [n for n, v in adapter.lora.items() if "lora_B" in n and v.abs().sum() > 0]
    assert moved, "the LoRA learned"
    path = trainer.save(tmp_path / "pip.safetensors")
    assert adapter.config.target_modules == WAN_TARGET_MODULES

    image = walking_clip(1, (32, 32)).frames[0]
    stock = tiny(kind)(image, "a video of <pip>", num_frames=5, seed=3, width=32, height=32)
    fresh = tiny(kind)
    config = fresh.load_adapter(path)
    assert config.token == "<pip>"
    adapted = fresh(image, "a video of <pip>", num_frames=5, seed=3, width=32, height=32)
    again = fresh(image, "a video of <pip>", num_frames=5, seed=3, width=32, height=32)
    assert adapted.shape == stock.shape == (5, 32, 32, 3) and adapted.dtype == np.uint8
    np.testing.assert_array_equal(adapted, again)
    assert np.abs(adapted.astype(int) - stock).mean() > 0.5, "the adapter changes the clip"


def test_a_dynamicrafter_adapter_is_refused_by_wan(tmp_path):
    from storyagent.errors import InputError
    from storyagent.models.lora_be import LoRABEAdapter

    config = LoRABEConfig(token="<pip>", class_word="fox")
    LoRABEAdapter(config, {}, torch.zeros(16, 32)).save_pretrained(tmp_path / "dc.safetensors")
    with pytest.raises(InputError, match="16 block-wise embeddings.*not a Wan adapter"):
        tiny("wan2.2-ti2v-5b").load_adapter(tmp_path / "dc.safetensors")


def test_a_cast_trains_one_token_per_character_each_on_its_own_steps(tmp_path):
    config = cast_config([CastToken("<pip>", "fox", "Pip"), CastToken("<mo>", "owl", "Mo")],
                         target_modules=WAN_TARGET_MODULES, learning_rate=1e-2, epochs=1, checkpoint_every=100,
                         composite_share=0.0)
    video = tiny("wan2.2-ti2v-5b")
    trainer = WanLoRABETrainer(video, config, tmp_path)
    assert [tuple(e.embeddings.shape) for e in trainer.token_embeddings] == [(BLOCKS, 32), (BLOCKS, 32)]
    before = [e.embeddings.detach().clone() for e in trainer.token_embeddings]
    result = trainer.train_step(replace(walking_clip(), token="<mo>"))
    assert result.tokens == ("<mo>",)
    assert torch.equal(trainer.token_embeddings[0].embeddings.detach(), before[0]), "Pip's token untouched"
    assert not torch.equal(trainer.token_embeddings[1].embeddings.detach(), before[1])
    adapter = trainer.adapter()
    assert tuple(adapter.embeddings.shape) == (2, BLOCKS, 32)
    path = adapter.save_pretrained(tmp_path / "cast.safetensors")
    fresh = tiny("wan2.2-ti2v-5b")
    assert fresh.load_adapter(path).tokens == ["<pip>", "<mo>"]
    assert fresh.prompt_hook(["<pip> and <mo> on the beach"]).shape == (1, BLOCKS * 16, 32)


def test_the_a14b_step_trains_the_expert_of_its_noise_level(tmp_path):
    video = tiny("wan2.2-i2v-a14b")
    trainer = WanLoRABETrainer(video, lora_config(), tmp_path)
    clip = trainer.sample(walking_clip(), [])
    tensors, masks, _ = trainer.inputs(clip)
    for sigma, expert, idle in ((0.95, "transformer", "transformer_2"), (0.3, "transformer_2", "transformer")):
        trainer.optimizer.zero_grad(set_to_none=True)
        with trainer.keeping_attention():
            trainer.losses(tensors, masks[0], sigma=sigma)[0].backward()
        grads = {name: any(p.grad is not None and p.grad.abs().sum() > 0
                           for n, p in t.named_parameters() if "lora_" in n) for name, t in video.experts.items()}
        assert grads == {expert: True, idle: False}, sigma
