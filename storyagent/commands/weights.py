"""`storyagent doctor` and `storyagent weights ...`: what this machine can run, and the weights it needs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from storyagent.commands import fail
from storyagent.errors import InputError
from storyagent.progress import console

app = typer.Typer(help="List or download model weights (the only commands that use the network).",
                  no_args_is_help=True)


def doctor() -> None:
    """What works on this machine: torch, GPU, weights found, LLM configured."""
    from importlib import metadata

    from storyagent.models.device import default_device
    from storyagent.weights import WEIGHTS, weights_state

    table = Table(title="StoryAgent doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("what it enables")
    ok, no = "[green]ok[/]", "[yellow]missing[/]"
    table.add_row("python", f"{sys.version.split()[0]}", "everything")
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if default_device() == "cuda" else None
        table.add_row("torch", f"{ok} {torch.__version__}", "diffusion backend, fine-tuning, metrics")
        table.add_row("GPU", f"{ok} {gpu}" if gpu else "[yellow]none[/] (CPU only)", "diffusion backend at usable speed")
    except ImportError:
        table.add_row("torch", no, "diffusion backend, fine-tuning, metrics")
    for pkg in ("autogen", "av", "diffusers", "transformers"):
        try:
            table.add_row(pkg, f"{ok} {metadata.version(pkg)}", "")
        except metadata.PackageNotFoundError:
            table.add_row(pkg, no, "")
    table.add_row("animatic backend", ok, "the offline default: always available")
    for name, spec in WEIGHTS.items():
        state = weights_state(name)
        usable = state in ("local path", "converted", "downloaded")
        # One command fixes any missing piece: fetch downloads what is absent and converts what needs it.
        table.add_row(f"weights: {name}", f"{ok} {state}" if usable else f"{no} (storyagent weights fetch {name})",
                      spec.purpose)
    llm = "OPENAI_API_KEY set" if os.environ.get("OPENAI_API_KEY") else None
    if os.environ.get("OAI_CONFIG_LIST"):
        llm = f"OAI_CONFIG_LIST={os.environ['OAI_CONFIG_LIST']}"
    table.add_row("LLM", f"{ok} {llm}" if llm else "[yellow]none[/] (offline planner)", "LLM Story Designer, LLM Observer")
    console.print(table)


@app.command("list")
def weights_list() -> None:
    """Every model the diffusion backend and the tools can use: its state here, size and licence."""
    from storyagent.weights import WEIGHTS, weights_state
    from storyagent.weights.registry import entry_size, human_size, load_registry

    entries = load_registry()
    table = Table()
    for col in ("name", "state", "size", "licence", "purpose"):
        table.add_column(col)
    for name, spec in WEIGHTS.items():
        size = human_size(entry_size(entries[name])) if name in entries else "-"
        table.add_row(name, weights_state(name), size, spec.licence, spec.purpose)
    console.print(table)


def backend_weights(backend: str) -> tuple[str, ...]:
    """The weights `run --backend BACKEND` loads."""
    from storyagent.tools.run import backend_class

    try:
        return backend_class(backend).weights
    except InputError as exc:
        raise fail(str(exc)) from None


def parse_configs(items: list[str], names: list[str]) -> dict[str, Path]:
    """`--config NAME=FILE` options by weights name."""
    configs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise fail(f"--config {item} is not NAME=FILE; e.g. --config anydoor=my_anydoor.json.")
        if name not in names:
            raise fail(f"--config names {name}, which this command does not fetch ({', '.join(names)}).")
        if not Path(path).expanduser().is_file():
            raise fail(f"--config {item}: {path} is not a file; give the JSON file of the model's architecture.")
        configs[name] = Path(path).expanduser().resolve()
    return configs


@app.command("fetch")
def weights_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="Names from `storyagent weights list`.")] = None,
    backend: Annotated[str | None, typer.Option(help="Fetch every model this backend needs (diffusion).")] = None,
    config: Annotated[list[str] | None, typer.Option(
        help="NAME=FILE: convert NAME with the architecture in FILE (its family's config JSON) instead of the "
             "released model's; repeatable.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Download weights (resuming a partial download), convert them once where the loader needs it, and record
    size, sha256, licence and source. Uses the network; afterwards everything runs offline."""
    from storyagent.errors import StoryAgentError
    from storyagent.models.conversion import convert_downloaded
    from storyagent.weights import WEIGHTS
    from storyagent.weights.fetch import endpoint, fetch_order, fetch_weights

    wanted = list(names or []) + list(backend_weights(backend) if backend else ())
    if not wanted:
        raise fail("Name the weights to fetch (see `storyagent weights list`) or give --backend diffusion.")
    unknown = [n for n in wanted if n not in WEIGHTS]
    if unknown:
        raise fail(f"Unknown weights {', '.join(unknown)}; see `storyagent weights list`.")
    order = fetch_order(wanted)
    configs = parse_configs(config or [], order)
    for name in order:
        spec = WEIGHTS[name]
        console.print(f"fetching {name} ({spec.repo_id}, licence: {spec.licence}) ...")
        try:
            path = fetch_weights(name, configs.get(name), show_progress=not quiet, convert=convert_downloaded)
        except KeyboardInterrupt:
            raise fail("Interrupted; run the same command again to continue the download.", 130) from None
        except StoryAgentError as exc:
            raise fail(f"Could not fetch {name}: {_first_line(exc)}") from None
        except Exception as exc:  # network and hub errors: one line, not a traceback
            if os.environ.get("STORYAGENT_DEBUG"):
                raise
            raise fail(f"Could not fetch {name} from {endpoint()} ({_first_line(exc)}); check the network, then run "
                       "the same command again.") from None
        console.print(f"  {name} -> {path}")


@app.command("verify")
def weights_verify(
    names: Annotated[list[str] | None, typer.Argument(help="Names to check; default every fetched one.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Check every file `weights fetch` recorded against its recorded size and sha256; exit 1 on a problem."""
    from storyagent.weights.fetch import byte_progress
    from storyagent.weights.registry import file_problem, load_registry, names_in, recorded_files

    entries = load_registry()
    unknown = [n for n in names or [] if n not in entries]
    if unknown:
        raise fail(f"Nothing was fetched for {', '.join(unknown)}; run `storyagent weights fetch {' '.join(unknown)}`.")
    files = [f for n in names_in(entries, names) for f in recorded_files(entries[n], n)]
    if not files:
        console.print("Nothing fetched yet; `storyagent weights fetch NAME` records what it downloads.")
        return
    problems = []
    with byte_progress(not quiet) as progress:
        task = progress.add_task("verifying", total=sum(f.size for f in files))
        for f in files:
            if problem := file_problem(f, lambda n: progress.advance(task, n)):
                problems.append((f, problem))
    for f, problem in problems:
        console.print(f"[red]{problem}[/]: {f.path} ({f.name}); fix: storyagent weights fetch {f.name}",
                      highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(f"ok: {len(files)} files match their recorded size and sha256")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
