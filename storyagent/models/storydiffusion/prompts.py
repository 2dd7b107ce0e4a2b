"""Shot prompts for the storyboard: subject + shot + a style that every shot shares."""

from __future__ import annotations

STYLES: dict[str, tuple[str, str]] = {
    # name: (template with {prompt}, negative prompt)
    "none": ("{prompt}", ""),
    "cinematic": (
        "cinematic film still, {prompt}, shallow depth of field, soft film grain, balanced composition",
        "cartoon, sketch, text, watermark, deformed, extra limbs, blurry",
    ),
    "storybook": (
        "children's storybook illustration, {prompt}, warm watercolour textures, gentle light",
        "photo, photorealistic, text, watermark, deformed, extra limbs",
    ),
    "photographic": (
        "photograph, {prompt}, 35mm lens, natural light, sharp focus",
        "drawing, painting, cartoon, text, watermark, deformed, extra limbs",
    ),
    "anime": (
        "anime key visual, {prompt}, clean line art, vivid colours",
        "photo, photorealistic, text, watermark, deformed, extra limbs",
    ),
}


def shot_prompt(subject: str, shot: str, style: str = "cinematic") -> tuple[str, str]:
    """(prompt, negative prompt) for one shot; the subject leads so every shot names it the same way."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    template, negative = STYLES[style]
    subject, shot = subject.strip().rstrip("."), shot.strip().rstrip(".")
    text = f"{subject}, {shot}" if subject else shot
    return template.format(prompt=text), negative
