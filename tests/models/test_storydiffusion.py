"""Consistent Self-Attention on a tiny random SDXL: equality at ratio 0, who attends to whom, the bank,
upstream's schedule (skipped first step, random bypass, one sample per step), styles, redrawing one shot.

Upstream = HVision-NKU/StoryDiffusion @ 8de45e424887766fdd84dc917436ff8605f00149.
"""

from collections import defaultdict

import numpy as np
import pytest
import torch

from storyagent.errors import WeightsNotFoundError
from storyagent.models.storydiffusion import (
    DEPICTIONS,
    STYLES,
    ConsistentAttentionConfig,
    ConsistentAttentionState,
    ConsistentSelfAttentionProcessor,
    IdentityPass,
    StoryDiffusionConfig,
    StoryDiffusionPipeline,
    load_sdxl,
    shot_prompt,
)
from tests.support.model_tester import ModelTesterMixin

SHOTS = ["runs along the beach", "sleeps under a tree", "eats a carrot", "jumps over a fence"]
SUBJECT = "a small grey rabbit"
SIZE = 32  # pixels; 16x16 latents, up-block self-attention at 4x4 (8 px/token) and 8x8 (4 px/token)


# Tests of who attends to whom share at every step and layer call; those about upstream's schedule
# (skipped first step, random bypass) pass its settings explicitly.
EXACT = {"skip_steps": 0, "bypass_early": 0.0, "bypass_late": 0.0}
UPSTREAM = {"skip_steps": 1, "bypass_early": 0.3, "bypass_late": 0.1, "bypass_until": 20}


def make_pipe(folder, steps: int = 3, read_batch_size: int = 1, **attention) -> StoryDiffusionPipeline:
    cfg = StoryDiffusionConfig(
        attention=ConsistentAttentionConfig(**{**EXACT, **attention}), num_identity=3, num_inference_steps=steps,
        guidance_scale=5.0, height=SIZE, width=SIZE, style="none", read_batch_size=read_batch_size,
    )
    return StoryDiffusionPipeline.from_pretrained(folder, config=cfg)


class Recorder:
    """Records, per consistent-attention call, the layer's input tokens and the keys it attended to."""

    def __init__(self, pipe: StoryDiffusionPipeline) -> None:
        self.calls: list[dict] = []
        self.pending: dict[str, torch.Tensor] = {}
        unet = pipe.sdxl.unet
        for name, proc in unet.attn_processors.items():
            if not isinstance(proc, ConsistentSelfAttentionProcessor):
                continue
            module = unet.get_submodule(name.removesuffix(".processor"))
            module.register_forward_pre_hook(self._pre_hook(name), with_kwargs=True)
            proc.attend = self._attend(proc, module, proc.attend)

    def _pre_hook(self, name):
        def hook(module, args, kwargs):
            self.pending[name] = args[0] if args else kwargs["hidden_states"]
        return hook

    def _attend(self, proc, module, original):
        def attend(query, key, value):
            state = proc.state
            self.calls.append({
                "layer": proc.name, "mode": state.mode, "step": state.step, "module": module,
                "hidden": self.pending[proc.name].detach().clone(),
                "key": key.transpose(1, 2).flatten(2).detach().clone(),  # (b, L, C')
                "n": state.images_in_batch,
            })
            return original(query, key, value)
        return attend


def sources(key_rows: torch.Tensor, candidates: torch.Tensor) -> list[tuple[int, int]]:
    """For each key row, the (batch row, token) of `candidates` (b, T, C') it is an exact copy of."""
    b, t, c = candidates.shape
    dist = torch.cdist(key_rows.detach().double(), candidates.detach().reshape(b * t, c).double())
    best = dist.min(dim=1)
    assert float(best.values.max()) < 1e-4, "a key row is not the projection of any known token"
    return [(int(i) // t, int(i) % t) for i in best.indices]


def attended(call: dict) -> list[dict[int, list[int]]]:
    """Per batch row of a recorded call: source row → the tokens of that row it attended to."""
    own_keys = call["module"].to_k(call["hidden"])  # (b, T, C') every token's key
    rows = []
    for row in range(own_keys.shape[0]):
        from_tokens = defaultdict(list)
        for src_row, token in sources(call["key"][row], own_keys):
            from_tokens[src_row].append(token)
        rows.append(dict(from_tokens))
    return rows


def shares_tokens(call: dict) -> bool:
    """Whether the call attended to more than the layer's own tokens (else it was plain self-attention)."""
    return call["key"].shape[1] > call["hidden"].shape[1]


def test_ratio_zero_equals_plain_sdxl(tiny_sdxl_folder):
    pipe = make_pipe(tiny_sdxl_folder, default_ratio=0.0, ratios={})
    ours = pipe(SHOTS, SUBJECT, seed=7, num_identity=2, output_type="np")
    assert ours.identity == [0, 1]

    plain = load_sdxl(tiny_sdxl_folder)
    plain.set_progress_bar_config(disable=True)
    negatives = [""] * len(SHOTS)
    reference = plain(
        prompt=ours.prompts, negative_prompt=negatives, num_inference_steps=3, guidance_scale=5.0,
        height=SIZE, width=SIZE, generator=[torch.Generator("cpu").manual_seed(7 + i) for i in range(4)],
        output_type="np",
    ).images
    for got, want in zip(ours.images, reference):
        np.testing.assert_allclose(got, want, atol=1e-5)

    # The same call with sharing on must change the pictures, or the equality above proves nothing.
    shared = make_pipe(tiny_sdxl_folder, default_ratio=1.0, ratios={})(SHOTS, SUBJECT, seed=7, num_identity=2, output_type="np")
    assert max(float(np.abs(a - b).max()) for a, b in zip(shared.images, reference)) > 1e-3


def test_identity_images_attend_to_each_others_sampled_tokens_only(tiny_sdxl_folder):
    # 8 px/token → 16 tokens, 25 % shared (k=4); 4 px/token → 64 tokens, 50 % shared (k=32).
    pipe = make_pipe(tiny_sdxl_folder, default_ratio=0.9, ratios={8: 0.25, 4: 0.5})
    rec = Recorder(pipe)
    pipe(SHOTS[:3], SUBJECT, seed=1)
    writes = [c for c in rec.calls if c["mode"] == "write"]
    assert len(writes) == 3 * len(pipe.layers)  # every consistent layer at every step
    n = 3
    for call in writes:
        hidden, key = call["hidden"], call["key"]
        b, t, _ = hidden.shape
        assert b == 2 * n, "classifier-free guidance doubles the batch: [uncond × n, cond × n]"
        k = round({16: 0.25, 64: 0.5}[t] * t)
        assert key.shape[1] == t + (n - 1) * k
        picked_by_image: dict[int, set[int]] = {}
        for row, from_tokens in enumerate(attended(call)):
            branch = row // n
            # only images of the same guidance branch
            assert {r // n for r in from_tokens} == {branch}
            assert sorted(from_tokens[row]) == list(range(t)), "an image sees all of its own tokens"
            for src_row, tokens in from_tokens.items():
                if src_row == row:
                    continue
                assert len(tokens) == len(set(tokens)) == k
                # an image's sample is the same whoever looks at it, in both branches
                assert picked_by_image.setdefault(src_row % n, set(tokens)) == set(tokens)
            assert len(from_tokens) == n


def test_second_phase_reads_the_stored_bank(tiny_sdxl_folder):
    pipe = make_pipe(tiny_sdxl_folder, default_ratio=0.5, ratios={})
    rec = Recorder(pipe)
    out = pipe(SHOTS, SUBJECT, seed=2, num_identity=3)
    assert out.identity == [0, 1, 2] and len(out.images) == 4
    writes = {(c["layer"], c["step"]): c for c in rec.calls if c["mode"] == "write"}
    reads = [c for c in rec.calls if c["mode"] == "read"]
    assert len(reads) == 3 * len(pipe.layers)
    assert {c["step"] for c in reads} == {0, 1, 2}
    for call in reads:
        written = writes[(call["layer"], call["step"])]
        module, t = call["module"], call["hidden"].shape[1]
        k = round(0.5 * t)
        assert call["key"].shape == (2, t + 3 * k, module.to_k.out_features)
        own = module.to_k(call["hidden"])
        identity_keys = module.to_k(written["hidden"])  # (6, T, C') keys of the identity shots, same step
        for branch in range(2):
            assert [s for s in sources(call["key"][branch, :t], own)] == [(branch, i) for i in range(t)]
            banked = sources(call["key"][branch, t:], identity_keys)
            # k tokens of each of the 3 identity shots, all from the same guidance branch at this step
            assert {r // 3 for r, _ in banked} == {branch}
            assert sorted(sum(1 for r, _ in banked if r % 3 == j) for j in range(3)) == [k] * 3


def test_deterministic_per_seed_and_without_guidance(tiny_sdxl_folder):
    pipe = make_pipe(tiny_sdxl_folder, default_ratio=0.5, ratios={})
    a = pipe(SHOTS, SUBJECT, seed=3, output_type="np").images
    b = pipe(SHOTS, SUBJECT, seed=3, output_type="np").images
    c = pipe(SHOTS, SUBJECT, seed=4, output_type="np").images
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, c)) > 1e-3

    # guidance ≤ 1: no unconditional branch, the batch is the images alone
    rec = Recorder(pipe)
    pipe(SHOTS, SUBJECT, seed=3, guidance_scale=1.0, output_type="np")
    assert {c["hidden"].shape[0] for c in rec.calls if c["mode"] == "write"} == {3}
    assert {c["hidden"].shape[0] for c in rec.calls if c["mode"] == "read"} == {1}
    assert pipe.state.bank == {} and pipe.state.mode == "off", "the bank is freed after the call"


def test_read_without_bank_and_branch_mismatch_fail_clearly(tiny_sdxl_folder):
    pipe = make_pipe(tiny_sdxl_folder)
    pipe.state.begin("read", [0], (SIZE, SIZE))
    with pytest.raises(RuntimeError, match="no identity tokens stored"):
        pipe.sdxl(prompt="a rabbit", num_inference_steps=2, height=SIZE, width=SIZE, output_type="np")
    pipe.state.clear()


class TestStoryDiffusionModel(ModelTesterMixin):
    """The SDXL under Consistent Self-Attention: save/load round trip and half precision."""

    # diffusers only warns about checkpoint weights the SDXL does not use: no loader here refuses one.
    test_unknown_checkpoint_keys_raise = None

    @pytest.fixture
    def model(self, tiny_sdxl_folder):
        return make_pipe(tiny_sdxl_folder)

    def forward(self, model, inputs):
        return model(SHOTS[:2], SUBJECT, seed=0, num_identity=1, output_type="np").images

    def load(self, path, model):
        return StoryDiffusionPipeline.from_pretrained(path, config=model.config)  # the config is not in the folder

    def cast(self, model, dtype):
        model.sdxl.to(dtype=dtype)
        return model

    def modules(self, model):
        return [model.sdxl.unet, model.sdxl.vae, model.sdxl.text_encoder, model.sdxl.text_encoder_2]


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch sdxl-base"):
        StoryDiffusionPipeline.from_pretrained()
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_sdxl(tmp_path / "nowhere")


def test_schedule_defaults_are_upstreams():
    # gradio_app_sdxl_specific_id_low_vram.py, SpatialAttnProcessor2_0.__call__ @ 8de45e4: plain
    # attention while `cur_step < 1`, then bypass when `random.random() <= rand_num`, rand_num 0.3
    # while `cur_step < 20`, else 0.1.
    cfg = ConsistentAttentionConfig()
    assert (cfg.skip_steps, cfg.bypass_early, cfg.bypass_late, cfg.bypass_until) == (1, 0.3, 0.1, 20)
    assert [cfg.bypass_chance(s) for s in (1, 19, 20, 50)] == [0.3, 0.3, 0.1, 0.1]
    with pytest.raises(ValueError, match="bypass chances"):
        ConsistentAttentionConfig(bypass_early=1.5)


def test_skipped_first_step_is_plain_self_attention_in_both_phases(tiny_sdxl_folder):
    pipe = make_pipe(tiny_sdxl_folder, skip_steps=1)  # upstream's threshold, no random bypass
    rec = Recorder(pipe)
    pipe(SHOTS, SUBJECT, seed=1, num_identity=3)
    for call in rec.calls:
        if call["step"] == 0:
            # every key row is exactly the row's own token: attention over the image itself
            t = call["hidden"].shape[1]
            assert all(list(tokens) == [row] and tokens[row] == list(range(t))
                       for row, tokens in enumerate(attended(call)))
        else:
            assert shares_tokens(call)
    assert {c["mode"] for c in rec.calls if c["step"] == 0} == {"write", "read"}


def test_bypass_rate_follows_upstream_and_is_reproducible():
    state = ConsistentAttentionState(ConsistentAttentionConfig(**UPSTREAM))

    def bypassed(step: int, calls: int = 4000) -> torch.Tensor:
        state.step = step
        return torch.stack([~state.sharing() for _ in range(calls)]).float()  # (calls, images)

    state.begin("write", [5, 6, 7], (SIZE, SIZE))
    before = state.bypass[0].get_state()
    assert bypassed(0).all(), "the skipped step never shares"
    assert torch.equal(state.bypass[0].get_state(), before), "and draws nothing"
    early, late = bypassed(3), bypassed(25)
    # one draw per layer call for the whole identity batch
    assert torch.equal(early[:, 0:1].expand(-1, 3), early)
    assert abs(float(early.mean()) - 0.3) < 0.03 and abs(float(late.mean()) - 0.1) < 0.02
    state.begin("write", [5, 6, 7], (SIZE, SIZE))
    assert torch.equal(bypassed(3), early), "the same identity seeds draw the same bypasses"
    state.begin("write", [5, 6, 8], (SIZE, SIZE))
    assert not torch.equal(bypassed(3), early)

    # read phase: every image draws on its own, from its own seed only
    state.begin("read", [11, 12], (SIZE, SIZE))
    together = bypassed(3)
    assert abs(float(together.mean()) - 0.3) < 0.03 and not torch.equal(together[:, 0], together[:, 1])
    state.begin("read", [12], (SIZE, SIZE))
    assert torch.equal(bypassed(3)[:, 0], together[:, 1])


def test_bypass_rate_over_a_run(tiny_sdxl_folder):
    pipe = make_pipe(tiny_sdxl_folder, steps=30, **UPSTREAM)
    rec = Recorder(pipe)
    pipe(SHOTS, SUBJECT, seed=3, num_identity=2, guidance_scale=1.0, output_type="latent")
    pattern = [(c["mode"], c["layer"], c["step"], shares_tokens(c)) for c in rec.calls]
    assert not any(shared for _, _, step, shared in pattern if step == 0)
    early = [not shared for _, _, step, shared in pattern if 1 <= step < 20]
    late = [not shared for _, _, step, shared in pattern if step >= 20]
    assert len(early) == 3 * 19 * len(pipe.layers) and len(late) == 3 * 10 * len(pipe.layers)
    assert abs(np.mean(early) - 0.3) < 0.1 and abs(np.mean(late) - 0.1) < 0.08

    rec.calls.clear()
    pipe(SHOTS, SUBJECT, seed=3, num_identity=2, guidance_scale=1.0, output_type="latent")
    assert [(c["mode"], c["layer"], c["step"], shares_tokens(c)) for c in rec.calls] == pattern


def test_one_token_sample_per_step_and_resolution(tiny_sdxl_folder):
    # gradio_app_sdxl_specific_id_low_vram.py, SpatialAttnProcessor2_0.__call__ @ 8de45e4: indices1024
    # / indices4096 are drawn again only once `attn_count == total_count` (after a step's last layer)
    # and serve every layer of that resolution in the step.
    pipe = make_pipe(tiny_sdxl_folder, default_ratio=0.5, ratios={})
    rec = Recorder(pipe)
    pipe(SHOTS[:3], SUBJECT, seed=1)
    samples: dict[tuple[int, int], list] = defaultdict(list)
    for call in (c for c in rec.calls if c["mode"] == "write"):
        # what row 0 (image 0, unconditional branch) saw of images 1 and 2
        seen = attended(call)[0]
        samples[(call["step"], call["hidden"].shape[1])].append((sorted(seen[1]), sorted(seen[2])))
    assert {t for _, t in samples} == {16, 64} and len(samples) == 2 * 3
    for layers in samples.values():
        assert len(layers) == 2 and layers[0] == layers[1], "two layers of one resolution, one sample"
    for t in (16, 64):
        assert len({str(samples[(step, t)][0]) for step in range(3)}) == 3, "a new sample every step"


def test_default_style_negative_names_no_kind_of_depiction():
    default = StoryDiffusionConfig().style
    assert default == "cinematic"
    for name, style in STYLES.items():
        excluded = [d for d in DEPICTIONS if d in style.negative.lower()]
        if name == default:
            assert excluded == [], "the default must not push against a cartoon, drawn or photographed subject"
        # an opt-in style that rules out a depiction says so
        assert all(d in style.doc.lower() for d in excluded), (name, excluded)
    assert shot_prompt(SUBJECT, "waves", "photographic")[1] == STYLES["photographic"].negative
    assert "cartoon" in STYLES["photographic"].negative and "photo" in STYLES["anime"].negative


def test_redraw_one_shot_reproduces_it_exactly(tiny_sdxl_folder):
    # upstream's schedule with a high early bypass chance, so the draws a redraw must reproduce happen
    pipe = make_pipe(tiny_sdxl_folder, steps=4, **{**UPSTREAM, "bypass_early": 0.5})
    rec = Recorder(pipe)
    steps = []
    first = pipe(SHOTS, SUBJECT, seed=5, num_identity=2, output_type="np", on_step=lambda: steps.append(1))
    assert first.identity == [0, 1] and first.identity_pass == IdentityPass(SHOTS[:2], [5, 6])
    assert len(steps) == 4 * 4
    read3 = [shares_tokens(c) for c in rec.calls if c["mode"] == "read" and c["step"] > 0][-12:]  # shot 3, steps 1-3
    assert any(read3) and not all(read3), "shot 3 both shared and bypassed"

    for k, denoised in ((3, 2 + 1), (1, 2)):  # a read shot; an identity shot (the pass alone runs)
        steps.clear()
        again = pipe(SHOTS, SUBJECT, seed=5, identity=first.identity_pass, only=[k], output_type="np",
                     on_step=lambda: steps.append(1))
        assert np.array_equal(again.images[k], first.images[k])
        assert [i for i, im in enumerate(again.images) if im is not None] == [k]
        assert again.prompts[k] == first.prompts[k] and again.prompts.count(None) == 3
        assert len(steps) == 4 * denoised, "progress counts only what is denoised"

    for k in (3, 1):
        seeds = [5, 6, 7, 8]
        seeds[k] = 99
        changed = pipe(SHOTS, SUBJECT, seeds=seeds, identity=first.identity_pass, output_type="np")
        for i in range(4):
            assert np.array_equal(changed.images[i], first.images[i]) == (i != k), (k, i)
    assert changed.identity == [0], "shot 1 with another seed is no longer the identity member"


def test_batched_read_shots_draw_their_own_bypasses(tiny_sdxl_folder):
    alone = make_pipe(tiny_sdxl_folder, steps=4, **{**UPSTREAM, "bypass_early": 0.5})
    batched = make_pipe(tiny_sdxl_folder, steps=4, read_batch_size=3, **{**UPSTREAM, "bypass_early": 0.5})
    shots = [*SHOTS, "swims in a pond", "reads a book"]
    a = alone(shots, SUBJECT, seed=2, num_identity=2, output_type="np").images
    b = batched(shots, SUBJECT, seed=2, num_identity=2, output_type="np").images
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_bad_seeds_and_only_fail_clearly(tiny_sdxl_folder):
    pipe = make_pipe(tiny_sdxl_folder)
    with pytest.raises(ValueError, match="3 seeds for 4 shots"):
        pipe(SHOTS, SUBJECT, seeds=[1, 2, 3])
    with pytest.raises(ValueError, match="`only` must name shots"):
        pipe(SHOTS, SUBJECT, only=[4])
    with pytest.raises(ValueError, match="one seed per prompt"):
        pipe(SHOTS, SUBJECT, identity=IdentityPass(["a"], []))
