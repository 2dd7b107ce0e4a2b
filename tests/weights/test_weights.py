import pickle

import pytest
import torch

from storyagent.errors import UnsafeCheckpointError, WeightsNotFoundError
from storyagent.weights import WEIGHTS, env_var, load_pickled_state_dict, resolve_weights, weights_available


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    # huggingface_hub reads HF_HOME at import; point its cache constant at an empty folder instead.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    # ... and the StoryAgent cache, where `weights fetch` records its conversions.
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))


def test_missing_weights_name_the_fetch_command():
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("sdxl-base")
    assert "storyagent weights fetch sdxl-base" in str(info.value)
    assert "STORYAGENT_WEIGHTS_SDXL_BASE" in str(info.value)
    assert not weights_available("dynamicrafter-512")


def test_local_path_and_environment_override(tmp_path, monkeypatch):
    folder = tmp_path / "sdxl"
    folder.mkdir()
    assert resolve_weights("sdxl-base", folder) == folder
    monkeypatch.setenv(env_var("sdxl-base"), str(folder))
    assert resolve_weights("sdxl-base") == folder
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights("sdxl-base", tmp_path / "nope")


def test_hf_cache_is_used_offline(tmp_path):
    spec = WEIGHTS["laion-aesthetic-v2"]
    # Lay out a cache entry exactly as huggingface_hub does: refs/main → snapshot/<commit>/file.
    repo = tmp_path / "hf" / "hub" / f"models--{spec.repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / spec.files[0]).write_bytes(b"weights")
    assert resolve_weights("laion-aesthetic-v2").read_bytes() == b"weights"


class NotATensor:
    pass


def test_pickles_load_weights_only_and_unsafe_ones_are_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "ok.ckpt")
    assert torch.equal(load_pickled_state_dict(tmp_path / "ok.ckpt")["w"], torch.ones(2))
    torch.save({"state_dict": {"w": torch.ones(2)}, "callback": NotATensor()}, tmp_path / "bad.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="Refusing checkpoint"):
        load_pickled_state_dict(tmp_path / "bad.ckpt")
    with open(tmp_path / "legacy.pkl", "wb") as fh:
        pickle.dump({"w": NotATensor()}, fh)
    with pytest.raises(UnsafeCheckpointError):
        load_pickled_state_dict(tmp_path / "legacy.pkl")


def _hf_file(tmp_path, spec, commit: str, data: bytes):
    """One file of `spec` in the Hugging Face cache layout at `commit`, refs/main pointing there."""
    repo = tmp_path / "hf" / "hub" / f"models--{spec.repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    path = repo / "snapshots" / commit / spec.files[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_converted_folder_is_found_and_a_local_copy_or_a_newer_download_wins(tmp_path, monkeypatch):
    from storyagent.weights import weights_state
    from storyagent.weights.registry import record_entry

    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(env_var("anydoor"), raising=False)
    spec = WEIGHTS["anydoor"]
    raw = _hf_file(tmp_path, spec, "a" * 40, b"upstream")
    assert resolve_weights("anydoor") == raw and weights_state("anydoor") == "not converted"
    assert not weights_available("anydoor"), "AnyDoor's loader cannot read the upstream checkpoint"

    folder = tmp_path / "cache" / "converted" / "anydoor-0123"
    folder.mkdir(parents=True)
    record_entry("anydoor", {"revision": "a" * 40, "files": [], "converted": {"folder": "converted/anydoor-0123"}})
    assert resolve_weights("anydoor") == folder and weights_state("anydoor") == "converted"
    assert weights_available("anydoor")

    raw.unlink()  # the upstream download removed to save disk: the conversion still serves
    assert resolve_weights("anydoor") == folder

    newer = _hf_file(tmp_path, spec, "b" * 40, b"another revision")
    assert resolve_weights("anydoor") == newer, "the Hugging Face cache holding another revision wins"

    local = tmp_path / "mine"
    local.mkdir()
    monkeypatch.setenv(env_var("anydoor"), str(local))
    assert resolve_weights("anydoor") == local and weights_state("anydoor") == "local path"
