"""Issue 24: `--music FILE`, the user's own track looped or trimmed to the film and faded; the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storyagent.errors import InputError
from storyagent.media.audio import Audio, write_wav
from storyagent.models.music import make_score, music_engine, music_unavailable, parse_music_spec
from storyagent.models.music.user_track import fit_track, loop_to_length
from tests.models.test_music_score import story

SR = 48000
WINDOWS = [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0), (9.0, 12.0)]


def noise_track(seconds: float, sample_rate: int = SR, seed: int = 0, level: float = 0.1) -> Audio:
    """Stereo white noise at a steady level (peaks well under 0.89, so nothing is scaled): any dip or
    swell in the result comes from the fitting."""
    rng = np.random.default_rng(seed)
    return Audio((level * rng.standard_normal((round(seconds * sample_rate), 2))).astype(np.float32), sample_rate)


def write_flac(path: Path, audio: Audio) -> Path:
    """The track as FLAC through PyAV: a format other than WAV that PyAV decodes exactly."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=audio.sample_rate, layout="stereo")
        pcm = np.round(audio.samples * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.reshape(1, -1)), format="s16", layout="stereo")
        frame.sample_rate = audio.sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def test_a_short_track_is_looped_to_the_film_and_faded(tmp_path):
    track = write_flac(tmp_path / "song.flac", noise_track(5.0, 44100))
    audio = make_score(story(), WINDOWS, str(track))
    assert audio.sample_rate == SR and audio.channels == 2
    assert len(audio.samples) == 12 * SR  # the film's length to the sample
    s = audio.samples
    middle = rms_db(s[4 * SR:8 * SR])
    assert rms_db(s[: SR // 2]) < middle - 6 and rms_db(s[-SR // 2:]) < middle - 6  # faded in and out
    # The loop joins (about every 4 s) neither dip nor swell: every quarter second between the
    # fades is within 1.5 dB of the track's own level.
    level = rms_db(noise_track(5.0, 44100).samples)
    quarters = [rms_db(s[i:i + SR // 4]) for i in range(int(1.0 * SR), int(10.0 * SR), SR // 4)]
    assert max(abs(q - level) for q in quarters) < 1.5, np.round(quarters, 1)


def test_a_long_track_is_trimmed_and_its_middle_kept(tmp_path):
    source = noise_track(20.0)
    path = tmp_path / "long.wav"
    write_wav(path, source)
    audio = make_score(story(), WINDOWS, str(path))
    assert len(audio.samples) == 12 * SR
    pcm = np.round(np.clip(source.samples, -1, 1) * 32767) / 32768  # what the 16-bit file holds
    assert np.allclose(audio.samples[3 * SR:9 * SR], pcm[3 * SR:9 * SR], atol=1e-4)
    assert rms_db(audio.samples[:SR // 2]) < rms_db(audio.samples[3 * SR:9 * SR]) - 6


def test_loop_crossfade_is_equal_power():
    x = noise_track(1.0).samples
    looped = loop_to_length(x, 5 * SR, SR // 5)
    assert len(looped) == 5 * SR
    assert np.array_equal(looped[: SR // 2], x[: SR // 2])  # the first pass untouched
    t = np.linspace(0, np.pi / 2, SR // 5)
    assert np.allclose(np.cos(t) ** 2 + np.sin(t) ** 2, 1.0)
    # A constant signal stays constant through the join only if the fades sum in amplitude; noise
    # (uncorrelated with itself shifted) keeps its power: check the latter, the case of real music.
    join = looped[int(0.8 * SR) - SR // 10:int(0.8 * SR) + SR // 10]
    assert abs(rms_db(join) - rms_db(x)) < 1.0


def test_a_loud_track_is_scaled_under_full_scale_and_a_quiet_one_kept():
    loud = Audio(np.full((SR * 2, 2), 0.99, np.float32), SR)
    assert np.max(np.abs(fit_track(loud, 2.0).samples)) <= 0.891
    quiet = noise_track(3.0)
    fitted = fit_track(quiet, 3.0)
    assert np.array_equal(fitted.samples[SR:2 * SR], quiet.samples[SR:2 * SR])


def test_a_missing_file_is_named(tmp_path):
    missing = tmp_path / "gone.mp3"
    with pytest.raises(InputError, match="gone.mp3"):
        parse_music_spec(str(missing))
    assert "gone.mp3" in music_unavailable(str(missing))
    track = tmp_path / "there.wav"
    write_wav(track, noise_track(1.0))
    spec = parse_music_spec(str(track))
    track.unlink()
    with pytest.raises(InputError, match="there.wav"):
        make_score(story(), WINDOWS, spec)


def test_a_file_that_is_not_audio_is_refused(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a song")
    with pytest.raises(InputError, match="notes.txt"):
        make_score(story(), WINDOWS, str(bad))


def test_music_specs(tmp_path):
    assert parse_music_spec(" AUTO ") == "auto" and parse_music_spec("None") == "none"
    track = tmp_path / "a.wav"
    write_wav(track, noise_track(1.0))
    assert parse_music_spec(str(track)) == str(track.resolve())
    assert music_engine(str(track)) == f"file:{track.resolve()}" and music_engine("none") == "none"
    assert music_unavailable(str(track)) is None
    for bad, words in (("", "empty"), (str(tmp_path), "not a file")):
        with pytest.raises(InputError, match=words):
            parse_music_spec(bad)
