"""The sound stage's time per second of film, for each engine this machine has, and its share of a run.

    python benchmarks/sound_speed.py [--shots 4] [--repeats 3]

One offline animatic run (the defaults of `storyagent run`: 512×320 at 8 fps, the example subject) is
made in this process stage by stage, imports done before the clock starts, with the sound split into
its parts: the lines spoken (each voice engine present: espeak-ng; Piper and Kokoro when their weights
are cached), the score (the composed one played by FluidSynth, or a text-to-music model when cached),
the mix (ducking, loudness, the true-peak limiter) and the film (pictures joined, held shots, AAC
muxed). Each figure is the median of `--repeats` fresh runs, given in seconds and in seconds per second
of finished film; the share is the sound stage's part of the whole run (subject to film) with the
default voice.

The numbers are as good as the machine is quiet: other processes on the same cores add to them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
PIP = ROOT / "examples" / "pip" / "pip.png"
PROMPT = "a day at the seaside"
CANDIDATE_VOICES = ("espeak", "piper:en_US-lessac-medium", "kokoro:af_heart")


def voices_here() -> list[str]:
    """The voice engines of `CANDIDATE_VOICES` that can speak on this machine."""
    from storyagent.models.voice import voice_status

    ready = {engine for engine, ok, _ in voice_status() if ok}
    return [spec for spec in CANDIDATE_VOICES if spec.split(":")[0] in ready]


def one_run(shots: int, out: Path, voice: str) -> dict[str, float]:
    """A fresh animatic run into `out`, each stage and each part of the sound timed (seconds)."""
    from storyagent.config import RunConfig
    from storyagent.tools import sound
    from storyagent.tools.film import assemble_film, title_frames
    from storyagent.tools.run import Run
    from storyagent.tools.story import write_story
    from storyagent.tools.storyboard import generate_storyboard
    from storyagent.tools.video import animate_shots

    cfg = RunConfig.build(prompt=PROMPT, subject=PIP, name="Pip", class_word="fox", shots=shots, voice=voice)
    times: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        value = fn()
        times[name] = time.perf_counter() - t
        return value

    t0 = time.perf_counter()
    with Run.open(cfg, out, show_progress=False) as run:
        times["subject"] = time.perf_counter() - t0
        script = timed("story", lambda: write_story(run))
        board = timed("storyboard", lambda: generate_storyboard(run, script))
        clips = timed("video", lambda: animate_shots(run, script, board))
        t_sound = time.perf_counter()
        voice_obj, _ = sound.find_voice(voice)
        stems = timed("narration", lambda: sound._speak(run, script, voice_obj)[0] if voice_obj else {})
        seconds = [float(stems[s.index].meta["seconds"]) if s.index in stems else None for s in script.shots]
        timing = sound.film_timing(cfg.fps, title_frames(cfg.fps), clips, seconds)
        parts = sound._parts(run)
        music = timed("score", lambda: sound.make_music(run, script, timing, parts.music))
        timed("mix", lambda: sound.make_mix(run, timing, [stems.get(s.index) for s in script.shots], music))
        times["sound"] = time.perf_counter() - t_sound
        # The film stage finds every stem fresh (a few hash checks) and joins, holds and muxes.
        timed("film", lambda: assemble_film(run, script, clips))
        times["film seconds"] = timing.duration
        times["line seconds"] = sum(s for s in seconds if s is not None)
    times["total"] = time.perf_counter() - t0
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    voices = voices_here()
    if not voices:
        raise SystemExit("No voice engine here (install espeak-ng); nothing to time.")
    with tempfile.TemporaryDirectory() as tmp:
        one_run(args.shots, Path(tmp) / "warm-up", voices[0])  # imports, fonts, codecs, the SoundFont's hash
        results = {v: [one_run(args.shots, Path(tmp) / f"{v.replace(':', '_')}{i}", v) for i in range(args.repeats)]
                   for v in voices}

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    base = results[voices[0]]
    film_s = med(base, "film seconds")
    table = Table(title=f"Sound stage, {args.shots}-shot animatic at 512×320 @ 8 fps, {film_s:.1f} s of film "
                        f"(median of {args.repeats})")
    table.add_column("part")
    table.add_column("s", justify="right")
    table.add_column("s per film s", justify="right")
    table.add_column("share of the run", justify="right")
    total = med(base, "total")
    for v in voices:
        runs = results[v]
        t = med(runs, "narration")
        table.add_row(f"narration: {v}", f"{t:.3f}", f"{t / med(runs, 'film seconds'):.4f}",
                      f"{t / med(runs, 'total'):.0%}" if v == voices[0] else "")
    for key, label in (("score", "score (composed, FluidSynth)"), ("mix", "mix (duck, -16 LUFS, limiter)"),
                       ("sound", f"sound stage ({voices[0]})"), ("film", "film (join, hold, AAC mux)")):
        t = med(base, key)
        table.add_row(label, f"{t:.3f}", f"{t / film_s:.4f}", f"{t / total:.0%}")
    table.add_row("whole run (subject to film)", f"{total:.3f}", f"{total / film_s:.4f}", "100%")
    console.print(table)


if __name__ == "__main__":
    main()
