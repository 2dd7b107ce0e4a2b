"""Where model weights come from: a local path or the Hugging Face cache, never the network.

Every model family names its weights once, in `specs`. `resolve_weights` (`lookup`) finds them
offline (`local_files_only=True`, or the folder `storyagent weights fetch` converted them into) or
raises `WeightsNotFoundError` naming the `storyagent weights` command that downloads them;
`storyagent.weights.fetch` is the only code that touches the network, and only when the user runs
that command (it is not imported here).

The parts import one way: specs, cache, checkpoints (leaves) <- registry (what fetch recorded)
<- lookup <- fetch. Nothing here imports `storyagent.models`; the models import this package.
"""

from storyagent.weights.cache import cache_dir, weights_fingerprint
from storyagent.weights.checkpoints import load_pickled_state_dict, load_state_dict
from storyagent.weights.lookup import (
    hf_cached,
    resolve_weights,
    resolve_weights_file,
    snapshot_commit,
    weights_available,
    weights_state,
)
from storyagent.weights.specs import WEIGHTS, WeightSpec, env_var, fetch_hint

__all__ = [
    "WEIGHTS", "WeightSpec", "cache_dir", "env_var", "fetch_hint", "hf_cached", "load_pickled_state_dict",
    "load_state_dict", "resolve_weights", "resolve_weights_file", "snapshot_commit", "weights_available",
    "weights_fingerprint", "weights_state",
]
