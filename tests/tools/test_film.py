"""The film's assembly: a shot lasts its clip or its line plus a breath (the last picture held, the clips'
packets copied), the soundtrack beside the pictures, and subtitle files timed to the lines. No voice
engine is needed here (tests/tools/test_sound.py makes real films with espeak-ng and FluidSynth)."""

import math
import re

import av
import cv2
import numpy as np
import pytest

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.media import Audio, read_audio, write_video, write_wav
from storyagent.schemas import ShotClip, StoryScript
from storyagent.tools.film import FILM, FilmOrder, make_film, srt_text, subtitle_cues, title_frames, vtt_text
from storyagent.tools.run import Run
from storyagent.tools.sound import BREATH, LEAD, film_timing
from tests.support.paths import PIP

pytestmark = pytest.mark.sound  # these films are made with their voice and score


def cfg(**kw) -> RunConfig:
    base = dict(prompt="a day at the seaside", subject=PIP, name="Pip", class_word="fox", shots=3, width=96,
                height=64, fps=8, shot_duration=2.0)
    return RunConfig.build(**{**base, **kw})


def clip(i, n, fps=8.0):
    return ShotClip(path=f"shots/shot_{i:02d}.mp4", input_hash=f"h{i}", shot=i, num_frames=n, fps=fps)


def script(lines):
    return StoryScript.model_validate({"title": "T", "logline": "L", "shots": [
        {"index": i, "narration": text, "description": "d", "subject_action": "a", "subject_region": "center",
         "background": "b", "shot_type": "wide", "camera_motion": "static"} for i, text in enumerate(lines, 1)]})


def test_a_shot_lasts_its_clip_or_its_line_plus_a_breath():
    timing = film_timing(8.0, 12, [clip(1, 20), clip(2, 20), clip(3, 40)], [1.0, 3.0, None])
    # Shot 1's line fits its clip; shot 2's does not: ceil((0.15 + 3 + 0.4) * 8) = 29 frames; shot 3 has no line.
    assert timing.shot_frames == [20, math.ceil((LEAD + 3.0 + BREATH) * 8), 40] and timing.holds == [0, 9, 0]
    assert timing.windows == [(1.5, 4.0), (4.0, 7.625), (7.625, 12.625)]
    assert timing.num_frames == 12 + 20 + 29 + 40 and timing.duration == timing.num_frames / 8
    assert timing.lines == [(1.5 + LEAD, 1.5 + LEAD + 1.0), (4.0 + LEAD, 4.0 + LEAD + 3.0), None]
    for line, (start, end) in zip(timing.lines[:2], timing.windows[:2]):
        assert start < line[0] and line[1] + BREATH <= end + 1e-9
    # Without any line, the film is its clips as before.
    assert film_timing(8.0, 12, [clip(1, 20), clip(2, 17)], [None, None]).shot_frames == [20, 17]


def parse_cues(text, sep):
    stamp = r"(\d\d):(\d\d):(\d\d)" + re.escape(sep) + r"(\d\d\d)"
    cues = []
    for m in re.finditer(stamp + " --> " + stamp + r"\n(.+)\n", text):
        g = [int(x) for x in m.groups()[:8]]
        cues.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                     m.group(9)))
    return cues


def test_subtitles_follow_the_lines_and_sit_inside_their_shots():
    story = script(["Pip wakes.", "A gust --> of wind\n scatters everything.", "Home again."])
    timing = film_timing(8.0, 12, [clip(1, 20), clip(2, 20), clip(3, 20)], [1.0, 3.0, None])
    cues = subtitle_cues(story, timing)
    srt, vtt = srt_text(cues), vtt_text(cues)
    assert vtt.startswith("WEBVTT\n\n") and srt.startswith("1\n00:00:01,650 --> 00:00:02,650\nPip wakes.\n\n")
    for text, sep in ((srt, ","), (vtt, ".")):
        parsed = parse_cues(text, sep)
        assert [c[2] for c in parsed] == ["Pip wakes.", "A gust -> of wind scatters everything.", "Home again."]
        for (a, b, _), (start, end), line in zip(parsed, timing.windows, timing.lines):
            assert start <= a < b <= end
            if line is not None:  # the cue is the line: from its first word to its last
                assert (a, b) == pytest.approx(line, abs=1e-3)


@pytest.fixture
def run(tmp_path):
    with Run.open(cfg(voice="none", music="none"), tmp_path / "run", show_progress=False) as run:
        yield run


def moving(n, seed, h=64, w=96):
    """A smooth random picture sliding by a pixel a frame (smooth, so H.264 keeps it within a few levels)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (h // 16 + 2, (w + n) // 16 + 2, 3)).astype(np.uint8)
    base = cv2.resize(coarse, (coarse.shape[1] * 16, coarse.shape[0] * 16), interpolation=cv2.INTER_CUBIC)[:h, :w + n]
    return [np.ascontiguousarray(base[:, t:t + w]) for t in range(n)]


def decode(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_a_held_shot_repeats_its_last_picture_and_its_clip_is_copied(run):
    for i, n in ((1, 10), (2, 6)):
        write_video(run.ws.path(f"shots/shot_{i:02d}.mp4"), moving(n, i), fps=8)
    title = title_frames(8)
    duration = (title + 10 + 6 + 5) / 8
    write_wav(run.ws.path("audio/mix.wav"), Audio(0.3 * np.sin(np.linspace(0, 900 * duration, round(48000 * duration))), 48000))
    order = FilmOrder(title="T", logline="L", clips=["shots/shot_01.mp4", "shots/shot_02.mp4"], holds=[0, 5],
                      audio="audio/mix.wav", input_hash="x")
    film = make_film(run, order)
    assert film.num_frames == title + 10 + 6 + 5 and film.meta["audio"]
    frames = decode(run.ws.path(FILM))
    clip1, clip2 = decode(run.ws.path("shots/shot_01.mp4")), decode(run.ws.path("shots/shot_02.mp4"))
    # The clips' pictures are their own files' (packets copied); the held pictures are the last one again.
    assert all(np.array_equal(a, b) for a, b in zip(frames[title:title + 16], clip1 + clip2))
    assert all(np.abs(f.astype(int) - clip2[-1]).mean() < 3 for f in frames[title + 16:])
    with av.open(str(run.ws.path(FILM))) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert abs(float(audio.duration * audio.time_base) - float(video.duration * video.time_base)) < 0.1


def test_clips_made_otherwise_are_encoded_again_with_their_holds(run):
    write_video(run.ws.path("shots/shot_01.mp4"), moving(6, 1, h=48, w=72), fps=8)  # a model's own size
    order = FilmOrder(title="T", logline="L", clips=["shots/shot_01.mp4"], holds=[4], input_hash="y")
    film = make_film(run, order)
    frames = decode(run.ws.path(FILM))
    assert film.num_frames == len(frames) == title_frames(8) + 6 + 4 and frames[0].shape == (64, 96, 3)
    assert all(np.abs(f.astype(int) - frames[-5]).mean() < 3 for f in frames[-4:])
    with av.open(str(run.ws.path(FILM))) as container:
        assert not container.streams.audio  # no soundtrack asked for: none written


def test_without_voice_or_music_the_film_is_silent_as_before(tmp_path):
    result = run_crew(cfg(voice="none", music="none"), tmp_path, show_progress=False)
    with av.open(str(tmp_path / FILM)) as container:
        assert not container.streams.audio and len(container.streams.video) == 1
    assert result.film.num_frames == title_frames(8) + sum(c.num_frames for c in result.clips)
    assert not (tmp_path / "audio").exists() and not result.film.meta["audio"]
    # The subtitles are still written, one cue per shot inside its window.
    cues = parse_cues((tmp_path / "film.srt").read_text(), ",")
    assert [c[2] for c in cues] == [s.narration for s in result.script.shots]
    assert all(a < b for a, b, _ in cues) and cues[0][0] >= 1.5


def test_music_alone_fills_the_silent_film(tmp_path):
    """`--voice none --music FILE`: the user's track, looped to the film, is its soundtrack at -16 LUFS."""
    from storyagent.media.mixing import loudness

    track = tmp_path / "track.wav"
    t = np.arange(48000 * 2) / 48000
    write_wav(track, Audio(0.2 * np.sin(2 * np.pi * 330 * t), 48000))
    result = run_crew(cfg(voice="none", music=str(track)), tmp_path / "run", show_progress=False)
    sound = read_audio(tmp_path / "run" / FILM)
    assert abs(sound.duration - result.film.num_frames / 8) < 0.1
    assert abs(loudness(sound) + 16) < 1
