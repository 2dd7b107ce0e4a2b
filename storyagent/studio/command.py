"""`storyagent studio`: importable without gradio, so the CLI works without the extra."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from storyagent.commands import fail
from storyagent.progress import console

MAX_FILE_SIZE = "200mb"


def studio(
    runs: Annotated[Path, typer.Option("--runs", help="Folder of the studio's runs (made when missing).")] = Path("runs"),
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it to this computer.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
) -> None:
    """Make films in the browser: upload your character, then review every stage on the page."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise fail('The studio needs Gradio; install the extra with `pip install -e ".[studio]"`.') from None
    launch(runs, host, port, block=True)


def launch(runs: Path, host: str = "127.0.0.1", port: int = 7860, block: bool = False):
    """Serve the studio over `runs`; returns (Blocks, Studio). The server reads nothing outside `runs`:
    `allowed_paths` is that folder alone and Gradio's own upload cache is kept inside it."""
    from storyagent.studio.app import build_app
    from storyagent.studio.runs import CACHE

    runs = runs.expanduser().resolve()
    runs.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(runs / CACHE)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo, app_state = build_app(runs)
    if block:
        console.print(f"StoryAgent Studio on http://{host}:{port} (runs in {runs}); Ctrl-C stops it.")
    demo.queue(default_concurrency_limit=8).launch(
        server_name=host, server_port=port, share=False, allowed_paths=[str(runs)], max_file_size=MAX_FILE_SIZE,
        prevent_thread_lock=not block, quiet=True, show_error=False)
    return demo, app_state
