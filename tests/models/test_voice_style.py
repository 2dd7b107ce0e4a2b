"""`VoiceStyle.from_words`: a reviewer's words about how a line is said become a rate, a pitch and an
energy. The held-out phrasings below were written before the vocabulary in `style.py`."""

from __future__ import annotations

import pytest

from storyagent.models.voice import VoiceStyle

BASE = VoiceStyle()

# Written first, as a reviewer might type them; the vocabulary was written afterwards.
HELD_OUT_SLOWER = ["a bit slower please", "slow down", "could you take it more slowly", "it's too fast",
                   "don't rush the line", "Slower!"]
HELD_OUT_FASTER = ["a little faster", "speed it up", "quicker", "it drags, too slow", "pick up the pace"]
HELD_OUT_HAPPIER = ["more cheerful", "happier", "sound excited", "brighter and more upbeat", "with more joy"]
HELD_OUT_SADDER = ["sadder", "more melancholy", "sound gloomy", "make it sombre", "less cheerful"]
HELD_OUT_LOUDER = ["louder", "speak up", "more volume please"]
HELD_OUT_SOFTER = ["softer", "quieter please", "whisper it", "too loud"]
HELD_OUT_NOTHING = ["the fox should be red", "redo the background", "good", "", "wider shot of the forest"]


@pytest.mark.parametrize("words", HELD_OUT_SLOWER)
def test_slower_words_lower_the_rate(words):
    style = VoiceStyle.from_words(words)
    assert style.rate < BASE.rate
    assert style.pitch == BASE.pitch


@pytest.mark.parametrize("words", HELD_OUT_FASTER)
def test_faster_words_raise_the_rate(words):
    assert VoiceStyle.from_words(words).rate > BASE.rate


@pytest.mark.parametrize("words", HELD_OUT_HAPPIER)
def test_happier_words_raise_pitch_and_energy(words):
    style = VoiceStyle.from_words(words)
    assert style.pitch > BASE.pitch and style.energy > BASE.energy


@pytest.mark.parametrize("words", HELD_OUT_SADDER)
def test_sadder_words_lower_pitch_and_energy(words):
    style = VoiceStyle.from_words(words)
    assert style.pitch < BASE.pitch and style.energy < BASE.energy


@pytest.mark.parametrize("words", HELD_OUT_LOUDER)
def test_louder_words_raise_the_energy_only(words):
    style = VoiceStyle.from_words(words)
    assert style.energy > BASE.energy and style.rate == BASE.rate and style.pitch == BASE.pitch


@pytest.mark.parametrize("words", HELD_OUT_SOFTER)
def test_softer_words_lower_the_energy(words):
    assert VoiceStyle.from_words(words).energy < BASE.energy


@pytest.mark.parametrize("words", HELD_OUT_NOTHING)
def test_words_about_something_else_change_nothing(words):
    assert VoiceStyle.from_words(words) == BASE
    base = VoiceStyle(rate=0.8, pitch=1.0, energy=1.2)
    assert VoiceStyle.from_words(words, base) == base


def test_higher_lower_and_calmer():
    assert VoiceStyle.from_words("higher").pitch > 0 > VoiceStyle.from_words("lower").pitch
    assert VoiceStyle.from_words("a deeper voice").pitch < 0
    calm = VoiceStyle.from_words("calmer")
    assert calm.rate < 1 and calm.energy < 1


def test_degree_words_scale_the_change():
    bit, plain, much = (VoiceStyle.from_words(w).rate for w in ("a bit slower", "slower", "much slower"))
    assert bit > plain > much


def test_words_apply_on_top_of_a_base_and_stay_in_range():
    once = VoiceStyle.from_words("slower")
    twice = VoiceStyle.from_words("slower", once)
    assert twice.rate < once.rate < 1
    style = BASE
    for _ in range(40):
        style = VoiceStyle.from_words("much faster, much louder, much higher", style)
    assert style.rate <= 2.0 and style.energy <= 2.0 and style.pitch <= 12.0
    for _ in range(80):
        style = VoiceStyle.from_words("much slower, much softer, much lower", style)
    assert style.rate >= 0.5 and style.energy >= 0.25 and style.pitch >= -12.0


def test_two_requests_in_one_sentence_both_apply():
    style = VoiceStyle.from_words("slower and happier")
    assert style.rate < 1 and style.pitch > 0 and style.energy > 1


def test_a_bad_style_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="rate"):
        VoiceStyle(rate=0)
    with pytest.raises(ValueError, match="energy"):
        VoiceStyle(energy=-1)


@pytest.mark.parametrize("words", ["the fox should be happy", "the fox looks so happy", "a quiet forest at dawn",
                                   "a high angle on the river", "the fox runs fast"])
def test_plain_adjectives_about_the_picture_leave_the_voice_alone(words):
    assert VoiceStyle.from_words(words) == BASE
