"""Sub-command groups mounted by `storyagent.cli`, and the one way every command reports a user error."""

from __future__ import annotations

import typer
from rich.markup import escape

from storyagent.progress import console


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on one line and return the exit to raise (never a traceback)."""
    # Escaped: a message's brackets (`pip install -e ".[ray]"`, a path) are text, not rich markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
