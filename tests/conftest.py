import pytest
import torch

from tests.support import diffusion
from tests.support.paths import PIP, PIP_VIDEO

# Every model in the suite is tiny: with OpenMP spin-waiting, 2 threads on a busy 2-core machine ran
# the DynamiCrafter tests ~10x slower than 1 thread did.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU, none present")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch, request):
    """Each test gets its own StoryAgent cache: nothing written to ~/.cache, nothing shared between tests."""
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path_factory.mktemp("storyagent_cache")))
    # Tests never play sound: the chat names each line's file and plays nothing (also in the processes they start).
    monkeypatch.setenv("STORYAGENT_NO_PLAY", "1")
    # Films are silent unless a test is about sound (`sound` marker): a narrated, scored film costs about a
    # second more, and hundreds of tests make films. The sound tests make the default film with both.
    if request.node.get_closest_marker("sound") is None:
        monkeypatch.setenv("STORYAGENT_VOICE", "none")
        monkeypatch.setenv("STORYAGENT_MUSIC", "none")


# ---------------------------------------------------------------------- the example subject
@pytest.fixture(scope="session")
def pip_png():
    """Pip the fox, the example subject: a transparent PNG (read it, never write it)."""
    return PIP


@pytest.fixture(scope="session")
def pip_video():
    """Pip waving: the example subject as a short clip (read it, never write it)."""
    return PIP_VIDEO


# ---------------------------------------------------------------------- tiny random weights, once per session
# Session-scoped: the tests only read these folders (one that edits a checkpoint copies it first).
@pytest.fixture(scope="session")
def tiny_sdxl_folder(tmp_path_factory):
    return diffusion.save_tiny_sdxl(tmp_path_factory.mktemp("tiny_sdxl"))


@pytest.fixture(scope="session")
def tiny_langsam_weights(tmp_path_factory):
    """(Grounding DINO folder, SAM checkpoint)."""
    return diffusion.save_tiny_langsam(tmp_path_factory.mktemp("tiny_langsam"))


@pytest.fixture(scope="session")
def tiny_anydoor_folder(tmp_path_factory):
    return diffusion.save_tiny_anydoor(tmp_path_factory.mktemp("tiny_anydoor"))


@pytest.fixture(scope="session")
def tiny_dynamicrafter_folder(tmp_path_factory):
    return diffusion.save_tiny_dynamicrafter(tmp_path_factory.mktemp("tiny_dynamicrafter"))


@pytest.fixture(scope="session")
def tiny_dinov2_folder(tmp_path_factory):
    """A tiny DINOv2 and its image processor (the subject-consistency features)."""
    from tests.support.eval import save_tiny_dinov2

    return save_tiny_dinov2(tmp_path_factory.mktemp("tiny_dinov2"))


@pytest.fixture(scope="session")
def tiny_weights(tiny_sdxl_folder, tiny_langsam_weights, tiny_anydoor_folder, tiny_dynamicrafter_folder):
    """Every model of the diffusion backend, tiny and random: weight name -> path (point
    `STORYAGENT_WEIGHTS_*` at them with monkeypatch)."""
    return diffusion.tiny_weights_by_name(tiny_sdxl_folder, tiny_langsam_weights, tiny_anydoor_folder,
                                          tiny_dynamicrafter_folder)
