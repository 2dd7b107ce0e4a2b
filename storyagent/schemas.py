"""The data that flows between the crew: subject, story script, and the artifacts made from them.

Every model is pydantic v2, round-trips through JSON, and explains invalid values in words
(`format_validation_error`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

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


def _region_from_words(value: object) -> object:
    if isinstance(value, str):
        key = value.strip().lower().replace("-", " ").replace("centre", "center")
        if key not in NAMED_REGIONS:
            raise ValueError(f"unknown region {value!r}; use one of {', '.join(NAMED_REGIONS)} or {{x, y, w, h}}")
        return NAMED_REGIONS[key]
    return value


NAMED_REGIONS: dict[str, dict[str, float]] = {
    "left": {"x": 0.05, "y": 0.25, "w": 0.4, "h": 0.7},
    "center": {"x": 0.3, "y": 0.25, "w": 0.4, "h": 0.7},
    "right": {"x": 0.55, "y": 0.25, "w": 0.4, "h": 0.7},
    "bottom left": {"x": 0.05, "y": 0.45, "w": 0.35, "h": 0.5},
    "bottom right": {"x": 0.6, "y": 0.45, "w": 0.35, "h": 0.5},
    "full": {"x": 0.1, "y": 0.05, "w": 0.8, "h": 0.9},
}


class ShotCharacter(BaseModel):
    """One character of the cast in a shot: who, doing what, where."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, description="The character's name, as the cast names it.")
    action: str = Field(min_length=1, max_length=200, description="What this character does in the shot.")
    region: Region = Field(description="Where this character stands in the frame.")

    _region = field_validator("region", mode="before")(classmethod(lambda cls, v: _region_from_words(v)))


HIDDEN_FRACTION = 0.6
"""A character whose box is covered this much by a character in front of it is hidden (refused)."""


def front_to_back(characters: list[ShotCharacter]) -> list[ShotCharacter]:
    """The shot's characters nearest the camera first: the lower a box's bottom edge, the nearer (ties keep
    the story's order). The renderer draws them in the reverse order, so nearer ones cover farther ones."""
    order = sorted(range(len(characters)), key=lambda i: (-(characters[i].region.y + characters[i].region.h), i))
    return [characters[i] for i in order]


def covered_fraction(back: Region, front: Region) -> float:
    """How much of `back`'s box `front`'s box covers, 0..1."""
    w = min(back.x + back.w, front.x + front.w) - max(back.x, front.x)
    h = min(back.y + back.h, front.y + front.h) - max(back.y, front.y)
    return max(0.0, w) * max(0.0, h) / (back.w * back.h)


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
    characters: list[ShotCharacter] = Field(
        default_factory=list, max_length=8,
        description="A cast's shot: every character it shows, each with its own action and region. Empty: the "
                    "lead character alone, doing `subject_action` in `subject_region`.")
    speaker: str | None = Field(default=None, max_length=80,
                                description="Who says the shot's line: a character of the cast, in that character's "
                                            "voice. None: the narrator.")

    @field_validator("shot_type", "camera_motion", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return _normalise_choice(value)

    _region = field_validator("subject_region", mode="before")(classmethod(lambda cls, v: _region_from_words(v)))

    @model_validator(mode="after")
    def _each_character_once(self) -> Shot:
        names = [c.name.casefold() for c in self.characters]
        if len(set(names)) != len(names):
            raise ValueError("a character is listed twice in one shot")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_cast(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict:
        # A one-character shot serialises as it did before casts existed: the same story.json, and the
        # same hashes of every picture and clip made from it.
        data = handler(self)
        if not self.characters:
            data.pop("characters", None)
        if self.speaker is None:
            data.pop("speaker", None)
        return data

    def cast(self, lead: str) -> list[ShotCharacter]:
        """Who the shot shows: its `characters`, else the `lead` alone doing `subject_action` in `subject_region`."""
        return list(self.characters) or [ShotCharacter(name=lead, action=self.subject_action,
                                                         region=self.subject_region)]


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

    def cast_problems(self, cast: list[str]) -> tuple[list[str], list[str]]:
        """(errors, warnings) of this story for the cast named `cast` (the lead first).

        Errors: a shot names a character not in the cast, or hides one character behind another (more than
        `HIDDEN_FRACTION` of its box behind a nearer one). Warning: a character no shot shows.
        """
        known = {n.casefold(): n for n in cast}
        errors: list[str] = []
        seen: set[str] = set()
        for shot in self.shots:
            people = shot.cast(cast[0])
            if shot.speaker is not None and shot.speaker.casefold() not in known:
                errors.append(f"shot {shot.index}'s line is said by {shot.speaker!r}, who is not in the cast "
                              f"({', '.join(cast)}); name a character or leave it to the narrator")
            for c in people:
                if c.name.casefold() not in known:
                    errors.append(f"shot {shot.index} names {c.name!r}, who is not in the cast "
                                  f"({', '.join(cast)})")
                seen.add(c.name.casefold())
            order = front_to_back(people)
            for i, back in enumerate(order):
                for front in order[:i]:
                    if covered_fraction(back.region, front.region) > HIDDEN_FRACTION:
                        errors.append(f"shot {shot.index} hides {back.name} behind {front.name}; give them "
                                      "regions side by side (left and right)")
        warnings = [f"{name} is in the cast but in no shot" for key, name in known.items() if key not in seen]
        return errors, warnings


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

    @property
    def files(self) -> list[str]:
        """Every file of the artifact, relative to the run folder: its picture or clip, its mask, and a cast's
        per-character masks (`meta["character_masks"]`)."""
        masks = self.meta.get("character_masks")
        own = [str(v) for v in masks.values()] if isinstance(masks, dict) else []
        return [self.path, *([self.mask_path] if self.mask_path else []), *own]


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
