"""The dataset protocol on a Ray cluster (`storyagent eval dataset --ray auto|ADDRESS`).

The pieces `dataset_protocol.py` runs one after another in-process, as a graph of Ray tasks: one
per character (its reference media, and its fine-tunes, trained once: the cache keys them by
content), then one per test sample of that character, started when its character's task is done,
so a character's ten samples spread over as many workers. With a GPU method (`--device cuda`
with anydoor, storyagent, dc-finetuning or lora-dc) a task that generates or trains asks for one
GPU, every other task for one CPU; Ray's scheduler places them. A task writes only its own files under the output
folder (the reference media, the generated shots), each atomically; the driver takes the results
in the split's order (character, then sample), whatever order they finish in, and alone writes
the tables, so they are the ones the in-process run writes.

The dataset, the output folder, the weights and the StoryAgent cache must be on paths every node
sees; the driver's `STORYAGENT_*`, Hugging Face and torch-hub variables are passed to the workers.
A task whose worker dies is run again by Ray (its default, at most 3 times); a task that fails
with an error of its own stops the run with that error, and the tasks not yet done are cancelled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from storyagent.errors import StoryAgentError
from storyagent.eval.dataset_protocol import (
    DatasetEval, MetricWeights, PreparedCharacter, SampleResult, assemble, evaluate_sample, prepare_character)
from storyagent.eval.dataset_split import ResolvedCharacter
from storyagent.eval.datasets import DatasetIndex
from storyagent.eval.geometry import FrameGeometry
from storyagent.progress import make_progress

FORWARDED_ENV = ("STORYAGENT_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH_HOME")
"""Prefixes of the driver's environment variables a worker gets (weights, caches, offline switches)."""

_loaded_metrics: dict[MetricWeights, tuple[Any, Any]] = {}
"""The metric networks a worker process has loaded, so a reused worker loads them once."""


def _prepare_task(index: DatasetIndex, character: ResolvedCharacter, generator, work_dir: Path) -> PreparedCharacter:
    return prepare_character(index, character, generator, work_dir)


def _sample_task(index: DatasetIndex, character: ResolvedCharacter, sample: int, prepared: PreparedCharacter,
                 generator, geometry: FrameGeometry, work_dir: Path, metrics: MetricWeights) -> SampleResult:
    if metrics not in _loaded_metrics:
        _loaded_metrics[metrics] = metrics.load()
    lpips_model, i3d_model = _loaded_metrics[metrics]
    generator.use(character, prepared.finetunes)
    return evaluate_sample(index, character, sample, prepared.reference, generator, geometry, work_dir,
                           lpips_model, i3d_model)


def task_options(*devices: str) -> dict[str, Any]:
    """Resources of a task whose models run on `devices`: a GPU when one of them is CUDA, else a CPU."""
    if any(str(d).startswith("cuda") for d in devices):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": 1}


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def evaluate_dataset_on_ray(ray, index: DatasetIndex, characters: list[ResolvedCharacter], generator,
                            geometry: FrameGeometry, work_dir: Path, metrics: MetricWeights,
                            show_progress: bool = True, fvd_min_clips: int | None = None) -> DatasetEval:
    """`evaluate_dataset` on the cluster `ray` is connected to (see `storyagent.tools.cluster.connect`).

    Every path (the dataset's, `work_dir`, the metric weights) must be absolute: a worker does not
    start in the driver's folder.
    """
    env = {"env_vars": worker_env()}
    device = str(getattr(generator, "device", "cpu"))
    prepare = ray.remote(_prepare_task).options(
        runtime_env=env, **task_options(device if getattr(generator, "trains", False) else "cpu"))
    generate = ray.remote(_sample_task).options(runtime_env=env, **task_options(device, metrics.device))
    # Put once, fetched by every task: the index and the (unloaded) generator are sent to the cluster once.
    index_ref, generator_ref = ray.put(index), ray.put(generator)
    prepared_refs = [prepare.remote(index_ref, c, generator_ref, work_dir) for c in characters]
    sample_refs, about = [], {}
    for c, prepared in zip(characters, prepared_refs):
        for s in range(1, len(c.test) + 1):
            # A task's ObjectRef argument is its result: the sample starts once its character is prepared.
            ref = generate.remote(index_ref, c, s, prepared, generator_ref, geometry, work_dir, metrics)
            sample_refs.append(ref)
            about[ref] = (f"{c.name} sample {s}", len(c.test[s - 1]))
    pending = list(sample_refs)
    try:
        with make_progress(disable=not show_progress) as progress:
            task = progress.add_task(f"Dataset protocol on Ray: {generator.name}",
                                     total=sum(n for _, n in about.values()), status="")
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                _get(ray, done[0])  # a failed task stops the run now, not after the others
                label, shots = about[done[0]]
                progress.update(task, advance=shots, status=label)
        prepared = _get(ray, prepared_refs)
        samples = _get(ray, sample_refs)
    finally:
        for ref in pending:
            ray.cancel(ref)
    return assemble(index.format, characters, generator, geometry, prepared, samples, metrics.i3d is not None,
                    fvd_min_clips)


def _get(ray, refs):
    """`ray.get`, with a task's own error (bad input, missing weights) raised as itself."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, StoryAgentError):
            raise exc.cause from None
        raise
