"""Sound: reading any audio file, WAV written atomically, resampling, loudness and true peak, the limiter,
ducking, the mix, and the AAC stream beside a film's pictures."""

import math
import shutil
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from storyagent.errors import InputError
from storyagent.media import Audio, read_audio, write_video, write_wav
from storyagent.media.mixing import (
    DUCK_MARGIN_DB,
    PEAK_CEILING_DBTP,
    SAMPLE_RATE,
    Line,
    duck_envelope,
    limit,
    loudness,
    master,
    mix,
    rms_db,
    true_peak,
)


def tone(freq, seconds, rate, amp=0.5, channels=1):
    t = np.arange(round(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.8 * x], axis=1)


def dominant_freq(samples, rate):
    mono = samples if samples.ndim == 1 else samples.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return np.argmax(spectrum) * rate / len(mono)


def speechlike(seconds, rate=22050, seed=0):
    """Syllable-like bursts: a voiced buzz (harmonics of 140 Hz) under a 4 Hz envelope, pauses between."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    buzz = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6)) / k for k in range(1, 20))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return Audio((0.3 * buzz * env).astype(np.float32), rate)


def encode_file(path, samples, rate, codec):
    """An audio file written by PyAV's own encoders (mono or stereo)."""
    layout = "mono" if samples.ndim == 1 else "stereo"
    planar = samples[None] if samples.ndim == 1 else samples.T
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        fmt = stream.codec_context.codec.audio_formats[0].name
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar.astype(np.float32)), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        for f in resampler.resample(frame):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


@pytest.mark.parametrize(("name", "codec", "channels"), [("a.flac", "flac", 1), ("a.mp3", "libmp3lame", 2),
                                                         ("a.ogg", "libopus", 2), ("a.m4a", "aac", 1),
                                                         ("a.wav", "pcm_s16le", 2)])
def test_read_audio_decodes_each_format_to_its_own_rate_and_channels(tmp_path, name, codec, channels):
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    rate = {"a.flac": 22050, "a.ogg": 48000}.get(name, 44100)  # Opus plays at 48 kHz only
    encode_file(tmp_path / name, tone(440, 1.0, rate, channels=channels), rate, codec)
    audio = read_audio(tmp_path / name)
    assert audio.sample_rate == rate and audio.channels == channels
    assert abs(audio.duration - 1.0) < 0.06  # codec padding at most a frame or two
    assert abs(dominant_freq(audio.samples, rate) - 440) < 3
    assert audio.samples.dtype == np.float32 and np.abs(audio.samples).max() <= 1.0
    assert abs(rms_db(audio.samples[rate // 4: 3 * rate // 4, ...]) - rms_db(tone(440, 0.5, rate, channels=channels))) < 0.5


def test_read_audio_refuses_what_holds_no_sound_in_one_sentence(tmp_path):
    (tmp_path / "notes.wav").write_text("not audio")
    write_video(tmp_path / "silent.mp4", [np.zeros((32, 32, 3), np.uint8)] * 4, fps=8)
    for path, words in ((tmp_path / "missing.wav", "does not exist"), (tmp_path / "notes.wav", "Cannot read audio"),
                        (tmp_path / "silent.mp4", "no audio stream"), (tmp_path, "folder")):
        with pytest.raises(InputError, match=words) as info:
            read_audio(path)
        assert "\n" not in str(info.value)


def test_write_wav_round_trips_atomically_and_the_same_samples_give_the_same_bytes(tmp_path):
    stereo = Audio(tone(330, 0.5, 24000, channels=2), 24000)
    write_wav(tmp_path / "a.wav", stereo)
    write_wav(tmp_path / "b.wav", Audio(stereo.samples.copy(), 24000))
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    back = read_audio(tmp_path / "a.wav")
    assert back.sample_rate == 24000 and back.samples.shape == stereo.samples.shape
    assert np.abs(back.samples - stereo.samples).max() < 1 / 32767 + 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]  # no temp file left
    # Out-of-range samples are clipped, not wrapped.
    write_wav(tmp_path / "c.wav", Audio(np.array([2.0, -3.0, 0.25], np.float32), 8000))
    assert np.allclose(read_audio(tmp_path / "c.wav").samples, [1.0, -1.0, 0.25], atol=1e-4)


def test_resampling_and_channels_keep_pitch_length_and_level():
    audio = Audio(tone(440, 2.0, 22050), 22050)
    up = audio.resampled(48000)
    assert up.sample_rate == 48000 and len(up.samples) == 96000
    assert abs(dominant_freq(up.samples, 48000) - 440) < 1
    assert abs(rms_db(up.samples[4800:-4800]) - rms_db(audio.samples)) < 0.1
    stereo = up.as_stereo()
    assert stereo.samples.shape == (96000, 2) and np.array_equal(stereo.as_mono().samples, up.samples)
    with pytest.raises(ValueError, match="shape"):
        Audio(np.zeros((4, 3)), 8000)


def test_true_peak_finds_the_peak_between_samples():
    # A sine at a quarter of the rate, 45 degrees off: every sample is at 0.707 of the crest.
    n = np.arange(48000)
    fade = np.clip(np.minimum(n, n[::-1]) / 4800, 0, 1)  # an abrupt start would ring above the crest
    x = (np.sin(np.pi / 2 * n + np.pi / 4) * fade).astype(np.float32)
    assert abs(20 * math.log10(np.abs(x).max()) - (-3.01)) < 0.05
    assert abs(true_peak(Audio(x, 48000)) - 0.0) < 0.1


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (the reference meter)")
def test_loudness_and_true_peak_agree_with_ffmpegs_ebur128(tmp_path):
    speech = speechlike(6.0, 48000).as_stereo()
    write_wav(tmp_path / "s.wav", speech)
    ours = read_audio(tmp_path / "s.wav")
    ref = ebur128(tmp_path / "s.wav")
    assert abs(loudness(ours) - ref["I"]) < 0.2
    assert abs(true_peak(ours) - ref["peak"]) < 0.3


def ebur128(path):
    """ffmpeg's EBU R128 meter: integrated loudness (LUFS) and true peak (dBTP) of a file's audio."""
    out = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-map", "a:0", "-af",
                          "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    summary = out[out.rindex("Summary:"):]
    integrated = float(summary.split("I:")[1].split()[0])
    peak = float(summary.split("Peak:")[1].split()[0])
    return {"I": integrated, "peak": peak}


def test_the_limiter_holds_the_true_peak_and_leaves_quiet_sound_alone():
    speech = speechlike(3.0, 48000)
    loud = speech.samples * 4.0  # peaks far over full scale
    out = limit(loud, 48000, -1.5)
    assert true_peak(Audio(out, 48000)) <= -1.5 + 1e-3
    # Where the input is quiet and far from any peak (the pauses' edges), nothing changes.
    quiet = np.abs(loud) < 0.02
    far = np.convolve(~quiet, np.ones(4801), mode="same") == 0
    assert far.sum() > 1000 and np.allclose(out[far], loud[far], atol=1e-6)


def test_master_brings_the_sound_to_the_target_loudness_under_the_ceiling():
    for scale in (0.05, 3.0):
        out, _ = master(speechlike(4.0, 48000).samples * scale, 48000)
        assert abs(loudness(Audio(out, 48000)) - (-16.0)) < 0.1
        assert true_peak(Audio(out, 48000)) <= PEAK_CEILING_DBTP + 1e-3
    silent, gain = master(np.zeros(48000, np.float32), 48000)
    assert not silent.any() and gain == 0


def test_duck_envelope_is_down_over_each_span_and_up_away_from_them():
    env = duck_envelope(48000 * 4, 48000, [(48000, 96000), (120000, 130000)], [10.0, 20.0])
    db = 20 * np.log10(env)
    assert np.allclose(db[48000:96000], -10) and np.allclose(db[120000:130000], -20)
    assert np.allclose(db[:40000], 0) and np.allclose(db[-30000:], 0)
    assert np.all(np.diff(db[43200:48000]) <= 1e-9)  # the attack only falls
    assert np.all(np.diff(db[130000:144400]) >= -1e-9)  # the release only rises


def test_the_mix_ducks_the_music_under_every_line_and_meets_loudness():
    music = Audio(tone(220, 10.0, 44100, amp=0.6, channels=2), 44100)
    lines = [Line(speechlike(2.0, 22050, seed=1), 1.0), Line(speechlike(1.5, 16000, seed=2), 5.0)]
    result = mix(10.0, lines, music)
    assert result.audio.sample_rate == SAMPLE_RATE and result.audio.samples.shape == (10 * SAMPLE_RATE, 2)
    assert abs(loudness(result.audio) + 16) < 0.1 and true_peak(result.audio) <= PEAK_CEILING_DBTP + 1e-3
    for voice, ducked in result.levels():
        assert voice - ducked >= DUCK_MARGIN_DB - 0.01
    # Between the lines the score plays at its bed, well above its ducked level.
    (a0, b0), (a1, _) = result.line_spans
    gap = result.music[b0 + SAMPLE_RATE // 2: a1 - SAMPLE_RATE // 4]
    assert rms_db(gap) > result.levels()[0][1] + 8
    # Each part alone, as the mix is made of it.
    assert mix(10.0, lines, None).music is None and mix(10.0, [], music).voice is None
    assert mix(10.0, [], None) is None


def test_a_film_with_sound_has_an_aac_stream_as_long_as_its_pictures(tmp_path):
    frames = [np.full((48, 64, 3), 4 * i, np.uint8) for i in range(60)]  # 7.5 s at 8 fps
    sound = Audio(tone(500, 7.5, 22050, amp=0.3), 22050)
    write_video(tmp_path / "film.mp4", frames, fps=8, audio=sound)
    with av.open(str(tmp_path / "film.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.rate == 48000 and audio.codec_context.channels == 2
        durations = [float(s.duration * s.time_base) for s in (video, audio)]
        assert abs(durations[0] - 7.5) < 1e-6 and abs(durations[1] - durations[0]) < 0.1
    back = read_audio(tmp_path / "film.mp4")
    assert abs(dominant_freq(back.samples, 48000) - 500) < 2
    assert abs(rms_db(back.samples[4800:-4800]) - rms_db(sound.samples)) < 0.5
