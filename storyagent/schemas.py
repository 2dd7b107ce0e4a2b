"""The data that flows between the crew: subject, story script, and the artifacts made from them.

Every model is pydantic v2, round-trips through JSON, and explains invalid values in words
(`format_validation_error`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_SHOTS = 32
MAX_PROMPT_CHARS = 4000


class ShotType(str, Enum):
    wide = "wide"
    medium = "medium"
    close_up = "close-up"


class CameraMotion(str, Enum):
    static = "static"
    pan_left = "pan left"
    pan_right = "pan right"
    zoom_in = "zoom in"
    zoom_out = "zoom out"
    tilt_up = "tilt up"
    tilt_down = "tilt down"


def _normalise_choice(value: object) -> object:
    """Accept the spellings an LLM or a person writes: 'Close up', 'pan_left', 'ZOOM-IN'."""
    if isinstance(value, str):
        text = value.strip().lower().replace("_", " ")
        if text in {"close up", "closeup", "close-up"}:
            return "close-up"
        return text.replace("-", " ")
    return value


class Region(BaseModel):
    """Where the subject stands in the frame, as fractions of the frame size (origin top-left)."""

    model_config = ConfigDict(extra="forbid")

    x: float = Field(ge=0.0, le=1.0, description="Left edge of the subject's box, 0..1 of the frame width.")
    y: float = Field(ge=0.0, le=1.0, description="Top edge of the subject's box, 0..1 of the frame height.")
    w: float = Field(gt=0.0, le=1.0, description="Box width, fraction of the frame width.")
    h: float = Field(gt=0.0, le=1.0, description="Box height, fraction of the frame height.")

    @model_validator(mode="after")
    def _inside_frame(self) -> Region:
        if self.x + self.w > 1.0 + 1e-6 or self.y + self.h > 1.0 + 1e-6:
            raise ValueError("the subject's box must lie inside the frame (x + w <= 1 and y + h <= 1)")
        return self

    @classmethod
    def named(cls, name: str) -> Region:
        """A region from words: 'left', 'center', 'right', 'bottom left', ... ."""
        return cls(**NAMED_REGIONS[name])

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2


NAMED_REGIONS: dict[str, dict[str, float]] = {
    "left": {"x": 0.05, "y": 0.25, "w": 0.4, "h": 0.7},
    "center": {"x": 0.3, "y": 0.25, "w": 0.4, "h": 0.7},
    "right": {"x": 0.55, "y": 0.25, "w": 0.4, "h": 0.7},
    "bottom left": {"x": 0.05, "y": 0.45, "w": 0.35, "h": 0.5},
    "bottom right": {"x": 0.6, "y": 0.45, "w": 0.35, "h": 0.5},
    "full": {"x": 0.1, "y": 0.05, "w": 0.8, "h": 0.9},
}


class Shot(BaseModel):
    """One shot of the story: what is said, what is seen, and how the camera moves."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    index: int = Field(ge=1, description="1-based position of the shot in the film.")
    narration: str = Field(min_length=1, max_length=400, description="Subtitle / voice-over line.")
    description: str = Field(min_length=1, max_length=600, description="What the frame shows, as an image prompt.")
    subject_action: str = Field(min_length=1, max_length=200, description="What the subject does in this shot.")
    subject_region: Region = Field(description="Where the subject stands in the frame.")
    background: str = Field(min_length=1, max_length=300, description="The place and time of day.")
    shot_type: ShotType = Field(description="wide, medium or close-up.")
    camera_motion: CameraMotion = Field(description="static, pan left/right, zoom in/out, tilt up/down.")
    duration: float = Field(default=2.5, ge=0.5, le=20.0, description="Seconds on screen.")

    @field_validator("shot_type", "camera_motion", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return _normalise_choice(value)

    @field_validator("subject_region", mode="before")
    @classmethod
    def _region_from_words(cls, value: object) -> object:
        if isinstance(value, str):
            key = value.strip().lower().replace("-", " ").replace("centre", "center")
            if key not in NAMED_REGIONS:
                raise ValueError(f"unknown region {value!r}; use one of {', '.join(NAMED_REGIONS)} or {{x, y, w, h}}")
            return NAMED_REGIONS[key]
        return value


class StoryScript(BaseModel):
    """The Story Designer's output: a titled story split into shots."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    logline: str = Field(min_length=1, max_length=600, description="The story in one or two sentences.")
    shots: list[Shot] = Field(min_length=1, max_length=MAX_SHOTS)

    @model_validator(mode="after")
    def _indices_in_order(self) -> StoryScript:
        expected = list(range(1, len(self.shots) + 1))
        if [s.index for s in self.shots] != expected:
            raise ValueError(f"shot indices must be 1..{len(self.shots)} in order")
        return self

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.shots)


class Subject(BaseModel):
    """The user's character: a name and the media it was cut from."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, description="What the story calls the character.")
    class_word: str = Field(default="character", max_length=40, description="What it is: rabbit, cat, toy ...")
    reference_media: list[Path] = Field(min_length=1, description="The user's photos or short videos.")
    frames: list[Path] = Field(default_factory=list, description="Sampled reference frames (PNG, in the run folder).")
    masks: list[Path] = Field(default_factory=list, description="Subject masks of those frames (PNG, white = subject).")

    @model_validator(mode="after")
    def _masks_match_frames(self) -> Subject:
        if self.masks and len(self.masks) != len(self.frames):
            raise ValueError(f"{len(self.masks)} masks for {len(self.frames)} frames")
        return self


# ---- artifacts -----------------------------------------------------------------------------


class Artifact(BaseModel):
    """A file the run produced, with the hash of everything it was made from."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    path: str = Field(description="Path relative to the run folder.")
    input_hash: str = Field(description="Hash of the inputs and settings that made this file.")
    shot: int | None = None
    mask_path: str | None = Field(default=None, description="Subject mask belonging to this image, when known.")
    meta: dict[str, object] = Field(default_factory=dict)


class StoryboardFrame(Artifact):
    kind: Literal["storyboard_frame"] = "storyboard_frame"


class ShotClip(Artifact):
    kind: Literal["shot_clip"] = "shot_clip"
    num_frames: int = Field(ge=1)
    fps: float = Field(gt=0)


class Film(Artifact):
    kind: Literal["film"] = "film"
    num_frames: int = Field(ge=1)
    fps: float = Field(gt=0)


def who(name: str, class_word: str) -> str:
    """How a story names its character: "Bolt the fox", or just "Bolt" when nobody said what it is."""
    kind = class_word.strip()
    return name if kind.lower() in ("", "character") else f"{name} the {kind}"


def format_validation_error(exc: ValidationError, what: str = "input") -> str:
    """One readable sentence per problem: `shots.2.camera_motion: must be one of ...`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or what
        msg = err["msg"]
        if err["type"] == "enum":
            msg = f"must be one of {err['ctx']['expected']}"
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return f"Invalid {what}: " + "; ".join(parts)
