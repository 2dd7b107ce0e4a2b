"""The score from a text-to-music model: Stable Audio Open through diffusers' `StableAudioPipeline`,
prompted with the story's moods, places and instruments.

Imported only when its weights are cached (torch and diffusers load here, never on the offline
path). The model writes up to its own maximum length (47 s for Stable Audio Open 1.0); a longer
film loops what it wrote, with a crossfade.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from storyagent.media.audio import Audio
from storyagent.models.music.composer import INSTRUMENTS, MOOD_TEMPO, NIGHT_TEMPO
from storyagent.models.music.config import TEXT_TO_MUSIC_WEIGHTS, ComposerConfig, TextToMusicConfig, TrackConfig
from storyagent.models.music.mood import ShotFeel
from storyagent.models.music.user_track import fit_track
from storyagent.schemas import StoryScript
from storyagent.weights import resolve_weights

MOOD_WORDS = {"trouble": "sad, worried", "tense": "tense, suspenseful", "joy": "joyful, bright",
              "lively": "lively, playful", "calm": "calm, gentle", "neutral": "warm"}
# General MIDI program -> a word a text-to-music model knows, for the instruments the composer
# would pick for the story's places.
PROGRAM_WORDS = {0: "piano", 4: "electric piano", 6: "harpsichord", 8: "celesta", 9: "glockenspiel", 10: "music box",
                 11: "vibraphone", 12: "marimba", 21: "accordion", 24: "acoustic guitar", 25: "acoustic guitar",
                 42: "cello", 46: "harp", 48: "strings", 49: "strings", 52: "choir", 60: "french horn",
                 65: "saxophone", 68: "oboe", 70: "bassoon", 71: "clarinet", 73: "flute", 75: "pan flute",
                 88: "synth pad", 89: "synth pad", 95: "synth pad", 105: "banjo", 110: "fiddle"}


def music_prompt(script: StoryScript, config: TextToMusicConfig | None = None) -> str:
    """A prompt for the whole film: its moods in story order, the instruments of its places, a tempo."""
    config = config or TextToMusicConfig()
    feels = [ShotFeel.from_shot(s) for s in script.shots]
    arc: list[str] = []
    for feel in feels:
        if not arc or arc[-1] != feel.mood:
            arc.append(feel.mood)
    places = Counter(f.place for f in feels)
    instruments: list[str] = []
    for place, _ in places.most_common(2):
        melody, chords, _bass, pad = INSTRUMENTS.get(place, INSTRUMENTS["meadow"])
        for program in (melody, chords, pad):
            word = PROGRAM_WORDS.get(program)
            if word and word not in instruments:
                instruments.append(word)
    moods = ", then ".join(MOOD_WORDS[m] for m in arc[:4])
    night = " nocturne," if sum(f.dark for f in feels) * 2 > len(feels) else ""
    return (f"{', '.join(config.extra_words)},{night} {moods}, {', '.join(instruments[:4])}, "
            f"about {round(sum(_bpm(f) for f in feels) / len(feels))} BPM")


def _bpm(feel: ShotFeel) -> float:
    return ComposerConfig().base_bpm + MOOD_TEMPO.get(feel.mood, 0) + (NIGHT_TEMPO if feel.dark else 0)


class TextToMusic:
    """`TextToMusic.from_pretrained()(prompt, duration) -> Audio`: a diffusers `StableAudioPipeline`."""

    def __init__(self, pipeline, config: TextToMusicConfig | None = None) -> None:
        self.pipeline = pipeline
        self.config = config or TextToMusicConfig()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str | None = None,
                        torch_dtype: torch.dtype | None = None, config: TextToMusicConfig | None = None) -> TextToMusic:
        """A diffusers folder (`model_index.json`, `transformer/`, `vae/`, ...): `path`, else the cached
        `stable-audio-open-1.0` weights; never the network."""
        from diffusers import StableAudioPipeline

        from storyagent.models.device import default_device

        folder = Path(resolve_weights(TEXT_TO_MUSIC_WEIGHTS, path))
        device = device or default_device()
        dtype = torch_dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        pipeline = StableAudioPipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline.to(device), config)

    @property
    def max_seconds(self) -> float:
        """The longest piece the model writes in one go."""
        pipe = self.pipeline
        return pipe.transformer.config.sample_size * pipe.vae.hop_length / pipe.vae.config.sampling_rate

    @torch.no_grad()
    def __call__(self, prompt: str, duration: float, seed: int = 0, sample_rate: int = 48000) -> Audio:
        """Stereo `Audio` of exactly `duration` seconds at `sample_rate`."""
        pipe = self.pipeline
        model_rate = int(pipe.vae.config.sampling_rate)
        # The model is conditioned on the length it is asked for, capped by what it can write and by
        # the largest length its duration embedding was trained on.
        seconds = min(duration, self.max_seconds, float(pipe.projection_model.config.max_value))
        generator = torch.Generator(device="cpu").manual_seed(seed)
        with warnings.catch_warnings():
            # torchsde's Brownian tree warns when the scheduler's float32 times fall a rounding error
            # outside its interval, at every step; the noise it draws is unaffected.
            warnings.filterwarnings("ignore", message=r"Should have t[ab]", category=UserWarning)
            out = pipe(prompt, negative_prompt=self.config.negative_prompt, audio_end_in_s=seconds,
                       num_inference_steps=self.config.num_inference_steps, guidance_scale=self.config.guidance_scale,
                       generator=generator, output_type="pt")
        waveform = out.audios[0].float().cpu().numpy()  # (channels, samples)
        samples = np.ascontiguousarray(waveform.T if waveform.shape[0] <= 2 else waveform[:2].T)
        audio = Audio(np.clip(samples, -1.0, 1.0), model_rate)
        return fit_track(audio, duration, sample_rate, TrackConfig(fade_in=0.5, fade_out=1.5))
