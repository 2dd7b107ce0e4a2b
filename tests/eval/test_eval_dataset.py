"""`storyagent eval dataset`: the paper's Sec. 4 protocol on tiny PororoSV / FlintstonesSV folders
built in each dataset's real layout (16-frame clips, so FVD runs)."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from storyagent.commands.eval import app as eval_app
from storyagent.errors import InputError
from storyagent.eval.dataset_protocol import evaluate_dataset
from storyagent.eval.dataset_split import DatasetSplit, load_split, resolve_split
from storyagent.eval.datasets import FlintstonesIndex, PororoIndex, read_flintstones, read_pororo
from storyagent.eval.generators import StillCompositeBaseline
from storyagent.eval.geometry import FrameGeometry
from storyagent.eval.i3d import I3D, I3DConfig
from storyagent.eval.lpips import LPIPS

FRAMES = 16
# Flintstones episode -> number of clips; both characters are in every clip, the first episode has the most.
EPISODES = {"s_01_e_01": 5, "s_01_e_02": 4, "s_01_e_03": 4}


def scene(seed, side=32, t=FRAMES):
    """A clip: a smooth background with a red square 'character' drifting right."""
    rng = np.random.default_rng(seed)
    bg = np.linspace(40, 200, side, dtype=np.float32)[None, :, None] * np.ones((side, 1, 3), np.float32)
    bg = (bg + rng.normal(0, 6, (side, side, 3))).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(t):
        f = bg.copy()
        f[10:22, 3 + i // 4:15 + i // 4] = (220, 30 + 5 * (seed % 7), 30)  # Fred (Pororo): red, at the left
        f[12:22, 20:28] = (30, 60, 200 + 3 * (seed % 7))  # Wilma (Crong): blue, at the right
        frames.append(f)
    return frames


def write_flintstones(root):
    (root / "video_frames_sampled").mkdir(parents=True)
    ann, n = [], 0
    for episode, count in EPISODES.items():
        for k in range(count):
            gid = f"{episode}_shot_{k:06d}_{k + 1:06d}"
            np.save(root / "video_frames_sampled" / f"{gid}.npy", np.stack(scene(n)))
            ann.append({"globalID": gid, "description": f"Fred and Wilma talk ({n}).", "characters": [
                {"entityLabel": "Fred", "labelNPC": "fred", "rectangles": [[1, 8, 20, 24]]},
                {"entityLabel": "Wilma", "labelNPC": "wilma", "rectangles": [[18, 10, 30, 24]]}]})
            n += 1
    (root / "flintstones_annotations_v1-0.json").write_text(json.dumps(ann))
    return root


def write_pororo(root):
    rows, n = [], 0
    for e, count in enumerate(EPISODES.values()):
        (root / "pororo_png" / f"ep{e}").mkdir(parents=True)
        for k in range(count):
            Image.fromarray(np.concatenate(scene(n))).save(root / "pororo_png" / f"ep{e}" / f"{k}.png")
            rows.append(f"ep{e}/{k},Pororo and Crong play ({n}).")
            n += 1
    (root / "descriptions.csv").write_text("\n".join(rows) + "\n")
    return root


def tiny_split(dataset, names, samples=10, references=16, shots=4):
    return DatasetSplit(dataset=dataset, seed=1, samples=samples, shots=shots, max_reference_clips=references,
                        characters=[{"name": n, "class_word": "person"} for n in names])


@pytest.fixture(scope="module")
def metric_models(tmp_path_factory):
    """(folder with alex.pth, heads.pth and i3d.pt, LPIPS, I3D): tiny seeded metric networks, built once
    for the module (building LPIPS' AlexNet alone costs a third of a second); the tests only read them."""
    folder = tmp_path_factory.mktemp("metric_models")
    return (folder, *tiny_metric_models(folder))


def tiny_metric_models(tmp_path):
    torch.manual_seed(0)
    lp = LPIPS("alex")
    torch.save({k: v for k, v in lp.state_dict().items() if k.startswith("features.")}, tmp_path / "alex.pth")
    torch.save({f"lin{i}.model.1.weight": l.weight.data.abs() for i, l in enumerate(lp.lins)}, tmp_path / "heads.pth")
    i3d = I3D(I3DConfig(num_classes=2, width_mult=1 / 16))  # FVD then takes 3 clips
    for m in i3d.modules():  # variance-preserving init, so random features do not vanish
        if isinstance(m, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(i3d.state_dict(), tmp_path / "i3d.pt")
    return lp.eval(), i3d.eval()


class IdentityAnimator:
    """A perfect method: returns the aligned ground-truth clip the first frame belongs to."""

    name = "identity"

    def __init__(self, index, character_names, geometry):
        self.clips = {}
        for name in character_names:
            for info in index.of(name):
                aligned = [geometry.align(f) for f in index.load(info.clip_id, name).frames]
                self.clips[aligned[0].tobytes()] = aligned

    def finetune(self, character, media):
        return {}

    def use(self, character, finetunes):
        pass

    def __call__(self, first, mask, reference, text, num_frames, character=""):
        return self.clips[first.tobytes()][:num_frames]


def test_readers_index_episodes_and_characters(tmp_path):
    fl = FlintstonesIndex(write_flintstones(tmp_path / "fl"))
    assert len(fl.of("fred")) == 13 and {c.episode for c in fl.of("wilma")} == set(EPISODES)
    clip = fl.load("s_01_e_01_shot_000000_000001", "fred")
    assert len(clip.frames) == FRAMES and clip.subject_mask[15, 8] and not clip.subject_mask[15, 24]
    assert fl.load("s_01_e_01_shot_000000_000001", "wilma").subject_mask[15, 24]
    po = PororoIndex(write_pororo(tmp_path / "po"))
    assert po.info("ep1/2").characters == {"pororo", "crong"} and po.info("ep1/2").episode == "ep1"
    assert po.load("ep0/0", "pororo").subject_mask[12:20, 6:14].mean() > 0.5  # GrabCut found the red square
    assert len(list(read_flintstones(tmp_path / "fl", "fred", limit=3))) == 3
    assert len(list(read_pororo(tmp_path / "po", limit=2))) == 2


def test_flintstones_boxes_on_the_source_video_are_rescaled(tmp_path):
    root = tmp_path / "fl"
    (root / "video_frames_sampled").mkdir(parents=True)
    np.save(root / "video_frames_sampled" / "s_01_e_01_shot_1.npy", np.stack(scene(0, side=64, t=4)))
    # Fred's square sits at x 3..15, y 10..22 of a 64×64 frame: ×10 and ×7.5 on 640×480.
    ann = [{"globalID": "s_01_e_01_shot_1", "description": "", "characters": [
        {"entityLabel": "Fred", "rectangles": [[20, 60, 170, 180]]}]}]
    (root / "flintstones_annotations_v1-0.json").write_text(json.dumps(ann))
    clip = FlintstonesIndex(root).load("s_01_e_01_shot_1", "fred")
    ys, xs = np.nonzero(clip.subject_mask)
    assert 1 <= xs.min() <= 5 and 13 <= xs.max() <= 17 and 7 <= ys.min() <= 12


def test_split_is_seeded_and_never_tests_on_the_reference(tmp_path):
    index = FlintstonesIndex(write_flintstones(tmp_path / "fl"))
    split = tiny_split("flintstones", ["fred", "wilma"])
    first, again = resolve_split(split, index), resolve_split(split, index)
    assert [(c.train_clips, c.test) for c in first] == [(c.train_clips, c.test) for c in again]
    for c in first:
        assert c.train_episode == "s_01_e_01" and len(c.train_clips) == 5
        assert len(c.test) == 2 and all(len(s) == 4 for s in c.test)
        tested = {t for s in c.test for t in s}
        assert not tested & set(c.train_clips)
        assert all(index.info(t).episode != "s_01_e_01" for t in tested)
    # A split that tests on a reference clip is refused, naming it.
    bad = split.model_copy(deep=True)
    bad.characters[0].test = [[first[0].train_clips[0]]]
    with pytest.raises(InputError, match="both as a reference and as a test clip"):
        resolve_split(bad, index)
    # The shipped splits hold the paper's character counts: PororoSV 5, FlintstonesSV 4; 10 x 4 shots.
    for fmt, count in (("pororo", 5), ("flintstones", 4)):
        shipped = load_split(None, fmt)
        assert len(shipped.characters) == count and (shipped.samples, shipped.shots) == (10, 4)
        assert shipped.assumptions, "what the file assumes is said in its header"


def test_geometry_aligns_without_crop_or_squash():
    frame = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    box = FrameGeometry(320, 512, "letterbox")
    assert box.align(frame).shape == (320, 512, 3) and box.content_box(frame.shape) == (0, 320, 96, 416)
    region = box.compared([box.align(frame)], frame.shape)[0]
    assert region.shape == (320, 320, 3)  # the whole ground-truth frame, scaled, nothing dropped
    crop = FrameGeometry(320, 512, "crop")
    assert crop.compared([crop.align(frame)], frame.shape)[0].shape == (320, 512, 3)
    with pytest.raises(ValueError, match="not the model's"):
        box.compared([frame], frame.shape)


@pytest.mark.parametrize("fmt", ["flintstones", "pororo"])
def test_identity_animator_scores_perfectly(tmp_path, fmt, metric_models):
    root = write_flintstones(tmp_path / "d") if fmt == "flintstones" else write_pororo(tmp_path / "d")
    index = FlintstonesIndex(root) if fmt == "flintstones" else PororoIndex(root)
    names = ["wilma"] if fmt == "flintstones" else ["crong"]
    characters = resolve_split(tiny_split(fmt, names, samples=1), index)
    geometry = FrameGeometry(32, 48, "letterbox")
    _, lp, i3d = metric_models
    result = evaluate_dataset(index, characters, IdentityAnimator(index, names, geometry), geometry, tmp_path / "w",
                              lp, i3d, show_progress=False)
    assert len(result.rows) == 4 and result.rows[0]["Character"] == names[0]
    assert result.summary["SSIM"] == pytest.approx(1.0) and result.summary["PSNR"] == float("inf")
    assert result.summary["LPIPS"] == pytest.approx(0.0, abs=1e-6)
    assert result.summary["FVD"] == pytest.approx(0.0, abs=1e-4)
    # The CPU baseline (a pasted, still subject) is measurably worse on the same shots.
    base = evaluate_dataset(index, characters, StillCompositeBaseline(), geometry, tmp_path / "w", show_progress=False)
    assert base.summary["SSIM"] < 0.99 and base.summary["PSNR"] < 40 and base.summary["FVD"].startswith("n/a (no I3D")


def test_cli_animatic_report_beside_the_paper(tmp_path, metric_models):
    write_pororo(tmp_path / "po")
    models = metric_models[0]
    result = CliRunner().invoke(eval_app, [
        "dataset", str(tmp_path / "po"), "--format", "pororo", "--method", "animatic", "--characters", "pororo,crong",
        "--size", "48x32", "--samples", "1", "--out", str(tmp_path / "rep"), "--lpips-heads",
        str(models / "heads.pth"), "--lpips-backbone", str(models / "alex.pth"), "-q"])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "rep" / "table1.md").read_text()
    assert "| Method | Source | FVD↓ | SSIM↑ | PSNR↑ | LPIPS↓ |" in md
    # The paper's Table 1 rows beside ours (PororoSV: StoryAgent's FVD 2070.56, SSIM 0.6995), Table 5 beside too.
    assert "| StoryAgent | paper, Table 1 | 2070.6 | 0.6995 | 17.51 | 0.2535 |" in md and "(this run)" in md
    assert "| DC-finetuning | paper, Table 5 | 2251.5 |" in (tmp_path / "rep" / "table5.md").read_text()
    assert "letterboxed into the model's 48×32 frame" in md
    ours = [r for r in csv.DictReader((tmp_path / "rep" / "table1.csv").open()) if r["Source"] == "this run"][0]
    assert 0 < float(ours["SSIM"]) < 1 and float(ours["LPIPS"]) > 0 and ours["FVD"].startswith("n/a (no I3D")
    assert len(list(csv.DictReader((tmp_path / "rep" / "shots.csv").open()))) == 8
    for metric in ("fvd", "ssim", "psnr", "lpips"):
        assert (tmp_path / "rep" / f"{metric}.png").exists()
    per_character = list(csv.DictReader((tmp_path / "rep" / "per_character.csv").open()))
    assert [(r["Character"], r["Training episode"], r["Samples"], r["Shots"]) for r in per_character] == [
        ("pororo", "ep0", "1", "4"), ("crong", "ep0", "1", "4")]
    split = json.loads((tmp_path / "rep" / "split.json").read_text())
    assert [c["train_episode"] for c in split["characters"]] == ["ep0", "ep0"]


def test_cli_refuses_bad_input_in_one_sentence(tmp_path):
    result = CliRunner().invoke(eval_app, ["dataset", str(tmp_path), "--format", "flintstones", "-q"])
    assert result.exit_code == 2 and "not a FlintstonesSV folder" in result.output
    result = CliRunner().invoke(eval_app, ["dataset", str(tmp_path), "--format", "ucf", "-q"])
    assert result.exit_code == 2 and "pororo or flintstones" in result.output
    write_flintstones(tmp_path / "fl")
    result = CliRunner().invoke(eval_app, ["dataset", str(tmp_path / "fl"), "--format", "flintstones",
                                           "--method", "animatic", "--characters", "dino", "-q"])
    assert result.exit_code == 2 and "'dino'" in result.output
    (tmp_path / "split.json").write_text(json.dumps({"dataset": "pororo", "characters": []}))
    result = CliRunner().invoke(eval_app, ["dataset", str(tmp_path / "fl"), "--format", "flintstones",
                                           "--split", str(tmp_path / "split.json"), "-q"])
    assert result.exit_code == 2 and "is for pororo" in result.output


def test_storyagent_trains_once_per_character_and_never_sees_a_test_clip(tmp_path, monkeypatch, tiny_weights):
    from storyagent.eval import generators
    from storyagent.weights import env_var

    for name, path in tiny_weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    index = FlintstonesIndex(write_flintstones(tmp_path / "fl"))
    characters = resolve_split(tiny_split("flintstones", ["fred", "wilma"], samples=1, references=2, shots=2), index)
    tested = {t for c in characters for s in c.test for t in s}
    seen: list[tuple[str, list[str]]] = []
    call = generators.FineTunedGenerator.__call__

    def spy(self, first, mask, reference, text, num_frames, character=""):
        seen.append((character, list(reference.clip_ids)))
        return call(self, first, mask, reference, text, num_frames, character)

    monkeypatch.setattr(generators.FineTunedGenerator, "__call__", spy)

    def generator(**kw):
        return generators.FineTunedGenerator(steps=2, anydoor_steps=1, lora_be_epochs=1, show_progress=False,
                                             work_dir=tmp_path / "subjects", **kw)

    gen = generator()
    result = evaluate_dataset(index, characters, gen, FrameGeometry(*gen.size), tmp_path / "w", show_progress=False)
    assert len(result.rows) == 4 and 0 < result.summary["SSIM"] < 1
    # One StoryAnyDoor and one LoRA-BE per character, however many shots it has.
    assert gen.trainings == [("fred", "story_anydoor"), ("fred", "lora_be"), ("wilma", "story_anydoor"),
                             ("wilma", "lora_be")]
    assert gen.finetunes["fred"]["lora_be"]["key"] != gen.finetunes["wilma"]["lora_be"]["key"]
    # Every shot used its own character's reference, from the training episode only.
    assert [c for c, _ in seen] == ["fred"] * 2 + ["wilma"] * 2
    for _, ids in seen:
        assert ids and not set(ids) & tested and all(index.info(i).episode == "s_01_e_01" for i in ids)
    # Another evaluation finds both characters' fine-tunes in the cache.
    media = tmp_path / "w" / "references"
    again = generator()
    for c in characters:
        again.prepare(c, None, media / c.name)
    def keys(g):
        return {c: {m: t["key"] for m, t in tunes.items()} for c, tunes in g.finetunes.items()}

    assert again.trainings == [] and keys(again) == keys(gen)
    # LoRA-DC (Table 4) trains its own LoRA (no block-wise embeddings), cached apart from LoRA-BE.
    dc = generator(video="lora-dc")
    dc.prepare(characters[0], None, media / "fred")
    assert dc.trainings == [("fred", "lora_be")]
    assert dc.finetunes["fred"]["lora_be"]["key"] != gen.finetunes["fred"]["lora_be"]["key"]
    from storyagent.models.lora_be import LoRABEAdapter

    def table(g):
        return LoRABEAdapter.from_pretrained(g.finetunes["fred"]["lora_be"]["path"]).embeddings

    # LoRA-DC keeps the class word's embedding in every module; LoRA-BE moved its block-wise embeddings apart.
    assert torch.equal(table(dc), table(dc)[:1].expand_as(table(dc)))
    assert not torch.equal(table(gen), table(gen)[:1].expand_as(table(gen)))
