"""One place that builds rich progress bars, so every long step looks the same."""

from __future__ import annotations

import os
from pathlib import Path

from rich.color import Color
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.style import Style
from rich.text import Text

console = Console(stderr=True)


def make_progress(transient: bool = False, disable: bool = False) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )


def picture_preview(path: str | os.PathLike[str], columns: int = 64) -> Text:
    """A small colour preview of a picture for the terminal: each character cell shows two pixel rows
    (upper half block, foreground = top pixel, background = bottom pixel)."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    rows = max(2, round(columns * img.height / img.width / 2) * 2)  # cells are about twice as tall as wide
    px = img.resize((columns, rows), Image.Resampling.BOX).load()
    text = Text()
    for y in range(0, rows, 2):
        for x in range(columns):
            top, bottom = px[x, y], px[x, y + 1]
            text.append("▀", style=Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom)))
        text.append("\n")
    return text


def show_picture(path: str | os.PathLike[str]) -> None:
    """Print a link to the picture, and its preview where the terminal shows colour."""
    path = Path(path).resolve()
    console.print(f"[link={path.as_uri()}]{path}[/link]", highlight=False, soft_wrap=True)
    if console.is_terminal and console.color_system in ("truecolor", "256"):
        console.print(picture_preview(path, columns=min(64, console.width - 2)))
