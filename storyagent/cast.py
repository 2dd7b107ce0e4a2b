"""A film's cast: the user's characters, each with its own media, as the run settings hold them.

The lead is `RunConfig.subject` / `name` / `class_word` / `mask` (so the one-character command of
before is a cast of one, with the same files and cache keys); the others are
`RunConfig.supporting`. On the command line a cast is `--subject NAME=PATH` given once per character
(with `--class-word NAME=WORD`), or a `--cast cast.toml` file:

    [[character]]
    name = "Pip"
    class_word = "fox"
    media = "pip/"          # a photo, a short video or a folder of them; relative to this file

    [[character]]
    name = "Crong"
    class_word = "dinosaur"
    media = "crong.mp4"
    mask = "crong_mask.png" # optional, for a single photo
    voice = "espeak:en-us"  # optional, the voice of this character's lines
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storyagent.errors import InputError
from storyagent.schemas import format_validation_error

MAX_CAST = 6
"""The most characters a film has: more cannot stand side by side in one frame."""
LEAD_FOLDER = "subject"
"""The run folder's reference frames of the lead (`subject/frame_01.png`); the others' are under
`cast/<name>/`."""


class CastMember(BaseModel):
    """One of the user's characters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, description="What the story calls the character.")
    class_word: str = Field(default="character", max_length=40, description="What it is: fox, cat, toy ...")
    media: Path = Field(description="A photo, a short video, or a folder of them, showing the character.")
    mask: Path | None = Field(default=None, description="Optional mask image (white = character) for a single photo.")
    voice: str | None = Field(default=None, description="The voice of this character's spoken lines (as --voice); default: the narrator's.")

    @field_validator("name", "class_word")
    @classmethod
    def _stripped(cls, v: str) -> str:
        return v.strip()

    _media = field_validator("media")(classmethod(lambda cls, v: checked_media(v)))
    _mask = field_validator("mask")(classmethod(lambda cls, v: checked_mask(v, "the mask")))
    _voice = field_validator("voice")(classmethod(lambda cls, v: v if v is None else checked_voice(v)))


# The media checks answer in one sentence (InputError, which pydantic lets through unwrapped). Run when the
# settings are validated, they refuse a bad path before the run folder is made and before a character's
# files are hashed, which would block for ever on a FIFO. Imported late: the media stack is heavy.
def checked_media(path: Path) -> Path:
    """`path` when it is a photo, a video or a folder of them (else one sentence)."""
    from storyagent.media.reading import media_files

    media_files(path)
    return path


def checked_mask(path: Path | None, option: str) -> Path | None:
    """`path` when it is None or a regular file (else one sentence naming `option`)."""
    from storyagent.media.reading import regular_file

    return path if path is None else regular_file(path, option, "pass a mask image (white = character)")


def checked_voice(spec: str) -> str:
    """The voice setting as the voice models parse it, so one the mix would refuse is refused now."""
    from storyagent.models.voice import parse_voice_spec

    return parse_voice_spec(spec)


def reference_folder(position: int, name: str) -> str:
    """Where character number `position` of the cast (0: the lead) keeps its reference frames in the run folder."""
    from storyagent.fileio import slugify

    return LEAD_FOLDER if position == 0 else f"cast/{slugify(name, 30)}"


def check_cast(cast: list[CastMember]) -> list[CastMember]:
    """The cast, refused in one sentence when it is too large or two characters share a name."""
    if len(cast) > MAX_CAST:
        raise InputError(f"A cast of {len(cast)} characters is too many for one frame; give at most {MAX_CAST}.")
    seen: set[str] = set()
    for member in cast:
        if member.name.casefold() in seen:
            raise InputError(f"Two characters are called {member.name!r}; give each character its own name.")
        seen.add(member.name.casefold())
    from storyagent.fileio import slugify

    folders = [slugify(m.name, 30) for m in cast]
    if len(set(folders)) != len(folders):
        raise InputError("Two characters' names differ only in punctuation; give each character a distinct name.")
    return cast


def _member(fields: dict[str, object], where: str) -> CastMember:
    try:
        return CastMember(**fields)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, where)) from exc


def read_cast_file(path: Path) -> list[CastMember]:
    """The characters of a `cast.toml` (module docstring), their paths relative to the file's folder."""
    from storyagent.media.reading import regular_file

    regular_file(path, "--cast", "pass a cast.toml file (see `storyagent run --help`)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"--cast {path} is not valid TOML ({exc}); see `storyagent run --help` for the format.") from None
    entries = data.get("character")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"--cast {path} holds no [[character]] tables; each character needs a name and its media.")
    cast = []
    for i, entry in enumerate(entries, 1):
        fields = dict(entry)
        for key in ("media", "mask"):
            if isinstance(fields.get(key), str):
                fields[key] = (path.parent / Path(fields[key]).expanduser()).resolve()
        cast.append(_member(fields, f"character {i} of {path}"))
    return check_cast(cast)


def _named(value: str) -> tuple[str, str] | None:
    """`NAME=VALUE` split at its first `=`; None for a plain value (a path may hold `=` after a slash)."""
    name, sep, rest = value.partition("=")
    if not sep or not name.strip() or "/" in name or "\\" in name:
        return None
    return name.strip(), rest


def cast_from_options(subjects: list[str], class_words: list[str], name: str | None,
                      default_name: str) -> list[CastMember]:
    """The cast of the command line's repeated `--subject [NAME=]PATH` and `--class-word [NAME=]WORD`.

    One plain `--subject PATH` is today's single character, named `name` (else `default_name`); with
    several, each is `NAME=PATH`. A plain `--class-word WORD` is the lead's.
    """
    words: dict[str, str] = {}
    plain_word: str | None = None
    for value in class_words:
        named = _named(value)
        if named is None:
            plain_word = value
        else:
            words[named[0].casefold()] = named[1]
    cast = []
    for i, value in enumerate(subjects):
        named = _named(value)
        if named is not None and Path(value).exists():
            named = None  # an existing file whose name holds "=" 
        if named is None:
            if len(subjects) > 1:
                raise InputError(f"--subject {value}: with several characters, give each as NAME=PATH "
                                 "(--subject Pip=pip.png --subject Crong=crong.mp4).")
            who, media = name or default_name, value
        else:
            who, media = named
        word = words.pop(who.casefold(), plain_word if i == 0 else None) or "character"
        cast.append(_member({"name": who, "class_word": word, "media": Path(media).expanduser()}, f"--subject {value}"))
    if words:
        raise InputError(f"--class-word names {', '.join(words)}, who is not given with --subject NAME=PATH.")
    return check_cast(cast)
