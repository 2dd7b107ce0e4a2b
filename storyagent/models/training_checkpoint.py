"""Resumable training: the checkpoint folder and the step loop the clip fine-tunes share.

LoRA-BE (`lora_be.LoRABETrainer` on DynamiCrafter, `wan.WanLoRABETrainer` on Wan) and DC-finetuning
(`dynamicrafter.finetune_image.ImageInjectionTrainer`) train alike: one step per reference clip, a
checkpoint every `config.checkpoint_every` steps and after the last, and a new trainer on the same
`output_dir` carries on from the last checkpoint on the path an uninterrupted run takes. A checkpoint
is the folder `<output_dir>/checkpoint`:

- the weights trained so far, in the trainer's own file (`save_weights` / `load_weights`);
- `optimizer.pt`: Adam's state;
- `generator.pt`: the state of the torch generator that draws timesteps and noise;
- `state.json`: {"step": steps taken, "rng": the numpy generator's state (windows, partners, augmentations)}.

`state.json` is written last and read first: a folder without it holds no checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

R = TypeVar("R")


class ResumableTrainer:
    """Checkpoints and the step loop of a trainer; a trainer sets the attributes below in its `__init__`
    and says how its weights are written and read back (`save_weights`, `load_weights`)."""

    config: Any
    """The fine-tune's settings; `checkpoint_every` is read here."""
    output_dir: Path
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    """Timesteps and noise."""
    rng: np.random.Generator
    """Windows, partners and augmentations."""
    step: int
    """Optimizer steps taken."""

    def start_state(self, seed: int) -> None:
        """Step 0, with the numpy rng and the torch generator seeded with `seed`: what a checkpoint saves."""
        self.step = 0
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def save_weights(self, folder: Path) -> None:
        """Write the weights trained so far into the checkpoint `folder`."""
        raise NotImplementedError

    def load_weights(self, folder: Path) -> None:
        """Load the weights `save_weights` wrote into `folder` into the models being trained."""
        raise NotImplementedError

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoint"

    def save_checkpoint(self) -> Path:
        from storyagent.fileio import atomic_path, atomic_write_json

        folder = self.checkpoint_dir
        folder.mkdir(parents=True, exist_ok=True)
        self.save_weights(folder)
        with atomic_path(folder / "optimizer.pt") as tmp:
            torch.save(self.optimizer.state_dict(), tmp)
        with atomic_path(folder / "generator.pt") as tmp:
            torch.save(self.generator.get_state(), tmp)
        atomic_write_json(folder / "state.json", {"step": self.step, "rng": self.rng.bit_generator.state})
        return folder

    def resume(self) -> bool:
        """Continue from the last checkpoint in `output_dir`, if there is one."""
        folder = self.checkpoint_dir
        if not (folder / "state.json").exists():
            return False
        self.load_weights(folder)
        # Optimizer state and RNG are plain tensors/numbers: weights_only loading is enough.
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.generator.set_state(torch.load(folder / "generator.pt", weights_only=True))
        state = json.loads((folder / "state.json").read_text())
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
        return True

    def run_steps(self, total: int, step: Callable[[], R], status: Callable[[R], str], label: str,
                  show_progress: bool = True) -> list[R]:
        """Call `step` (one optimizer step, which advances `self.step`) until `total` steps are taken, with a
        progress bar `label` whose status is `status(result)`; checkpoints every `config.checkpoint_every`
        steps and after the last. The results of the steps taken here (none before a resume)."""
        from storyagent.progress import make_progress

        history: list[R] = []
        with make_progress(disable=not show_progress) as bar:
            task = bar.add_task(label, total=total, completed=self.step, status="")
            while self.step < total:
                history.append(step())
                bar.update(task, completed=self.step, status=status(history[-1]))
                if self.step % self.config.checkpoint_every == 0 or self.step == total:
                    self.save_checkpoint()
        return history
