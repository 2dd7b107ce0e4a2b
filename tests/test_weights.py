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
