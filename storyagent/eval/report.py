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

def nice_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2, 2.5 or 5 × 10^k, at most `max_ticks` of them.

    `nice_ticks(0.12, 0.87)` -> [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]. The first and last ticks are the axis ends.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    lo, hi = min(lo, hi), max(lo, hi)
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    for power in range(math.floor(math.log10((hi - lo) / max(1, max_ticks - 1))) - 1, 400):
        for mult in (1.0, 2.0, 2.5, 5.0):
            step = mult * 10.0 ** power
            first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            if last - first + 1 <= max_ticks:
                return [_clean(k * step, step) for k in range(first, last + 1)]
    return [lo, hi]  # pragma: no cover - unreachable for finite input


def _clean(value: float, step: float) -> float:
    """Drop float noise (0.30000000000000004 -> 0.3) at the step's precision."""
    return round(value, max(0, -math.floor(math.log10(step)) + 2)) + 0.0


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """A tick's text with as many decimals as the step needs (0, 0.2, 0.4 ... ; 0.25, 0.5 ...)."""
    step = min((b - a for a, b in zip(ticks, ticks[1:])), default=1.0)
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, abs(step)):
        decimals += 1
    return f"{value:.{decimals}f}"


def shot_label_positions(breaks: Sequence[int], length: int, labels: Sequence[str] | None = None
                         ) -> list[tuple[float, str]]:
    """Where each shot's label goes on a per-frame axis: the middle of its frames (`breaks` = first frame
    of shots 2..N), with "shot 1".."shot N" unless `labels` are given."""
    edges = [0, *breaks, length]
    names = list(labels) if labels is not None else [f"shot {i + 1}" for i in range(len(edges) - 1)]
    return [((a + b - 1) / 2, names[i]) for i, (a, b) in enumerate(zip(edges, edges[1:])) if i < len(names)]


def _y_span(values: Sequence[float], y_range: tuple[float, float] | None, zero: bool) -> tuple[float, float]:
    """The data's span (from 0 when `zero`: bars start at 0); with `y_range` (e.g. (0, 1) for scores),
    that range, widened only where the data leave it."""
    if y_range is not None:
        return min([y_range[0], *values]), max([y_range[1], *values])
    if not values:
        return 0.0, 1.0
    extra = [0.0] if zero else []
    return min([*values, *extra]), max([*values, *extra])


class _Axes:
    """A plotting area with a title, round y ticks and a legend, on a white canvas."""

    def __init__(self, title: str, ylabel: str, lo: float, hi: float, size: tuple[int, int] = (760, 440),
                 subtitle: str = "") -> None:
        self.img = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.img)
        self.font, self.small = load_font(16), load_font(12)
        self.left, self.right, self.top, self.bottom = 70, size[0] - 170, 66 if subtitle else 48, size[1] - 56
        self.ticks = nice_ticks(lo, hi)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.draw.text((self.left, 8), title, fill="black", font=self.font)
        if subtitle:
            self.draw.text((self.left, 30), subtitle, fill=(60, 60, 60), font=self.small)
        self.draw.text((8, self.top - 18), ylabel, fill=(60, 60, 60), font=self.small)
        for v in self.ticks:
            y = self.y(v)
            self.draw.line([(self.left, y), (self.right, y)], fill=(230, 230, 230))
            text = tick_label(v, self.ticks)
            w = self.draw.textlength(text, font=self.small)
            self.draw.text((self.left - 6 - w, y - 7), text, fill=(60, 60, 60), font=self.small)
        self.draw.rectangle([self.left, self.top, self.right, self.bottom], outline=(80, 80, 80))

    def y(self, v: float) -> float:
        return self.bottom - (v - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)

    def x_labels(self, items: Sequence[tuple[float, str]], xlabel: str = "") -> None:
        """Centred labels under the axis at pixel x; every k-th when they would overlap."""
        widths = [self.draw.textlength(text, font=self.small) for _, text in items]
        room = (self.right - self.left) / max(1, len(items))
        every = max(1, math.ceil((max(widths, default=0) + 8) / max(room, 1e-6)))
        for i, ((x, text), w) in enumerate(zip(items, widths)):
            if i % every == 0:
                self.draw.line([(x, self.bottom), (x, self.bottom + 4)], fill=(80, 80, 80))
                self.draw.text((x - w / 2, self.bottom + 8), text, fill="black", font=self.small)
        if xlabel:
            w = self.draw.textlength(xlabel, font=self.small)
            self.draw.text(((self.left + self.right - w) / 2, self.bottom + 30), xlabel, fill=(60, 60, 60),
                           font=self.small)

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
             path: str | os.PathLike[str], *, y_range: tuple[float, float] | None = None, xlabel: str = "",
             subtitle: str = "") -> Path:
    """Grouped bars: one group per shot (labelled under the axis), one bar per series (run or method).

    `y_range` fixes the axis (e.g. (0, 1) for scores) unless a value falls outside it.
    """
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    ax = _Axes(title, ylabel, *_y_span(values, y_range, zero=True), subtitle=subtitle)
    n_series = max(1, len(series))
    group_w = (ax.right - ax.left) / max(1, len(groups))
    bar_w = group_w * 0.8 / n_series
    base = ax.y(min(max(ax.lo, 0.0), ax.hi))
    for g in range(len(groups)):
        x0 = ax.left + g * group_w + group_w * 0.1
        for s, vs in enumerate(series.values()):
            if g < len(vs) and math.isfinite(vs[g]):
                x = x0 + s * bar_w
                ax.draw.rectangle([x, min(ax.y(vs[g]), base), x + bar_w - 2, max(ax.y(vs[g]), base)],
                                  fill=PALETTE[s % len(PALETTE)])
    ax.x_labels([(ax.left + (g + 0.5) * group_w, name) for g, name in enumerate(groups)], xlabel)
    ax.legend(list(series))
    return ax.save(path)


def curve_plot(series: Mapping[str, Sequence[float]], title: str, ylabel: str, xlabel: str,
               path: str | os.PathLike[str], breaks: Sequence[int] = (), *, y_range: tuple[float, float] | None = None,
               segment_labels: Sequence[str] | None = None, subtitle: str = "") -> Path:
    """Lines over the frame index, one per series; dashed verticals at `breaks` (shot cuts).

    With `breaks`, every segment is labelled under the axis ("shot 1".."shot N", or `segment_labels`);
    without, the x axis gets round frame-index ticks.
    """
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    ax = _Axes(title, ylabel, *_y_span(values, y_range, zero=False), subtitle=subtitle)
    length = max((len(v) for v in series.values()), default=1)

    def x(i: float) -> float:
        return ax.left + (ax.right - ax.left) * (i / max(1, length - 1))

    for b in breaks:
        for yy in range(int(ax.top), int(ax.bottom), 8):
            ax.draw.line([(x(b - 0.5), yy), (x(b - 0.5), yy + 4)], fill=(150, 150, 150))
    for s, vs in enumerate(series.values()):
        pts = [(x(i), ax.y(v)) for i, v in enumerate(vs) if math.isfinite(v)]
        if len(pts) > 1:
            ax.draw.line(pts, fill=PALETTE[s % len(PALETTE)], width=2)
        for px, py in pts:
            ax.draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=PALETTE[s % len(PALETTE)])
    if breaks or segment_labels:
        items = [(x(c), text) for c, text in shot_label_positions(breaks, length, segment_labels)]
    else:
        items = [(x(v), tick_label(v, t)) for t in [nice_ticks(0, length - 1)] for v in t if v <= length - 1]
    ax.x_labels(items, xlabel)
    ax.legend(list(series))
    return ax.save(path)
