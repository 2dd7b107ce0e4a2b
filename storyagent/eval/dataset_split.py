"""The protocol's split (paper, Sec. 4): per character, reference videos from one training episode
and test samples of consecutive shots from other episodes.

A split file (`storyagent/eval/splits/<format>.json`, shipped with the package, or `--split FILE`)
names the characters and, per character, optionally the training episode and the test samples.
What it leaves open is resolved against the dataset with the file's seed: the training episode is
the one with the most clips of the character (ties: the first in the dataset's order); the test
samples are drawn from the character's clips of every other episode, in runs of `shots` clips in
episode order. The resolved split (every clip id named) is written beside the report, and can be
given back with `--split` to repeat the run exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from storyagent.errors import InputError
from storyagent.eval.datasets import DatasetIndex
from storyagent.fileio import atomic_write_json


class CharacterSplit(BaseModel):
    name: str = Field(description="The character as the dataset labels it (fred, pororo ...).")
    class_word: str = Field(default="character", description="What it is, for LangSAM and LoRA-BE's first embedding.")
    train_episode: str | None = Field(default=None, description="The episode whose clips are the reference videos; "
                                      "null: the episode with the most clips of the character.")
    train_clips: list[str] | None = Field(default=None, description="The reference clips; null: the character's "
                                          "clips of the training episode (at most max_reference_clips).")
    test: list[list[str]] | None = Field(default=None, description="Test samples, each a list of shot clip ids; "
                                         "null: drawn with the seed from the other episodes.")


class DatasetSplit(BaseModel):
    dataset: str = Field(description="pororo or flintstones.")
    protocol: str = Field(default="", description="The protocol in words, as the report prints it.")
    paper: list[str] = Field(default_factory=list, description="What the paper states of this split, cited "
                             "(storyagent.eval.paper_tables.PAPER_PROTOCOL).")
    assumptions: list[str] = Field(default_factory=list, description="What the paper leaves open and the split "
                                   "decides (or where it departs from the paper).")
    seed: int = Field(default=0, description="Seed of the test-sample draw.")
    samples: int = Field(default=10, ge=1, description="Test samples per character.")
    shots: int = Field(default=4, ge=1, description="Shots (clips) per test sample.")
    max_reference_clips: int = Field(default=16, ge=1, description="Reference clips per character, at most.")
    characters: list[CharacterSplit] = Field(description="The characters evaluated.")


@dataclass
class ResolvedCharacter:
    name: str
    class_word: str
    train_episode: str
    train_clips: list[str]
    test: list[list[str]]


def load_split(path: Path | None, format: str) -> DatasetSplit:
    """The split in `path`, or the one shipped for `format`."""
    try:
        text = (Path(path).read_text(encoding="utf-8") if path is not None
                else resources.files("storyagent.eval").joinpath("splits", f"{format}.json").read_text(encoding="utf-8"))
        split = DatasetSplit.model_validate(json.loads(text))
    except FileNotFoundError:
        raise InputError(f"Split file {path} does not exist.") from None
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"Split file {path or format + '.json'} is not a valid split ({first}).") from None
    if split.dataset != format:
        raise InputError(f"Split file {path} is for {split.dataset}, not {format}; give --format {split.dataset}.")
    return split


def _draw(candidates: list[list[str]], count: int, seed: int, name: str) -> list[list[str]]:
    # A per-character stream: adding a character to the file leaves the others' draws as they were.
    stream = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
    picks = np.random.default_rng(stream).choice(len(candidates), size=min(count, len(candidates)), replace=False)
    return [candidates[i] for i in sorted(picks)]


def resolve_character(entry: CharacterSplit, split: DatasetSplit, index: DatasetIndex) -> ResolvedCharacter:
    clips = index.of(entry.name)
    if not clips:
        raise InputError(f"No clip of {entry.name!r} in {index.root}; check the split's character names.")
    episodes = Counter(c.episode for c in clips)
    train_episode = entry.train_episode or max(episodes, key=lambda e: (episodes[e], -list(episodes).index(e)))
    train = entry.train_clips or [c.clip_id for c in clips if c.episode == train_episode][:split.max_reference_clips]
    if not train:
        raise InputError(f"Episode {train_episode!r} has no clip of {entry.name!r}; pick another training episode.")
    if entry.test is not None:
        test = entry.test
    else:
        candidates = []
        for episode in episodes:
            if episode == train_episode:
                continue
            ids = [c.clip_id for c in clips if c.episode == episode]
            candidates += [ids[i:i + split.shots] for i in range(0, len(ids) - split.shots + 1, split.shots)]
        test = _draw(candidates, split.samples, split.seed, entry.name)
    resolved = ResolvedCharacter(entry.name, entry.class_word, train_episode, train, test)
    check_no_leak(resolved, index)
    return resolved


def check_no_leak(character: ResolvedCharacter, index: DatasetIndex) -> None:
    """The reference never comes from a test clip, nor from a test clip's episode."""
    tested = {c for sample in character.test for c in sample}
    shared = tested & set(character.train_clips)
    if shared:
        raise InputError(f"The split uses {sorted(shared)[0]} both as a reference and as a test clip of "
                         f"{character.name}; the reference must never come from a test clip.")
    for clip_id in sorted(tested):
        if index.info(clip_id).episode == character.train_episode:
            raise InputError(f"Test clip {clip_id} of {character.name} is from the training episode "
                             f"{character.train_episode}; test samples must come from other episodes.")


def resolve_split(split: DatasetSplit, index: DatasetIndex) -> list[ResolvedCharacter]:
    return [resolve_character(c, split, index) for c in split.characters]


def write_resolved(split: DatasetSplit, resolved: list[ResolvedCharacter], path: Path) -> Path:
    """The split with every clip id named: give it to `--split` to repeat the run exactly."""
    data = split.model_dump(mode="json")
    data["characters"] = [{"name": r.name, "class_word": r.class_word, "train_episode": r.train_episode,
                           "train_clips": r.train_clips, "test": r.test} for r in resolved]
    atomic_write_json(path, data)
    return path
