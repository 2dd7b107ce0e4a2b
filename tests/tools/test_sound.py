"""The sound stage on real films: espeak-ng speaks the lines, FluidSynth plays the composed score, and the
film carries the mix as AAC. Skipped, with the reason, where either is missing.

What is checked is measured on the rendered film: the audio stream's length, speech in every shot's window,
the subtitle cues against the voice, loudness and true peak (pyloudnorm, and ffmpeg's ebur128 as an
independent meter), the score's distance under the voice; then what a redo and a kill during the mix do.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.manifest import read_run
from storyagent.media import read_audio, write_wav
from storyagent.media.mixing import Line, loudness, mix, rms_db, true_peak
from storyagent.schemas import Artifact, ShotClip
from storyagent.tools.film import title_frames
from storyagent.tools.sound import BREATH, LEAD, film_timing, line_gain_db, line_style, voice_feedback
from tests.media.test_audio import ebur128
from tests.support.paths import PIP, ROOT
from tests.tools.test_film import parse_cues

pytestmark = pytest.mark.sound  # these films are made with their voice and score


def sound_missing() -> str | None:
    from storyagent.models.music import music_unavailable
    from storyagent.models.voice import best_voice_spec

    if shutil.which("espeak-ng") is None or best_voice_spec() == "none":
        return "espeak-ng is not installed (apt-get install espeak-ng)"
    return music_unavailable("auto")


needs_sound = pytest.mark.skipif(sound_missing() is not None, reason=f"no offline sound here: {sound_missing()}")

FPS = 8
ARGS = dict(prompt="a day at the seaside", subject=PIP, name="Pip", class_word="fox", shots=3, width=128,
            height=80, fps=FPS, shot_duration=2.0, voice="espeak", music="auto")


def cfg(**kw) -> RunConfig:
    return RunConfig.build(**{**ARGS, **kw})


def manifest_of(root):
    return json.loads((root / "manifest.json").read_text())


def timing_of(root):
    """The film's timing as the run recorded it: each clip's frames and each line's length."""
    arts = manifest_of(root)["artifacts"]
    shots = sorted(k for k in arts if k.startswith("shots/"))
    clips = [ShotClip.model_validate(arts[k]) for k in shots]
    seconds = [arts[f"audio/narration_{c.shot:02d}"]["meta"]["seconds"] for c in clips]
    return film_timing(FPS, title_frames(FPS), clips, seconds)


def remix(root):
    """The mix made again from the stems on disk, as the sound stage makes it (its parts kept)."""
    arts = manifest_of(root)["artifacts"]
    timing = timing_of(root)
    lines = [Line(read_audio(root / f"audio/narration_{i:02d}.wav"), line[0],
                  line_gain_db(Artifact.model_validate(arts[f"audio/narration_{i:02d}"])))
             for i, line in enumerate(timing.lines, 1)]
    return mix(timing.duration, lines, read_audio(root / "audio/music.wav"))


def files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", "transcript.json")}


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    if sound_missing() is not None:
        pytest.skip(f"no offline sound here: {sound_missing()}")
    root = tmp_path_factory.mktemp("sound") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORYAGENT_CACHE", str(root.parent / "cache"))
        run_crew(cfg(), root, show_progress=False)
    return root


@needs_sound
def test_the_film_has_an_aac_stream_as_long_as_its_pictures(film):
    timing = timing_of(film)
    with av.open(str(film / "film.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.rate == 48000 and audio.codec_context.channels == 2
        seconds = float(video.duration * video.time_base)
        assert abs(float(audio.duration * audio.time_base) - seconds) <= 0.1
        assert video.frames == timing.num_frames and abs(seconds - timing.duration) < 1e-6
    # Each line outlasts its 2 s clip here, so every shot is held until its line and a breath are over.
    assert all(hold > 0 for hold in timing.holds)
    for line, (start, end) in zip(timing.lines, timing.windows):
        assert line[0] == pytest.approx(start + LEAD) and line[1] + BREATH <= end + 1e-6


@needs_sound
def test_the_stems_as_mixed_are_the_mix_in_the_film(film, tmp_path):
    result = remix(film)
    write_wav(tmp_path / "again.wav", result.audio)
    assert (tmp_path / "again.wav").read_bytes() == (film / "audio/mix.wav").read_bytes()


@needs_sound
def test_speech_is_heard_in_every_shots_window(film):
    """The film's sound less the score as mixed leaves the voice: loud in each line's span, near silence
    between them (AAC's own error)."""
    result = remix(film)
    sound = read_audio(film / "film.mp4")
    n = len(result.audio.samples)
    assert abs(len(sound.samples) - n) < 2048
    residual = sound.samples[:n] - result.music[: len(sound.samples)] * 10 ** (result.master_gain_db / 20)
    spoken = np.zeros(n, bool)
    for a, b in result.line_spans:
        spoken[max(0, a - 4800): b + 4800] = True
    quiet = rms_db(residual[~spoken])
    for a, b in result.line_spans:
        assert rms_db(residual[a:b]) > quiet + 25, "a line's window is no louder than the gaps"


@needs_sound
def test_the_subtitle_cues_sit_inside_their_shots_and_follow_the_voice(film):
    timing, result = timing_of(film), remix(film)
    for fmt, sep in (("srt", ","), ("vtt", ".")):
        cues = parse_cues((film / f"film.{fmt}").read_text(), sep)
        assert len(cues) == 3
        for (a, b, _), (start, end), (s0, s1) in zip(cues, timing.windows, result.line_spans):
            assert start < a < b <= end
            # The voice is heard from the cue's start to its end (the engine's padding cut off the line).
            loud = np.flatnonzero(np.abs(result.voice[s0:s1, 0]) > 1e-3)
            first, last = (s0 + loud[0]) / 48000, (s0 + loud[-1]) / 48000
            assert a - 0.002 <= first < a + 0.1 and b - 0.1 < last <= b + 0.002


@needs_sound
def test_loudness_and_true_peak_measured_on_the_film_agree_with_ffmpeg(film):
    sound = read_audio(film / "film.mp4")
    ours = {"I": loudness(sound), "peak": true_peak(sound)}
    assert abs(ours["I"] - (-16)) <= 1 and ours["peak"] <= -1
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: the independent meter (ebur128) is not at hand")
    ref = ebur128(film / "film.mp4")
    assert abs(ours["I"] - ref["I"]) <= 0.5 and abs(ours["peak"] - ref["peak"]) <= 0.5
    assert abs(ref["I"] - (-16)) <= 1 and ref["peak"] <= -1


@needs_sound
def test_the_score_is_at_least_10_db_under_the_voice_while_it_speaks(film):
    result = remix(film)
    levels = result.levels()
    assert len(levels) == 3
    for voice, music in levels:
        assert math.isfinite(music) and voice - music >= 10  # the score plays (ducked), not silenced
    recorded = manifest_of(film)["artifacts"]["audio/mix"]["meta"]["music_under_voice_db"]
    assert recorded == [round(v - m, 2) for v, m in levels]
    # The score ducks over each line and is back at its bed between them.
    (a0, b0), (a1, _) = result.line_spans[:2]
    assert np.all(result.duck[a0:b0] <= 10 ** (-10 / 20)) and np.allclose(result.duck[b0 + 14400: a1 - 4800], 1)


def redo_line(root, shot, words):
    """A reviewer's "redo N: say it ..." as the review records it (agents/lines.keep_voice_words)."""
    read_run(root).add_redo("story", [shot], words, rewritten=set())


@needs_sound
def test_a_redo_of_one_line_speaks_that_line_again_and_nothing_else(tmp_path):
    root = tmp_path / "run"
    run_crew(cfg(), root, show_progress=False)
    before, windows = files(root), timing_of(root).windows

    # "louder": the same length, so the windows stay and the score is kept.
    redo_line(root, 2, "say it louder")
    run_crew(cfg(), root, resume=True, show_progress=False)
    after = files(root)
    assert {k for k in after if after[k] != before.get(k)} == {"audio/narration_02.wav", "audio/mix.wav", "film.mp4"}
    assert timing_of(root).windows == windows
    style = manifest_of(root)["artifacts"]["audio/narration_02"]["meta"]["style"]
    assert style["energy"] > 1 and style["rate"] == 1
    (v1, _), (v2, _), (v3, _) = remix(root).levels()
    assert v2 > max(v1, v3) + 1  # louder than the other lines in the mix, not levelled away

    # "slower": a longer line moves shot 2's end and shot 3's start, so the score (written to the windows),
    # the mix, the film and its subtitles are made again; no other line, picture or clip.
    redo_line(root, 2, "slower")
    run_crew(cfg(), root, resume=True, show_progress=False)
    again = files(root)
    assert {k for k in again if again[k] != after.get(k)} == {
        "audio/narration_02.wav", "audio/music.wav", "audio/mix.wav", "film.mp4", "film.srt", "film.vtt"}
    moved = timing_of(root).windows
    assert moved[0] == windows[0] and moved[1][1] > windows[1][1] and moved[2][0] == moved[1][1]
    assert voice_feedback(read_run(root), 2) == "say it louder; slower" and voice_feedback(read_run(root), 1) == ""


@needs_sound
def test_a_changed_line_text_speaks_that_line_alone_again(tmp_path):
    root = tmp_path / "run"
    run_crew(cfg(), root, show_progress=False)
    before = files(root)
    story = json.loads((root / "story.json").read_text())
    story["shots"][2]["narration"] = "At dusk Pip walked home along the shore, humming."
    (root / "story.json").write_text(json.dumps(story))
    run_crew(cfg(), root, resume=True, show_progress=False)
    after = files(root)
    stems = {k for k in after if k.startswith("audio/narration") and after[k] != before[k]}
    assert stems == {"audio/narration_03.wav"}


def test_voice_words_in_story_redos_make_the_lines_style(tmp_path):
    from storyagent.models.voice import VoiceStyle

    with pytest.MonkeyPatch.context():
        from storyagent.tools.run import Run

        with Run.open(cfg(voice="none", music="none"), tmp_path, show_progress=False) as run:
            m = run.manifest
            m.add_redo("story", [1], "make it night", rewritten={1})  # words about the picture: no voice
            m.add_redo("story", [1], "slower", rewritten=set())
            m.add_redo("story", [1], "slower, please", rewritten=set())
            assert voice_feedback(m, 1) == "slower; slower, please" and voice_feedback(m, 2) == ""
            once = VoiceStyle.from_words("slower")
            assert line_style(m, 1) == VoiceStyle.from_words("slower", base=once) and line_style(m, 1).rate < once.rate
            assert line_style(m, 2) == VoiceStyle()


def cli(root, *extra):
    return [sys.executable, "-m", "storyagent", "run", ARGS["prompt"], "--subject", str(PIP), "--name", "Pip",
            "--shots", "3", "--width", "128", "--height", "80", "--fps", str(FPS), "--voice", "espeak",
            "--music", "auto", "--out", str(root), *extra]


@needs_sound
def test_resume_after_a_kill_during_the_mix_loses_nothing(tmp_path):
    """`storyagent run` is SIGKILLed once its stems are recorded and the mix is being made; `--resume`
    reuses every stem (the same files, untouched) and finishes the film."""
    root = tmp_path / "run"
    env = {**os.environ, "STORYAGENT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(cli(root), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                arts = manifest_of(root)["artifacts"]
            except (OSError, ValueError):
                arts = {}
            if "audio/music" in arts:  # the last stem: the mix is being made now
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = arts
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        proc.wait(timeout=60)
    assert killed_at is not None, f"the run ended before its mix began: {proc.stderr.read().decode()[-500:]}"
    assert "audio/mix" not in manifest_of(root)["artifacts"] and not (root / "film.mp4").exists()
    stems = {k: (root / a["path"]) for k, a in killed_at.items() if k.startswith("audio/")}
    assert len(stems) == 4  # three lines and the score
    seen = {k: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for k, p in stems.items()}

    done = subprocess.run(cli(root, "--resume"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {k: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for k, p in stems.items()} == seen
    arts = manifest_of(root)["artifacts"]
    assert "audio/mix" in arts and manifest_of(root)["stages"]["sound"] == "done"
    with av.open(str(root / "film.mp4")) as container:
        assert container.streams.audio and container.streams.video[0].frames == timing_of(root).num_frames
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]


def test_without_espeak_or_fluidsynth_auto_makes_the_film_silent_and_says_so(tmp_path, monkeypatch, capfd):
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    result = run_crew(cfg(voice="auto", music="auto"), tmp_path / "run", show_progress=False)
    err = capfd.readouterr().err
    assert "espeak-ng" in err and "fluidsynth" in err
    assert len([line for line in err.splitlines() if "espeak-ng" in line]) == 1
    with av.open(str(tmp_path / "run/film.mp4")) as container:
        assert not container.streams.audio
    assert result.film.num_frames == title_frames(FPS) + sum(c.num_frames for c in result.clips)
    note = manifest_of(tmp_path / "run")["stages"]["sound"]
    assert note.startswith("done: ") and "espeak-ng" in note and "fluidsynth" in note
