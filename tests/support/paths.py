"""Where the tests find the repository, the example subject and the shared parity fixtures."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""
PIP = ROOT / "examples" / "pip" / "pip.png"
"""The example subject: Pip the fox, a transparent PNG."""
PIP_VIDEO = ROOT / "examples" / "pip" / "pip_wave.mp4"
SHARED_PARITY = ROOT.parent / "shared" / "parity"
"""Reference tensors made from the upstream implementations (`../shared/parity/`)."""
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def cached_weights(name: str) -> Path:
    """The local copy of the weights `name` (`storyagent.weights.resolve_weights`); the calling test is
    skipped, with the reason, when they are not on this machine."""
    import pytest

    from storyagent.errors import WeightsNotFoundError
    from storyagent.weights import resolve_weights

    try:
        return resolve_weights(name)
    except WeightsNotFoundError as exc:
        pytest.skip(str(exc))
