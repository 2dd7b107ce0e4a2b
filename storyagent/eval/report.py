"""Reports: Markdown and CSV tables in the paper's layout (metric columns with ↑/↓), and PNG plots
drawn with Pillow (per-shot bars, per-frame curves), so no plotting library is needed."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from storyagent.fileio import atomic_path, atomic_write_text
from storyagent.media import load_font

# Direction of each metric, as the paper's tables mark it: True = higher is better.
HIGHER_IS_BETTER: dict[str, bool | None] = {
    "FVD": False, "SSIM": True, "PSNR": True, "LPIPS": False,
    "IS": True, "CLIP-score": True, "CLIP-temp": True, "Warping error": False, "Flow score": None,
    "Aesthetic": True,
}
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def direction(metric: str) -> bool | None:
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    if metric.startswith(("Subject", "Inter-shot")):
        return True
    return None


def header(metric: str) -> str:
    d = direction(metric)
    return metric + ("↑" if d else "↓" if d is False else "")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    return "–" if value is None else str(value)


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str], key: str,
                   bold_best: bool = True) -> str:
    """A Markdown table: one row per method/shot, metric columns marked ↑/↓, best value in bold."""
    best: dict[str, float] = {}
    if bold_best and len(rows) > 1:
        for col in columns:
            d = direction(col)
            vals = [r.get(col) for r in rows if isinstance(r.get(col), float) and math.isfinite(r[col])]
            if d is not None and vals:
                best[col] = max(vals) if d else min(vals)
    lines = ["| " + " | ".join([key] + [header(c) for c in columns]) + " |",
             "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        cells = [str(r.get(key, ""))]
        for c in columns:
            text = _fmt(r.get(c))
            if c in best and r.get(c) == best[c]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[Mapping[str, object]], columns: Sequence[str], key: str, stem: str | os.PathLike[str],
                 title: str, notes: Sequence[str] = (), bold_best: bool = True) -> tuple[Path, Path]:
    """Write `stem.md` (title, table, notes) and `stem.csv` (plain numbers) atomically."""
    stem = Path(stem)
    md = f"# {title}\n\n" + markdown_table(rows, columns, key, bold_best)
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([key, *columns])
    for r in rows:
        writer.writerow([r.get(key, "")] + ["" if r.get(c) is None else r.get(c) for c in columns])
    md_path, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
    atomic_write_text(md_path, md)
    atomic_write_text(csv_path, buf.getvalue())
    return md_path, csv_path


# ---- plots ------------------------------------------------------------------------------------

class _Axes:
    """A plotting area with a title, y-axis ticks and a legend, on a white canvas."""

    def __init__(self, title: str, ylabel: str, lo: float, hi: float, size: tuple[int, int] = (760, 420)) -> None:
        self.img = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.img)
        self.font, self.small = load_font(16), load_font(12)
        self.left, self.right, self.top, self.bottom = 70, size[0] - 170, 40, size[1] - 50
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.05 * (hi - lo)
        self.lo, self.hi = lo - pad if lo < 0 or lo - pad > 0 else 0.0, hi + pad
        self.draw.text((self.left, 10), title, fill="black", font=self.font)
        self.draw.text((self.left + 4, self.top + 4), ylabel, fill=(60, 60, 60), font=self.small)
        for i in range(6):
            v = self.lo + (self.hi - self.lo) * i / 5
            y = self.y(v)
            self.draw.line([(self.left, y), (self.right, y)], fill=(230, 230, 230))
            self.draw.text((8, y - 7), f"{v:.3g}", fill=(60, 60, 60), font=self.small)
        self.draw.rectangle([self.left, self.top, self.right, self.bottom], outline=(80, 80, 80))

    def y(self, v: float) -> float:
        return self.bottom - (v - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)

    def legend(self, labels: Sequence[str]) -> None:
        for i, label in enumerate(labels):
            y = self.top + 8 + 20 * i
            self.draw.rectangle([self.right + 12, y, self.right + 26, y + 12], fill=PALETTE[i % len(PALETTE)])
            self.draw.text((self.right + 32, y - 1), label[:18], fill="black", font=self.small)

    def save(self, path: str | os.PathLike[str]) -> Path:
        with atomic_path(path) as tmp:
            self.img.save(tmp, format="PNG")
        return Path(path)


def bar_plot(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str,
             path: str | os.PathLike[str]) -> Path:
    """Grouped bars: one group per shot, one bar per series (run or method)."""
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    ax = _Axes(title, ylabel, min(values + [0.0]), max(values + [0.0]))
    n_series = max(1, len(series))
    group_w = (ax.right - ax.left) / max(1, len(groups))
    bar_w = group_w * 0.8 / n_series
    for g, name in enumerate(groups):
        x0 = ax.left + g * group_w + group_w * 0.1
        for s, vs in enumerate(series.values()):
            if g < len(vs) and math.isfinite(vs[g]):
                x = x0 + s * bar_w
                ax.draw.rectangle([x, min(ax.y(vs[g]), ax.y(max(ax.lo, 0.0))), x + bar_w - 2,
                                   max(ax.y(vs[g]), ax.y(max(ax.lo, 0.0)))], fill=PALETTE[s % len(PALETTE)])
        ax.draw.text((x0, ax.bottom + 8), name, fill="black", font=ax.small)
    ax.legend(list(series))
    return ax.save(path)


def curve_plot(series: Mapping[str, Sequence[float]], title: str, ylabel: str, xlabel: str,
               path: str | os.PathLike[str], breaks: Sequence[int] = ()) -> Path:
    """Lines over the frame index, one per series; dashed verticals at `breaks` (shot cuts)."""
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    ax = _Axes(title, ylabel, min(values) if values else 0.0, max(values) if values else 1.0)
    length = max((len(v) for v in series.values()), default=1)

    def x(i: int) -> float:
        return ax.left + (ax.right - ax.left) * (i / max(1, length - 1))

    for b in breaks:
        for yy in range(int(ax.top), int(ax.bottom), 8):
            ax.draw.line([(x(b), yy), (x(b), yy + 4)], fill=(150, 150, 150))
    for s, vs in enumerate(series.values()):
        pts = [(x(i), ax.y(v)) for i, v in enumerate(vs) if math.isfinite(v)]
        if len(pts) > 1:
            ax.draw.line(pts, fill=PALETTE[s % len(PALETTE)], width=2)
        for px, py in pts:
            ax.draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=PALETTE[s % len(PALETTE)])
    ax.draw.text((ax.left, ax.bottom + 8), f"{xlabel} (0..{length - 1})", fill="black", font=ax.small)
    ax.legend(list(series))
    return ax.save(path)
