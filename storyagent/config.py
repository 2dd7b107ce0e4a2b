"""Run settings: one validated object built from the command line (or from Python)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from storyagent.cast import CastMember, check_cast, checked_mask, checked_media, checked_voice
from storyagent.environment import without_credentials
from storyagent.errors import InputError
from storyagent.schemas import MAX_PROMPT_CHARS, MAX_SHOTS, format_validation_error

ReviewMode = Literal["none", "rules", "llm", "human", "aesthetic"]
"""Who reviews each stage: nobody, rule checks, a vision LLM, you, or the LAION aesthetic predictor."""

VideoModel = Literal["dynamicrafter-512", "wan2.2-ti2v-5b", "wan2.1-i2v-14b-480p", "wan2.2-i2v-a14b"]
"""The diffusion backend's image-to-video models (`storyagent.models.wan.config.VIDEO_MODELS`: the same names,
which a test holds equal; spelled out here so the settings import no model code)."""


GENERIC_CLASS_WORDS = frozenset({"", "character", "subject", "thing", "object"})
"""Class words that say nothing of what a character is."""


class RunConfig(BaseModel):
    """Everything that decides what a run produces."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The story idea, e.g. 'a day at the seaside'.")
    subject: Path = Field(description="A photo, a short video, or a folder of them, showing the character.")
    name: str = Field(min_length=1, max_length=80, description="What the story calls the character.")
    class_word: str = Field(default="character", max_length=40, description="What the character is: fox, cat, toy ...")
    mask: Path | None = Field(default=None, description="Optional mask image (white = subject) for a single photo.")
    lead_voice: str | None = Field(default=None, description="The voice of the lead's own lines (a shot's `speaker`), as --voice; default: the narrator's. A cast file's `voice` for its first character.")
    supporting: list[CastMember] = Field(default_factory=list, description="The rest of the cast, when the film has several characters (the lead is --subject/--name).")
    shots: int = Field(default=4, description=f"Number of shots, 1 to {MAX_SHOTS}.")
    seed: int = Field(default=0, ge=0, description="Seed for the planner and every renderer: same seed, same film.")
    backend: Literal["animatic", "diffusion"] = Field(default="animatic", description="animatic (CPU, no weights) or diffusion (GPU, weights).")
    width: int = Field(default=512, ge=64, le=4096, description="Frame width in pixels (even).")
    height: int = Field(default=320, ge=64, le=4096, description="Frame height in pixels (even).")
    fps: float = Field(default=8.0, gt=0, le=60, description="Frames per second.")
    shot_duration: float = Field(default=2.5, ge=2.0, le=20.0, description="Seconds per shot.")
    max_reference_frames: int = Field(default=16, ge=1, le=64, description="Reference frames sampled from the subject media.")
    steps: int | None = Field(default=None, ge=1, le=500, description="Diffusion backend: denoising steps of every model (default: each model's own).")
    finetune: Literal["auto", "off", "force"] = Field(default="auto", description="Diffusion backend: auto trains StoryAnyDoor and LoRA-BE on the subject unless this subject's fine-tunes are cached; off uses the stock models; force trains again.")
    finetune_preset: Literal["paper", "quick"] = Field(default="paper", description="Diffusion backend: paper (StoryAnyDoor Adam 1e-5 x 20,000 steps, LoRA-BE Adam 1e-4 x 400 epochs) or quick (a short LoRA fine-tune of each, for a first look).")
    anydoor_steps: int | None = Field(default=None, ge=1, le=200_000, description="Diffusion backend: StoryAnyDoor training steps (default: the preset's).")
    lora_be_epochs: int | None = Field(default=None, ge=1, le=10_000, description="Diffusion backend: LoRA-BE epochs over the subject's clips (default: the preset's).")
    video_adapter: Path | None = Field(default=None, description="Diffusion backend: a LoRA-BE adapter from `storyagent finetune video` to animate with instead of training one.")
    low_vram: bool = Field(default=False, description="Diffusion backend: offload idle model parts to the CPU and decode the VAE in chunks, to fit a GPU with less memory (slower).")
    video_model: VideoModel = Field(default="dynamicrafter-512", description="Diffusion backend: the image-to-video model that animates the shots, each with the subject's LoRA-BE: dynamicrafter-512 (the paper's, 320x512, 16 frames), wan2.2-ti2v-5b (704x1280, 24 fps, about 24 GB of GPU memory), wan2.1-i2v-14b-480p (480x832, 16 fps) or wan2.2-i2v-a14b (two 14B experts, up to 720x1280); the Wan models through diffusers, weights by `storyagent weights fetch NAME`.")
    storyboard_side: int = Field(default=1024, ge=64, le=2048, description="Diffusion backend: longer side of the storyboard pictures (SDXL).")
    voice: str = Field(default_factory=lambda: os.environ.get("STORYAGENT_VOICE") or "auto", description="Narration voice: auto (the best this machine has), espeak, piper:VOICE, kokoro:VOICE, openai:VOICE, openai-compatible:VOICE@URL, or none (a silent film). Default: $STORYAGENT_VOICE, else auto.")
    music: str = Field(default_factory=lambda: os.environ.get("STORYAGENT_MUSIC") or "auto", description="Score: auto (a text-to-music model when its weights are cached, else one composed from the story and played by FluidSynth), none, or an audio FILE of your own. Default: $STORYAGENT_MUSIC, else auto.")
    soundfont: Path | None = Field(default=None, description="A General MIDI SoundFont (.sf2) for the composed score (default: Debian's fluid-soundfont-gm).")
    llm: str = Field(default="none", description="LLM for the Story Designer: none, openai:MODEL, ollama:MODEL, ...")
    review: ReviewMode = Field(default="none", description="Observer: none | rules | llm | human | aesthetic.")
    min_score: float = Field(default=5.0, ge=0, le=10, description="Aesthetic observer: storyboard pictures scoring under this are redrawn.")

    @field_validator("prompt")
    @classmethod
    def _prompt_ok(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("the prompt is empty; say what the story is about, e.g. 'a day at the seaside'")
        if len(v) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is {len(v)} characters; keep it under {MAX_PROMPT_CHARS}")
        return v

    @field_validator("shots")
    @classmethod
    def _shots_ok(cls, v: int) -> int:
        if not 1 <= v <= MAX_SHOTS:
            raise ValueError(f"--shots must be between 1 and {MAX_SHOTS}, got {v}")
        return v

    # Each setting read by its own parser (cast.py), so what the run would refuse later is refused now.
    _subject = field_validator("subject")(classmethod(lambda cls, v: checked_media(v)))
    _mask = field_validator("mask")(classmethod(lambda cls, v: checked_mask(v, "--mask")))
    _voice = field_validator("voice")(classmethod(lambda cls, v: checked_voice(v)))
    _lead_voice = field_validator("lead_voice")(classmethod(lambda cls, v: v if v is None else checked_voice(v)))

    @field_validator("music")
    @classmethod
    def _music_ok(cls, v: str) -> str:
        from storyagent.models.music import parse_music_spec

        return parse_music_spec(v)

    @field_validator("soundfont")
    @classmethod
    def _soundfont_ok(cls, v: Path | None) -> Path | None:
        from storyagent.media.reading import regular_file
        from storyagent.models.music.fluidsynth import is_soundfont

        if v is None:
            return None
        hint = "pass a General MIDI SoundFont (.sf2), e.g. /usr/share/sounds/sf2/FluidR3_GM.sf2"
        regular_file(v, "--soundfont", hint)
        if not is_soundfont(v):
            raise InputError(f"--soundfont {v} is not a SoundFont 2 file; {hint}.")
        return v

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"frame sizes must be even (H.264), got {v}")
        return v

    @model_validator(mode="after")
    def _cast_ok(self) -> RunConfig:
        check_cast(self.cast)
        # The diffusion backend looks for each character by its class word (Grounding DINO's prompt) and
        # starts its LoRA-BE token from it: "character" finds anything or nothing.
        unnamed = [m.name for m in self.cast if m.class_word.strip().lower() in GENERIC_CLASS_WORDS]
        if self.backend == "diffusion" and unnamed:
            one = len(self.cast) == 1
            raise InputError(
                f"--backend diffusion finds {' and '.join(unnamed)} in the pictures by what {'it is' if one else 'they are'}; "
                + ("give --class-word (fox, cat, toy ...)." if one else
                   "give --class-word NAME=WORD for each character (or class_word in the cast file)."))
        return self

    @property
    def cast(self) -> list[CastMember]:
        """Every character of the film, the lead first."""
        lead = CastMember.model_construct(name=self.name, class_word=self.class_word, media=self.subject,
                                          mask=self.mask, voice=self.lead_voice)
        return [lead, *self.supporting]

    @classmethod
    def build(cls, **kwargs: object) -> RunConfig:
        """Validate, turning pydantic's error into one readable InputError."""
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            raise InputError(format_validation_error(exc, "options")) from exc

    def adapter_path(self) -> Path | None:
        """The LoRA-BE adapter the user gave (`--video-adapter`), checked; None when not given."""
        if self.video_adapter is not None and not self.video_adapter.is_file():
            raise InputError(f"Adapter {self.video_adapter} does not exist; train one with `storyagent finetune video`.")
        return self.video_adapter

    def inputs_record(self) -> dict[str, object]:
        """What the manifest stores as the run's inputs (never a password from an --llm URL)."""
        data = self.model_dump(mode="json")
        data["llm"] = without_credentials(self.llm)
        data["subject"] = str(self.subject.resolve())
        if self.supporting:
            data["supporting"] = [m.model_dump(mode="json") | {"media": str(m.media.resolve())} for m in self.supporting]
        else:
            data.pop("supporting")  # a film of one character records the inputs it did before casts
        if self.lead_voice is None:
            data.pop("lead_voice")  # recorded only when a cast file gave the lead a voice
        if self.video_model == "dynamicrafter-512":
            data.pop("video_model")  # a film of the paper's video model records the inputs it did before Wan
        return data


def field_help(name: str) -> str:
    """A `RunConfig` field's help text: the command line and the studio say what the config says."""
    return RunConfig.model_fields[name].description or ""
