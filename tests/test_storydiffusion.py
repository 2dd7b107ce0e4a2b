"""Consistent Self-Attention on a tiny random SDXL: equality at ratio 0, who attends to whom, the bank."""

from collections import defaultdict

import numpy as np
import pytest
import torch

from storyagent.errors import WeightsNotFoundError
from storyagent.models.storydiffusion import (
    ConsistentAttentionConfig,
    ConsistentSelfAttentionProcessor,
    StoryDiffusionConfig,
    StoryDiffusionPipeline,
    load_sdxl,
)
from storyagent.models.storydiffusion.testing import tiny_sdxl

SHOTS = ["runs along the beach", "sleeps under a tree", "eats a carrot", "jumps over a fence"]
SUBJECT = "a small grey rabbit"
SIZE = 32  # pixels; 16x16 latents, up-block self-attention at 4x4 (8 px/token) and 8x8 (4 px/token)


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sdxl")
    tiny_sdxl(seed=0).save_pretrained(folder)
    return folder


def make_pipe(folder, **attention) -> StoryDiffusionPipeline:
    cfg = StoryDiffusionConfig(
        attention=ConsistentAttentionConfig(**attention), num_identity=3, num_inference_steps=3,
        guidance_scale=5.0, height=SIZE, width=SIZE, style="none",
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


def test_ratio_zero_equals_plain_sdxl(sdxl_folder):
    pipe = make_pipe(sdxl_folder, default_ratio=0.0, ratios={})
    ours = pipe(SHOTS, SUBJECT, seed=7, num_identity=2, output_type="np")
    assert ours.identity == [0, 1]

    plain = load_sdxl(sdxl_folder)
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
    shared = make_pipe(sdxl_folder, default_ratio=1.0, ratios={})(SHOTS, SUBJECT, seed=7, num_identity=2, output_type="np")
    assert max(float(np.abs(a - b).max()) for a, b in zip(shared.images, reference)) > 1e-3


def test_identity_images_attend_to_each_others_sampled_tokens_only(sdxl_folder):
    # 8 px/token → 16 tokens, 25 % shared (k=4); 4 px/token → 64 tokens, 50 % shared (k=32).
    pipe = make_pipe(sdxl_folder, default_ratio=0.9, ratios={8: 0.25, 4: 0.5})
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
        own_keys = call["module"].to_k(hidden)  # (b, T, C') every token's key
        assert key.shape[1] == t + (n - 1) * k
        picked_by_image: dict[int, set[int]] = {}
        for row in range(b):
            branch, image = divmod(row, n)
            from_tokens = defaultdict(list)
            for src_row, token in sources(key[row], own_keys):
                from_tokens[src_row].append(token)
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


def test_second_phase_reads_the_stored_bank(sdxl_folder):
    pipe = make_pipe(sdxl_folder, default_ratio=0.5, ratios={})
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


def test_deterministic_per_seed_and_without_guidance(sdxl_folder):
    pipe = make_pipe(sdxl_folder, default_ratio=0.5, ratios={})
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


def test_read_without_bank_and_branch_mismatch_fail_clearly(sdxl_folder):
    pipe = make_pipe(sdxl_folder)
    pipe.state.begin("read", 1, (SIZE, SIZE))
    with pytest.raises(RuntimeError, match="no identity tokens stored"):
        pipe.sdxl(prompt="a rabbit", num_inference_steps=2, height=SIZE, width=SIZE, output_type="np")
    pipe.state.clear()


def test_bf16_runs(sdxl_folder):
    pipe = make_pipe(sdxl_folder)
    pipe.sdxl.to(dtype=torch.bfloat16)
    images = pipe(SHOTS[:2], SUBJECT, seed=0, num_identity=1, output_type="np").images
    assert all(np.isfinite(im).all() and im.shape == (SIZE, SIZE, 3) for im in images)


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch sdxl-base"):
        StoryDiffusionPipeline.from_pretrained()
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_sdxl(tmp_path / "nowhere")


def test_save_pretrained_round_trips_the_sdxl(sdxl_folder, tmp_path):
    pipe = make_pipe(sdxl_folder)
    again = StoryDiffusionPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "saved"), config=pipe.config)
    ours = pipe(SHOTS[:2], SUBJECT, seed=0, num_identity=1, output_type="np").images
    theirs = again(SHOTS[:2], SUBJECT, seed=0, num_identity=1, output_type="np").images
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
