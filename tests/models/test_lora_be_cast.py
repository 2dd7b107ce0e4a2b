"""A LoRA-BE cast adapter on a tiny DynamiCrafter (CPU): one LoRA for the cast, one token with its own
block-wise embeddings per character, per-character localization, the cast's file, and a one-character
adapter that stays exactly what it was."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from safetensors import safe_open

from storyagent.errors import InputError
from storyagent.hashing import hash_json
from storyagent.models.dynamicrafter.testing import tiny_pipeline
from storyagent.models.lora_be import (
    BlockwiseEmbeddings, CastPromptEncoder, CastToken, Clip, LoRABEAdapter, LoRABECastConfig, LoRABEConfig,
    LoRABETrainer, cast_clips, cast_config, cast_text_contexts, composite_clip, load_adapter, module_text_contexts,
    name_tokens, tokenize_with_subjects,
)
from storyagent.models.lora_be import trainer as trainer_module
from tests.models.test_lora_be import config as one_config
from tests.models.test_lora_be import synthetic_clip

PIP, MO = "<pip>", "<mo>"
CAST = (CastToken(PIP, "fox", "Pip"), CastToken(MO, "rabbit", "Mo"))


def cast(**kw) -> LoRABECastConfig:
    base = dict(epochs=2, augment=False, learning_rate=1e-2, checkpoint_every=1000, composite_share=0.0)
    return cast_config(CAST, **(base | kw))


def character_clip(side: str, colour: tuple[int, int, int], frames: int = 4, size: int = 16) -> Clip:
    """A block of `colour` on the left or right half of a grey frame, moving down; the block is the character."""
    video = np.full((frames, size, size, 3), 120, np.uint8)
    masks = np.zeros((frames, size, size), bool)
    cols = slice(1, 7) if side == "left" else slice(9, 15)
    for f in range(frames):
        masks[f, 2 + f : 9 + f, cols] = True
    video[masks] = colour
    return Clip(video, masks)


def pip_clip() -> Clip:
    return character_clip("left", (230, 110, 20))


def mo_clip() -> Clip:
    return character_clip("right", (240, 240, 250))


def tensors(clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
    video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    return video, torch.from_numpy(clip.masks).float()[None]


# ---------------------------------------------------------------- one character: exactly as before

def test_one_character_config_is_todays():
    """`asdict(LoRABEConfig)` is the fine-tune's cache key: these hashes were computed before casts existed."""
    assert hash_json(asdict(LoRABEConfig())) == "69f02ea8db3e6535"
    today = dict(token="<pip>", class_word="fox", seed=3, learning_rate=1e-4, epochs=40)
    assert hash_json(asdict(LoRABEConfig(**today))) == "a5b68f38ecb70476"
    # A cast of one is that same plain config (no name recorded, no cast-only setting).
    one = cast_config([CastToken("<pip>", "fox", "Pip")], seed=3, learning_rate=1e-4, epochs=40, composite_share=0.5)
    assert type(one) is LoRABEConfig and hash_json(asdict(one)) == "a5b68f38ecb70476"
    assert one.characters == (CastToken("<pip>", "fox"),) and one.tokens == ["<pip>"]


def test_one_character_training_and_file_are_unchanged(tmp_path):
    """Two augmented steps and the saved file, pinned from the code before casts existed."""
    trainer = LoRABETrainer(tiny_pipeline(), one_config(epochs=2, augment=True), tmp_path / "run")
    history = trainer.train([synthetic_clip()], show_progress=False)
    assert [r.cond_frame for r in history] == [3, 2]
    assert [r.loss for r in history] == pytest.approx([1.8972504138946533, 1.9406447410583496], rel=1e-4)
    assert [r.localization for r in history] == pytest.approx([-0.01323832105845213, -0.014128454960882664], rel=1e-3)
    assert [r.tokens for r in history] == [("<miffy>",)] * 2
    path = trainer.save(tmp_path / "miffy.safetensors")
    with safe_open(path, "pt") as f:
        meta, keys = f.metadata(), {k: tuple(f.get_tensor(k).shape) for k in f.keys()}
        embeddings = f.get_tensor("embeddings")
    # Issue 26, item 6: the file also pins the fs it was trained at (this clip has no rate: the model's default).
    assert set(meta) == {"format", "token", "class_word", "config", "fs"}
    assert meta["fs"] == str(trainer.pipe.config.unet.default_fs)
    assert (meta["format"], meta["token"], meta["class_word"]) == ("storyagent-lora-be-1", "<miffy>", "rabbit")
    assert json.loads(meta["config"]) == asdict(one_config(epochs=2, augment=True))
    assert len(keys) == 269 and keys["embeddings"] == (7, 32)
    assert float(embeddings.double().abs().sum()) == pytest.approx(3.643747704103589, rel=1e-4)
    assert type(load_adapter(tiny_pipeline(), path)) is LoRABEConfig


# ---------------------------------------------------------------- the cast config

def test_cast_config_records_every_character_and_refuses_bad_casts():
    config = cast()
    assert type(config) is LoRABECastConfig and config.tokens == [PIP, MO] and config.characters == CAST
    assert (config.token, config.class_word) == (PIP, "fox")  # the lead's, for one-subject callers
    assert LoRABECastConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert asdict(config)["cast"][1] == {"token": MO, "class_word": "rabbit", "name": "Mo"}
    with pytest.raises(InputError, match="at least two"):
        LoRABECastConfig(cast=(CAST[0],))
    with pytest.raises(InputError, match="not contain one another"):
        cast_config([CastToken("<pip>"), CastToken("<pip>")])
    with pytest.raises(InputError, match="not contain one another"):
        cast_config([CastToken("pip"), CastToken("<pip>")])


def test_name_tokens_swaps_each_name_for_its_token():
    text = "Pip and MO swim; Pipa and Moth watch Pip."
    assert name_tokens(text, CAST) == "<pip> and <mo> swim; Pipa and Moth watch <pip>."
    assert name_tokens("Mr Fox meets Fox", [CastToken("<a>", name="Fox"), CastToken("<b>", name="Mr Fox")]) == "<b> meets <a>"


# ---------------------------------------------------------------- tokens and embeddings

def test_a_cast_adapter_has_one_token_with_its_own_blockwise_embeddings_per_character(tmp_path):
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, cast(), tmp_path)
    modules = len(pipe.unet.cross_attentions)  # 16 on the 512 model (test_lora_be), 7 on this one
    assert trainer.tokens == [PIP, MO] and len(trainer.token_embeddings) == 2
    assert [e.embeddings.shape for e in trainer.token_embeddings] == [torch.Size([modules, 32])] * 2
    assert trainer.embeddings is trainer.token_embeddings[0]
    # Each starts from its own class word; one LoRA for the whole cast.
    assert not torch.equal(trainer.token_embeddings[0].embeddings, trainer.token_embeddings[1].embeddings)
    assert sum(p is e.embeddings for p in trainer.optimizer.param_groups[0]["params"] for e in trainer.token_embeddings) == 2
    adapter = trainer.adapter()
    assert adapter.embeddings.shape == (2, modules, 32) and adapter.characters == CAST


def test_each_module_sees_each_tokens_own_embedding():
    pipe = tiny_pipeline()
    modules = len(pipe.unet.cross_attentions)
    pip, mo = BlockwiseEmbeddings(modules, 32), BlockwiseEmbeddings(modules, 32)
    torch.nn.init.normal_(pip.embeddings)
    torch.nn.init.normal_(mo.embeddings)
    ids, masks = tokenize_with_subjects(pipe.text_encoder, [f"{PIP} chases {MO} home"], [PIP, MO])
    assert masks.shape == (2, 1, 77) and masks.sum() == 2
    p, m = int(masks[0, 0].nonzero()), int(masks[1, 0].nonzero())
    assert 0 < p < m
    with torch.no_grad():
        both = cast_text_contexts(pipe.text_encoder, [pip, mo], ids, masks)
        other_mo = cast_text_contexts(pipe.text_encoder, [pip, BlockwiseEmbeddings(modules, 32)], ids, masks)
        # A prompt naming only Pip gives exactly the one-subject contexts.
        ids1, masks1 = tokenize_with_subjects(pipe.text_encoder, [f"a {PIP} hops"], [PIP, MO])
        alone = cast_text_contexts(pipe.text_encoder, [pip, mo], ids1, masks1)
        single = module_text_contexts(pipe.text_encoder, pip, ids1, masks1[0])
    assert torch.equal(alone, single)
    for i in range(modules):
        for j in range(i + 1, modules):
            diff = (both[i, 0] - both[j, 0]).abs().amax(dim=-1)
            assert torch.all(diff[:p] == 0) and diff[p] > 1e-4 and diff[m] > 1e-4
    # Mo's embeddings reach Mo's position (and after), never Pip's.
    diff = (both - other_mo).abs().amax(dim=-1)[:, 0]  # (M, L)
    assert torch.all(diff[:, :m] == 0) and torch.all(diff[:, m] > 1e-4)


# ---------------------------------------------------------------- training

def test_a_step_moves_only_the_named_characters_embeddings(tmp_path):
    trainer = LoRABETrainer(tiny_pipeline(), cast(), tmp_path)
    pip, mo = (e.embeddings for e in trainer.token_embeddings)
    start = pip.detach().clone(), mo.detach().clone()
    assert trainer.train_step(cast_clips({PIP: [pip_clip()]})[0]).tokens == (PIP,)
    after_pip = pip.detach().clone(), mo.detach().clone()
    assert not torch.equal(after_pip[0], start[0]) and torch.equal(after_pip[1], start[1])
    # Mo's step leaves Pip alone even though Adam holds momentum for Pip.
    mo_only = [c for c in cast_clips({PIP: [pip_clip()], MO: [mo_clip()]}) if c.token == MO]
    assert trainer.train_step(mo_only[0]).tokens == (MO,)
    assert torch.equal(pip, after_pip[0]) and not torch.equal(mo, after_pip[1])


def test_the_localization_loss_of_character_k_uses_ks_maps_and_ks_mask(tmp_path, monkeypatch):
    trainer = LoRABETrainer(tiny_pipeline(), cast(), tmp_path)
    (video, pip_mask), (_, mo_mask) = tensors(pip_clip()), tensors(mo_clip())
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = trainer_module.localization_loss

    def spy(attns, token_mask, masks, latent_hw, levels):
        calls.append((token_mask.clone(), masks))
        return real(attns, token_mask, masks, latent_hw, levels)

    monkeypatch.setattr(trainer_module, "localization_loss", spy)
    te = trainer.pipe.text_encoder
    with torch.no_grad(), trainer.keeping_attention():
        loc = {(tok, name): trainer.losses(video, mask, timestep=300, token=tok)[2].item()
               for tok in (PIP, MO) for name, mask in (("pip", pip_mask), ("mo", mo_mask))}
        calls.clear()
        _, _, both, _ = trainer.losses(video, [pip_mask, mo_mask], timestep=300, token=[PIP, MO])
    # The token's own maps: its positions in the step's prompt; and the mask given for it.
    _, expected = tokenize_with_subjects(te, [f"a video of {PIP} and {MO}"], [PIP, MO])
    assert calls[0][1] is pip_mask and calls[1][1] is mo_mask
    assert torch.equal(calls[0][0], expected[0]) and torch.equal(calls[1][0], expected[1])
    assert not torch.equal(calls[0][0], calls[1][0])
    # Swapping the masks changes the loss.
    assert loc[PIP, "pip"] != pytest.approx(loc[PIP, "mo"], abs=1e-6)
    assert loc[MO, "mo"] != pytest.approx(loc[MO, "pip"], abs=1e-6)
    # Two characters in one clip: the mean of each token's loss on its own mask.
    with torch.no_grad(), trainer.keeping_attention():
        _, _, swapped, _ = trainer.losses(video, [mo_mask, pip_mask], timestep=300, token=[PIP, MO])
    assert both.item() != pytest.approx(swapped.item(), abs=1e-6)


def test_training_a_cast_moves_both_characters_attention_into_their_own_masks(tmp_path):
    trainer = LoRABETrainer(tiny_pipeline(), cast(epochs=8), tmp_path)
    clips = cast_clips({PIP: [pip_clip()], MO: [mo_clip()]})
    assert [c.token for c in clips] == [PIP, MO]
    start = [e.embeddings.detach().clone() for e in trainer.token_embeddings]
    before = [trainer.evaluate(c) for c in clips]
    history = trainer.train(clips, show_progress=False)
    after = [trainer.evaluate(c) for c in clips]
    assert [r.tokens for r in history] == [(PIP,), (MO,)] * 8
    for emb, s in zip(trainer.token_embeddings, start):
        assert (emb.embeddings - s).abs().amax() > 1e-3
    for b, a in zip(before, after):
        assert a.mask_attention > b.mask_attention + 0.05
        assert a.loss < b.loss


def test_every_character_needs_clips_and_strangers_are_refused(tmp_path):
    trainer = LoRABETrainer(tiny_pipeline(), cast(), tmp_path)
    with pytest.raises(InputError, match="no reference clip of <mo>"):
        trainer.train(cast_clips({PIP: [pip_clip()]}), show_progress=False)
    with pytest.raises(InputError, match="not in this adapter's cast"):
        trainer.train(cast_clips({PIP: [pip_clip()], MO: [mo_clip()], "<crong>": [mo_clip()]}), show_progress=False)


# ---------------------------------------------------------------- two characters in one sample

def test_a_composite_sample_shows_both_characters_each_in_its_own_mask():
    pip, mo = pip_clip(), mo_clip()
    for seed in range(6):
        out = composite_clip(pip, mo, MO, np.random.default_rng(seed))
        assert out.frames.shape == pip.frames.shape and set(out.others) == {MO}
        pip_mask, mo_mask = out.masks, out.others[MO]
        assert pip_mask.any(axis=(1, 2)).all() and mo_mask.any(axis=(1, 2)).all()
        assert not (pip_mask & mo_mask).any()
        assert np.abs(out.frames[pip_mask].astype(int) - (230, 110, 20)).mean() < 40
        assert np.abs(out.frames[mo_mask].astype(int) - (240, 240, 250)).mean() < 40


def test_composite_steps_name_both_tokens_and_train_both_embeddings(tmp_path):
    trainer = LoRABETrainer(tiny_pipeline(), cast(composite_share=1.0), tmp_path)
    clips = cast_clips({PIP: [pip_clip()], MO: [mo_clip()]})
    start = [e.embeddings.detach().clone() for e in trainer.token_embeddings]
    result = trainer.train_step(clips[0], partner=trainer.partner_for(clips[0], clips))
    assert result.tokens == (PIP, MO)
    for emb, s in zip(trainer.token_embeddings, start):
        assert not torch.equal(emb.embeddings, s)
    # A one-character adapter never composites (and draws nothing for it).
    one = LoRABETrainer(tiny_pipeline(), one_config(), tmp_path / "one")
    state = one.rng.bit_generator.state
    assert one.partner_for(synthetic_clip(), [synthetic_clip()]) is None and one.rng.bit_generator.state == state


# ---------------------------------------------------------------- the file and the pipeline

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A cast adapter trained once (its pipeline, with the cast's prompt hook) and its file."""
    folder = tmp_path_factory.mktemp("cast")
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, cast(epochs=3, composite_share=0.5), folder / "run")
    trainer.train(cast_clips({PIP: [pip_clip()], MO: [mo_clip()]}), show_progress=False)
    pipe.prompt_hook = CastPromptEncoder(pipe.text_encoder, trainer.token_embeddings, trainer.tokens)
    return pipe, trainer, trainer.save(folder / "cast.safetensors")


def frames(pipe, prompt: str) -> torch.Tensor:
    image = np.full((16, 16, 3), 90, np.uint8)
    return pipe(image, prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                show_progress=False).frames


def test_the_cast_file_records_every_token_and_loads_them_all(trained):
    pipe, trainer, path = trained
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        assert tuple(f.get_tensor("embeddings").shape) == (2, len(pipe.unet.cross_attentions), 32)
    assert meta["format"] == "storyagent-lora-be-cast-1" and meta["token"] == PIP
    assert json.loads(meta["tokens"]) == [asdict(c) for c in CAST]
    adapter = LoRABEAdapter.from_pretrained(path)
    assert adapter.characters == CAST
    for table, emb in zip(adapter.token_embeddings, trainer.token_embeddings, strict=True):
        assert torch.equal(table, emb.embeddings.detach())
    fresh = tiny_pipeline()
    config = load_adapter(fresh, path)
    assert isinstance(config, LoRABECastConfig) and config.tokens == [PIP, MO] and config.characters == CAST
    assert fresh.prompt_hook.tokens == [PIP, MO]
    for prompt in (f"a {PIP} hops", f"{PIP} and {MO} swim", "a rabbit hops"):
        assert torch.allclose(frames(fresh, prompt), frames(pipe, prompt), atol=1e-5)


def test_a_prompt_naming_one_character_differs_from_one_naming_the_other(trained):
    path = trained[2]
    fresh = tiny_pipeline()
    config = load_adapter(fresh, path)
    pip, mo = (frames(fresh, name_tokens(f"{name} hops", config.characters)) for name in ("Pip", "Mo"))
    assert (pip - mo).abs().amax() > 1e-3
    assert (frames(fresh, name_tokens("Pip and Mo hop", config.characters)) - pip).abs().amax() > 1e-3


def test_a_cast_resumes_from_its_checkpoint(tmp_path):
    clips = cast_clips({PIP: [pip_clip()], MO: [mo_clip()]})
    straight = LoRABETrainer(tiny_pipeline(), cast(epochs=2, checkpoint_every=2, composite_share=0.5), tmp_path / "a")
    straight.train(clips, show_progress=False)
    first = LoRABETrainer(tiny_pipeline(), cast(epochs=2, checkpoint_every=2, composite_share=0.5), tmp_path / "b")
    first.train(clips, epochs=1, show_progress=False)
    second = LoRABETrainer(tiny_pipeline(), cast(epochs=2, checkpoint_every=2, composite_share=0.5), tmp_path / "b")
    assert len(second.train(clips, show_progress=False)) == 2 and second.step == 4
    for a, b in zip(second.token_embeddings, straight.token_embeddings, strict=True):
        assert torch.allclose(a.embeddings, b.embeddings, atol=1e-6)
    # A checkpoint of another cast is refused, not silently mixed in.
    other = cast_config([CastToken(PIP, "fox"), CastToken("<crong>", "dinosaur")], epochs=2, checkpoint_every=2)
    with pytest.raises(InputError, match="checkpoint"):
        LoRABETrainer(tiny_pipeline(), other, tmp_path / "b").resume()
