"""Issue 24: the score composed from the story and played for real by FluidSynth.

What is measured: the composer's own choices per shot (key, mode, tempo, velocity, register, read
back from the MIDI file it writes), the theme's interval pattern in every shot's melody, and the
rendered audio (length, level per shot window, determinism)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from storyagent.errors import InputError
from storyagent.models.music import compose, make_score, music_engine, music_unavailable
from storyagent.models.music.composer import SCALES, channel_of
from storyagent.models.music.fluidsynth import find_soundfont, fluidsynth_binary
from storyagent.models.music.midi import NOTE_ON, PROGRAM, MidiEvent, read_midi, write_midi
from storyagent.models.music.mood import ShotFeel, mood_in
from storyagent.schemas import Shot, StoryScript
from tests.support.paths import ROOT

needs_fluidsynth = pytest.mark.skipif(
    fluidsynth_binary() is None or find_soundfont() is None,
    reason="FluidSynth or a General MIDI SoundFont is not installed (apt-get install fluidsynth fluid-soundfont-gm)")


def shot(i: int, narration: str, action: str, background: str) -> Shot:
    return Shot(index=i, narration=narration, description=f"Pip {action}, {background}", subject_action=action,
                subject_region="center", background=background, shot_type="medium", camera_motion="static")


def story(title: str = "Pip and the Lost Kite") -> StoryScript:
    """Four shots in one meadow at noon, so only the mood changes from shot to shot: joy, trouble,
    joy, trouble."""
    where = "the sunny meadow at noon"
    return StoryScript(title=title, logline="Pip loses a kite and finds it again.", shots=[
        shot(1, "Pip ran into the meadow, happy, with a bright red kite.", "laughs and smiles", where),
        shot(2, "But the wind took the kite, and Pip was lost and worried.", "stops, sad and worried", where),
        shot(3, "There it was! Pip grinned and danced for joy.", "jumps and cheers, happy", where),
        shot(4, "Then the string broke, and Pip sat down alone and cried.", "cries, sad", where),
    ])


WINDOWS = [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 16.0)]


def db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def window_db(audio, start: float, end: float) -> float:
    """Level of the middle of a window: the crossfades at its edges belong to both neighbours."""
    margin = 0.25 * (end - start)
    sr = audio.sample_rate
    return db(audio.samples[round((start + margin) * sr):round((end - margin) * sr)])


def melody_degrees(score, midi: bytes) -> list[list[int]]:
    """Each shot's melody read back from the MIDI file, as scale steps in the shot's key."""
    notes, _ = read_midi(midi)
    out = []
    for s in score.shots:
        ch = channel_of("melody", s.index)
        pitches = [n.pitch for n in notes if n.channel == ch and s.start - 1e-3 <= n.start < s.end - 1e-3]
        scale = SCALES[s.mode]
        degrees = []
        for p in pitches:
            octave, pc = divmod(p - s.melody_tonic, 12)
            assert pc in scale, f"shot {s.index}: pitch {p} is not in {s.key}"
            degrees.append(7 * octave + scale.index(pc))
        out.append(degrees)
    return out


def contains(seq: list[int], pattern: tuple[int, ...]) -> bool:
    return any(tuple(seq[i:i + len(pattern)]) == pattern for i in range(len(seq) - len(pattern) + 1))


# ---------------------------------------------------------------- reading the shots


def test_mood_place_and_time_are_read_from_the_shot():
    feel = ShotFeel.from_shot(shot(1, "Pip was lost in the dark forest, afraid.", "trembles", "the forest at night"))
    assert (feel.mood, feel.place, feel.time, feel.minor, feel.dark) == ("trouble", "forest", "night", True, True)
    assert mood_in("From that night on, Pip was not afraid any more.") == "calm"  # a fear denied
    assert mood_in("Pip smiled and laughed") == "joy"
    assert mood_in("It was an ordinary Tuesday") == "neutral"


# ---------------------------------------------------------------- the composer's choices


def test_trouble_is_minor_slower_and_softer_and_joy_is_major():
    score = compose(story(), WINDOWS)
    moods = [s.feel.mood for s in score.shots]
    assert moods == ["joy", "trouble", "joy", "trouble"]
    joy = [s for s in score.shots if s.feel.mood == "joy"]
    trouble = [s for s in score.shots if s.feel.mood == "trouble"]
    assert {s.mode for s in joy} == {"major"} and {s.mode for s in trouble} == {"minor"}
    assert max(s.bpm for s in trouble) < min(s.bpm for s in joy)
    assert max(s.velocity for s in trouble) < min(s.velocity for s in joy)
    # The MIDI file plays what the composer says: every melody note of a shot at its velocity.
    notes, _ = read_midi(score.to_midi())
    for s in score.shots:
        ch = channel_of("melody", s.index)
        assert {n.velocity for n in notes if n.channel == ch and s.start <= n.start < s.end} == {s.velocity}


def test_night_is_softer_slower_and_lower_and_the_place_picks_the_instruments():
    calm = "Pip rested quietly by the water."
    day = StoryScript(title="Two Evenings", logline="Pip rests.", shots=[
        shot(1, calm, "rests", "the beach at noon"), shot(2, calm, "rests", "the beach at night"),
        shot(3, calm, "rests", "the deep forest at noon"), shot(4, calm, "rests", "outer space, among the stars")])
    score = compose(day, WINDOWS)
    noon, night, forest, space = score.shots
    assert night.feel.time == "night" and noon.feel.time == "noon"
    assert night.bpm < noon.bpm and night.velocity < noon.velocity
    notes, _ = read_midi(score.to_midi())

    def mean_melody_pitch(s):
        return np.mean([n.pitch for n in notes if n.channel == channel_of("melody", s.index) and s.start <= n.start < s.end])

    # Octaves apart in register, though the keys may differ by a few semitones.
    assert mean_melody_pitch(night) < mean_melody_pitch(noon) - 5
    # The place picks the instruments: beach, forest and space each their own melody instrument, and the
    # file sets it on the shot's melody channel just before the shot starts.
    assert len({noon.programs["melody"], forest.programs["melody"], space.programs["melody"]}) == 3
    _, controls = read_midi(score.to_midi())
    for s in score.shots:
        set_here = [e.data1 for e in controls if e.kind == PROGRAM and e.channel == channel_of("melody", s.index)
                    and s.start - 1.0 <= e.time <= s.start]
        assert set_here == [s.programs["melody"]]


def test_one_theme_recurs_in_every_shot_varied():
    score = compose(story(), WINDOWS, seed=3)
    theme = score.theme
    played = melody_degrees(score, score.to_midi())
    for s, degrees in zip(score.shots, played):
        steps = [b - a for a, b in zip(degrees, degrees[1:])]
        assert contains(steps, theme.intervals), f"shot {s.index} does not play the theme's steps {theme.intervals}"
    # Varied: not all shots in one key or starting on one step, and the rhythm differs somewhere.
    assert len({(s.tonic, s.mode, s.statements[0][0]) for s in score.shots}) > 1
    notes, _ = read_midi(score.to_midi())
    rhythms = set()
    for s in score.shots:
        starts = [n.start for n in notes if n.channel == channel_of("melody", s.index) and s.start <= n.start < s.end]
        gaps = np.diff(starts + [s.end])[: len(theme.degrees)]
        rhythms.add(tuple(np.round(gaps / gaps.sum(), 2)))
    assert len(rhythms) > 1


def test_different_stories_have_different_themes_and_the_same_story_the_same():
    a, b = compose(story("Pip and the Lost Kite"), WINDOWS), compose(story("The Night the Moon Fell"), WINDOWS)
    assert (a.theme.degrees, a.theme.rhythm) != (b.theme.degrees, b.theme.rhythm)
    assert compose(story("Pip and the Lost Kite"), WINDOWS).to_midi() == a.to_midi()
    assert compose(story("Pip and the Lost Kite"), WINDOWS, seed=1).theme != a.theme


def test_each_shot_plays_inside_its_window():
    windows = [(0.0, 2.5), (2.5, 7.0), (7.0, 8.2), (9.0, 15.0)]  # uneven, one gap, one short shot
    score = compose(story(), windows)
    xfade = min(0.6, 0.4 * 1.2)
    for note in score.notes:
        start, end = windows[note.shot - 1]
        slack = xfade / 2 + 1e-6 if note.part == "pad" else 1e-6
        assert start - slack <= note.start < note.end <= end + slack, note
    for s, (start, end) in zip(score.shots, windows):
        beat = 60 / s.bpm
        assert s.beats * beat <= end - start + 1e-3 < (s.beats + 1) * beat  # whole beats, the last one held
        melody = [n for n in score.notes if n.shot == s.index and n.part == "melody"]
        assert melody[0].start == pytest.approx(start) and melody[-1].end == pytest.approx(end)
    assert score.duration == 15.0
    # A title card before the first shot opens with the first shot's music.
    titled = compose(story(), [(1.5, 2.5), *windows[1:]])
    assert titled.shots[0].start == 0.0 and min(n.start for n in titled.notes) == 0.0


def test_bad_windows_are_refused_in_one_sentence():
    with pytest.raises(InputError, match="one window per shot"):
        compose(story(), WINDOWS[:3])
    with pytest.raises(InputError, match="Shot 2's window"):
        compose(story(), [(0.0, 4.0), (3.0, 8.0), (8.0, 12.0), (12.0, 16.0)])


def test_midi_file_round_trip():
    events = [MidiEvent(0.0, PROGRAM, 3, 46), MidiEvent(0.5, NOTE_ON, 3, 60, 90), MidiEvent(1.25, 0x80, 3, 60),
              MidiEvent(1.25, NOTE_ON, 3, 60, 70), MidiEvent(2.0, 0x80, 3, 60), MidiEvent(0.75, NOTE_ON, 9, 36, 100),
              MidiEvent(3.5, 0x80, 9, 36)]
    notes, others = read_midi(write_midi(events))
    assert [(round(n.start, 3), round(n.end, 3), n.channel, n.pitch, n.velocity) for n in notes] == [
        (0.5, 1.25, 3, 60, 90), (0.75, 3.5, 9, 36, 100), (1.25, 2.0, 3, 60, 70)]
    assert [(o.kind, o.channel, o.data1) for o in others] == [(PROGRAM, 3, 46)]
    with pytest.raises(ValueError):
        write_midi([MidiEvent(0.0, NOTE_ON, 3, 128, 10)])


# ---------------------------------------------------------------- rendered by FluidSynth


@pytest.fixture(scope="module")
def rendered():
    if fluidsynth_binary() is None or find_soundfont() is None:
        pytest.skip("FluidSynth or a General MIDI SoundFont is not installed (apt-get install fluidsynth fluid-soundfont-gm)")
    return make_score(story(), WINDOWS, "auto", seed=0)


@needs_fluidsynth
def test_rendered_score_lasts_the_film_and_is_not_silent(rendered):
    assert rendered.sample_rate == 48000 and rendered.channels == 2
    assert abs(rendered.duration - WINDOWS[-1][1]) <= 0.05
    assert db(rendered.samples) > -35
    for start, end in WINDOWS:
        assert window_db(rendered, start, end) > -45, f"silence in {start}-{end} s"


@needs_fluidsynth
def test_rendered_level_follows_the_mood(rendered):
    levels = [window_db(rendered, *w) for w in WINDOWS]
    joy, trouble = [levels[0], levels[2]], [levels[1], levels[3]]
    assert max(trouble) < min(joy) - 3, f"per-window levels (dB): {np.round(levels, 1)}"


@needs_fluidsynth
def test_rendered_score_is_deterministic_and_differs_between_stories(rendered):
    again = make_score(story(), WINDOWS, "auto", seed=0)
    assert np.array_equal(again.samples, rendered.samples)
    other = make_score(story("The Night the Moon Fell"), WINDOWS, "auto", seed=0)
    assert other.samples.shape == rendered.samples.shape and not np.allclose(other.samples, rendered.samples, atol=1e-3)


@needs_fluidsynth
def test_a_users_soundfont_is_used(tmp_path):
    font = tmp_path / "mine.sf2"
    font.symlink_to(find_soundfont())
    assert music_engine("auto", font) == f"fluidsynth:{font}"
    audio = make_score(story(), WINDOWS, "auto", soundfont=font)
    assert audio is not None and abs(audio.duration - 16.0) <= 0.05


# ---------------------------------------------------------------- when nothing can play it


def test_without_fluidsynth_the_film_goes_on_without_music(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: no fluidsynth
    line = music_unavailable("auto")
    assert line is not None and "apt-get install fluidsynth fluid-soundfont-gm" in line and "\n" not in line
    assert make_score(story(), WINDOWS, "auto") is None
    assert music_engine("auto") == "none"
    assert music_unavailable("none") is None and make_score(story(), WINDOWS, "none") is None


def test_a_missing_or_broken_soundfont_is_named(tmp_path):
    missing = tmp_path / "nope.sf2"
    line = music_unavailable("auto", missing)
    assert line is not None and str(missing) in line and "--soundfont" in line
    assert make_score(story(), WINDOWS, "auto", soundfont=missing) is None
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    if fluidsynth_binary() is not None:
        assert "not a SoundFont" in music_unavailable("auto", broken)


def test_the_offline_score_does_not_import_torch():
    code = ("import sys\n"
            "from tests.models.test_music_score import story, WINDOWS\n"
            "from storyagent.models.music import make_score, music_engine, music_unavailable\n"
            "music_engine('auto'); music_unavailable('auto'); make_score(story(), WINDOWS, 'auto')\n"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch imported'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORYAGENT_WEIGHTS_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
