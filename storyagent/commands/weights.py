"""`storyagent doctor` and `storyagent weights ...`: what this machine can run, and the weights it needs."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from storyagent.commands import fail
from storyagent.progress import console

app = typer.Typer(help="List or download model weights (the only commands that use the network).",
                  no_args_is_help=True)


def doctor() -> None:
    """What works on this machine: torch, GPU, weights found, LLM configured."""
    from importlib import metadata

    from storyagent.weights import WEIGHTS, weights_available

    table = Table(title="StoryAgent doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("what it enables")
    ok, no = "[green]ok[/]", "[yellow]missing[/]"
    table.add_row("python", f"{sys.version.split()[0]}", "everything")
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
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
        table.add_row(f"weights: {name}", ok if weights_available(name) else f"{no} (storyagent weights fetch {name})",
                      spec.purpose)
    llm = "OPENAI_API_KEY set" if os.environ.get("OPENAI_API_KEY") else None
    if os.environ.get("OAI_CONFIG_LIST"):
        llm = f"OAI_CONFIG_LIST={os.environ['OAI_CONFIG_LIST']}"
    table.add_row("LLM", f"{ok} {llm}" if llm else "[yellow]none[/] (offline planner)", "LLM Story Designer, LLM Observer")
    console.print(table)


@app.command("list")
def weights_list() -> None:
    """Every model the diffusion backend and the tools can use, and whether it is cached here."""
    from storyagent.weights import WEIGHTS, weights_available

    table = Table()
    for col in ("name", "cached", "repository", "purpose"):
        table.add_column(col)
    for name, spec in WEIGHTS.items():
        table.add_row(name, "yes" if weights_available(name) else "no", spec.repo_id, spec.purpose)
    console.print(table)


@app.command("fetch")
def weights_fetch(names: Annotated[list[str], typer.Argument(help="Names from `storyagent weights list`.")]) -> None:
    """Download weights into the Hugging Face cache (uses the network)."""
    from storyagent.weights import WEIGHTS, download_weights

    unknown = [n for n in names if n not in WEIGHTS]
    if unknown:
        raise fail(f"Unknown weights {', '.join(unknown)}; see `storyagent weights list`.")
    for name in names:
        console.print(f"fetching {name} ...")
        try:
            path = download_weights(name)
        except Exception as exc:  # network and hub errors: one line, not a traceback
            raise fail(f"Could not fetch {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        console.print(f"  {name} → {path}")
