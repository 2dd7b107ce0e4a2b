"""Peak memory of reading a subject clip: 20-second clips at 480p, 1080p and 4K (issue 16, finding 3).

    python benchmarks/media_memory.py [--seconds 20] [--fps 30]

Each clip (a moving gradient with a moving disc, H.264 at the ultrafast preset and a low bitrate, so
writing the 4K one takes ~15 s) is read in a fresh interpreter by the reader a run uses:
`read_video` as `load_reference` calls it (16 frames, working size), and `load_reference` itself
(the same plus GrabCut per frame). Target: each under 400 MB above the interpreter with the media
stack imported (the reader held all 600 decoded frames before: 3.8 GB at 1080p).

Measure: the high-water mark of the child's resident memory, VmHWM in /proc/self/status, printed by
the child. It counts libav's decoder buffers and PyAV's frames, which live outside Python's
allocator: tracemalloc would not see them (PyAV's arrays are views of libav buffers) and would call
the old reader bounded too. Not `ru_maxrss`: Linux carries it over from the forking parent through
exec (a child reading nothing reported 330 MB after this script had written a 4K clip), and the
parent's RUSAGE_CHILDREN is the maximum over every child so far, not one clip's. The baseline, the
same interpreter and imports reading nothing, is measured the same way and subtracted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 400
SIZES = {"480p": (854, 480), "1080p": (1920, 1080), "4K": (3840, 2160)}
IMPORTS = ("from storyagent.media.reading import MIN_SIDE, WORK_SIDE, read_video\n"
           "from storyagent.media.reference import load_reference\n")
REPORT = "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))"


def write_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> None:
    """An H.264 clip of a dark diagonal gradient sliding under a bright disc that crosses the frame.

    Frames are made in yuv420p (no RGB conversion) and encoded fast and coarse: the clip only has to
    decode like a real one at its size, not look good.
    """
    import av

    gradient = (np.arange(height, dtype=np.uint16)[:, None] + np.arange(width, dtype=np.uint16)).astype(np.uint8) // 2
    radius = height // 4
    disc = (np.mgrid[-radius:radius, -radius:radius] ** 2).sum(axis=0) < radius**2
    picture = np.full((height * 3 // 2, width), 128, np.uint8)  # Y rows, then U and V at neutral grey
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"}
        for i in range(frames):
            luma = picture[:height]
            np.add(gradient, np.uint8(4 * i % 256), out=luma)
            left = (width - 2 * radius) * i // max(1, frames - 1)
            luma[height // 2 - radius:height // 2 + radius, left:left + 2 * radius][disc] = 235
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="yuv420p")))
        container.mux(stream.encode())


def peak_rss_mb(statement: str = "") -> float:
    """Peak resident memory (MB) of a fresh interpreter that imports the media reader and runs `statement`."""
    code = f"{IMPORTS}{statement}\n{REPORT}"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    if done.returncode:
        raise RuntimeError(f"the measured reader failed: {done.stderr.strip()[-2000:]}")
    return int(done.stdout.split()[-1]) / 1024  # kilobytes


def reading_peak_mb(clip: Path, reader: str = "read_video") -> float:
    """Peak memory (MB) `reader` adds to reading `clip` as a run does, above the imports' baseline."""
    statement = {
        "read_video": f"read_video({str(clip)!r}, 16, min_side=MIN_SIDE, max_side=WORK_SIDE)",
        "load_reference": f"load_reference({str(clip)!r}, 16)",
    }[reader]
    return peak_rss_mb(statement) - peak_rss_mb()


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    frames = round(args.seconds * args.fps)
    table = Table(title=f"Peak memory reading a {args.seconds:g} s clip ({frames} frames) above the "
                        f"{peak_rss_mb():.0f} MB baseline (VmHWM of a fresh interpreter)")
    for column in ("clip", "size", "file", "read_video", "load_reference", f"< {LIMIT_MB} MB"):
        table.add_column(column, justify="left" if column == "clip" else "right")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, (width, height) in SIZES.items():
            clip = Path(tmp) / f"{name}.mp4"
            write_clip(clip, width, height, frames, args.fps)
            peaks = [reading_peak_mb(clip, reader) for reader in ("read_video", "load_reference")]
            under = max(peaks) < LIMIT_MB
            ok &= under
            table.add_row(name, f"{width}×{height}", f"{clip.stat().st_size / 1024:.0f} KB",
                          *(f"{p:.0f} MB" for p in peaks), "yes" if under else "NO")
    Console().print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
