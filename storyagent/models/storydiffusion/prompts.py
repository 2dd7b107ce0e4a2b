"""Shot prompts for the storyboard: subject + shot + a style that every shot shares."""

from __future__ import annotations

from dataclasses import dataclass

DEPICTIONS = (
    "cartoon", "drawing", "sketch", "anime", "manga", "comic", "painting", "illustration", "photo", "3d render",
)
"""Kinds of depiction a user's own subject may come as; a default style's negative prompt names none of
them, or it would push against a subject drawn (or photographed) that way."""


@dataclass(frozen=True)
class Style:
    """A look every shot of a storyboard shares."""

    template: str
    """The prompt, with `{prompt}` where the subject and the shot go."""
    negative: str
    """The negative prompt."""
    doc: str
    """What the style is for; names every kind of depiction (`DEPICTIONS`) its negative deliberately excludes."""


STYLES: dict[str, Style] = {
    "none": Style("{prompt}", "", doc="The shot text alone, no negative prompt."),
    "cinematic": Style(
        "cinematic film still, {prompt}, shallow depth of field, soft film grain, balanced composition",
        "text, watermark, deformed, extra limbs, blurry, low quality",
        doc="The default: film framing and light. Its negative names defects only, so a cartoon, "
        "drawn or photographed subject is not pushed against (like upstream's default "
        "'Japanese Anime' style, whose negative names defects only).",
    ),
    "storybook": Style(
        "children's storybook illustration, {prompt}, warm watercolour textures, gentle light",
        "photo, photorealistic, text, watermark, deformed, extra limbs",
        doc="Opt-in watercolour picture book; deliberately excludes photo looks, so it fights a "
        "photographed subject.",
    ),
    "photographic": Style(
        "photograph, {prompt}, 35mm lens, natural light, sharp focus",
        "drawing, painting, cartoon, text, watermark, deformed, extra limbs",
        doc="Opt-in photo look; deliberately excludes drawing, painting and cartoon looks, so it "
        "fights a drawn subject.",
    ),
    "anime": Style(
        "anime key visual, {prompt}, clean line art, vivid colours",
        "photo, photorealistic, text, watermark, deformed, extra limbs",
        doc="Opt-in anime look; deliberately excludes photo looks, so it fights a photographed subject.",
    ),
}


def shot_prompt(subject: str, shot: str, style: str = "cinematic") -> tuple[str, str]:
    """(prompt, negative prompt) for one shot; the subject leads so every shot names it the same way."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    preset = STYLES[style]
    subject, shot = subject.strip().rstrip("."), shot.strip().rstrip(".")
    text = f"{subject}, {shot}" if subject else shot
    return preset.template.format(prompt=text), preset.negative
