import pytest
import torch

# Every model in the suite is tiny: with OpenMP spin-waiting, 2 threads on a busy 2-core machine ran
# the DynamiCrafter tests ~10x slower than 1 thread did.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU, none present")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own StoryAgent cache: nothing written to ~/.cache, nothing shared between tests."""
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path_factory.mktemp("storyagent_cache")))
