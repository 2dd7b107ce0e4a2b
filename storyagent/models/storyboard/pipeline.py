"""The storyboard pipeline (paper, Fig. 3): StoryDiffusion draws every shot with one consistent
subject, LangSAM finds that subject, it is removed (the background refilled), StoryAnyDoor redraws
the user's own subject into the hole, and the redrawn subject is pasted over the removal's
background through its own mask, inside the box AnyDoor regenerated (when LangSAM finds none there,
AnyDoor's own blend is kept; `ShotResult.paste` says which).

With a cast (several `StoryboardSubject`s and each shot's `Placement`s) the same five steps run for
every character of a shot: the shots' texts name them all, LangSAM finds each by its class word
(which box is whose: `cast.assign_boxes`), the removal takes all of them out at once, StoryAnyDoor
redraws each into its own part of the hole with that character's own fine-tune, and each is pasted
through its own mask, the farthest first.

The models are loaded once (`from_pretrained`) and kept for every call; they wait on the CPU and each
visits the device only while it works (`placement.on_device`), so no two share the GPU. The
pipeline returns pictures and masks: writing files, recording them and retrying a shot that ran
out of GPU memory belong to the caller.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from storyagent.models import placement
from storyagent.models.anydoor import AnyDoorPipeline
from storyagent.models.langsam import LangSAMPipeline, SubjectMask
from storyagent.models.langsam.detector import Detections, grounding_prompt
from storyagent.models.removal import RemovalResult, SubjectRemover
from storyagent.models.removal.pipeline import dilate_mask
from storyagent.models.storyboard.cast import FinetuneSwitch, Placement, assign_boxes
from storyagent.models.storyboard.config import StoryboardConfig
from storyagent.models.storydiffusion import IdentityPass, StoryDiffusionPipeline
from storyagent.progress import make_progress

PathLike = str | os.PathLike[str]
PasteBox = tuple[int, int, int, int]
"""(y1, y2, x1, x2) pixels, ends exclusive: AnyDoor's paste box."""

PasteMethod = Literal["subject mask", "anydoor blend"]
PASTE_MASK: PasteMethod = "subject mask"
"""Step 5 took the redrawn subject alone: LangSAM's mask of it in AnyDoor's output, inside AnyDoor's paste
box (for a cast, inside the character's hole too), over the removal's background."""
PASTE_BLEND: PasteMethod = "anydoor blend"
"""Step 5 kept AnyDoor's own blend: its whole regenerated paste box (for a cast, the part inside the
character's hole), because LangSAM found no redrawn subject inside the paste box. Pasting a mask that
lies outside the box would copy the removal's own pixels back and lose the redraw without a word."""


@dataclass
class StoryboardSubject:
    """Who the storyboard shows: how prompts name it, what LangSAM looks for, and (for the redraw) a
    reference picture of the user's own subject with its mask."""

    description: str
    """How the prompts describe the subject, e.g. "Pip, a rabbit"."""
    class_word: str
    """What LangSAM looks for in the drawn and the redrawn pictures, e.g. "rabbit"."""
    image: np.ndarray | None = None
    """H×W×3 uint8 reference frame AnyDoor copies the subject from; None: no redraw."""
    mask: np.ndarray | None = None
    """H×W bool, the subject in `image`."""
    finetune: PathLike | None = None
    """A cast's character: its own StoryAnyDoor fine-tune, worn by AnyDoor for its redraws alone; None:
    AnyDoor as the pipeline loaded it. (One subject: load the pipeline with `anydoor_finetune`.)"""
    name: str = ""
    """How the results' notes name a cast's character, e.g. "Pip"; empty: its description."""

    @property
    def label(self) -> str:
        return self.name or self.description


@dataclass
class CharacterResult:
    """One character of a cast's shot: found, cleared, redrawn and pasted; arrays only."""

    character: int
    """The character's position in the cast."""
    found: SubjectMask
    """Step 2: this character in the initial picture (its own box, `cast.assign_boxes`), or why it is absent."""
    hole: np.ndarray | None = None
    """Step 3: H×W bool, its part of the removal's hole (its mask grown as the removal grows it): where
    AnyDoor redraws it."""
    redrawn: np.ndarray | None = None
    """Step 4: AnyDoor's whole output with this character alone redrawn, before the paste."""
    mask: np.ndarray | None = None
    """H×W bool: where this character shows in the shot's picture (its redrawn mask, less what nearer
    characters cover); the drawn character's mask when there was no redraw; None when not found."""
    paste_box: PasteBox | None = None
    """Step 4: (y1, y2, x1, x2) of the region AnyDoor regenerated for this character (its paste box)."""
    paste: PasteMethod | None = None
    """Step 5: how this character was pasted (`PASTE_MASK` or `PASTE_BLEND`); None: not redrawn."""
    reason: str = ""
    """Why this character needs attention; empty when fine."""


@dataclass
class ShotResult:
    """What the pipeline made for one drawn shot; arrays only, nothing written."""

    position: int
    """The shot's position in `shots_text` (0-based)."""
    prompt: str
    """The full prompt StoryDiffusion drew the shot from."""
    seed: int
    """The shot's seed (its noise, its removal's and its redraw's)."""
    initial: np.ndarray
    """Step 1: StoryDiffusion's picture, H×W×3 uint8."""
    found: SubjectMask
    """Step 2: the drawn subject in `initial`, or why it was not found."""
    mask: np.ndarray
    """H×W bool: the subject in the shot's picture (`picture`); all False when it was not found."""
    removal: RemovalResult | None = None
    """Step 3: the picture with the subject removed (`.image`) and the hole that was refilled (`.mask`)."""
    redrawn: np.ndarray | None = None
    """Step 4: AnyDoor's whole output, before the paste."""
    final: np.ndarray | None = None
    """Step 5: the redrawn subject over the removal's background; None without a redraw."""
    paste_box: PasteBox | None = None
    """Step 4: (y1, y2, x1, x2) of the region AnyDoor regenerated (its paste box); None without a redraw."""
    paste: PasteMethod | None = None
    """Step 5: how the redraw was pasted (`PASTE_MASK` or `PASTE_BLEND`); None without a redraw. A
    cast's shot leaves it None: each character says its own."""
    reason: str = ""
    """Why the shot needs attention (subject not found, redrawn subject not found); empty when fine."""
    characters: list[CharacterResult] = field(default_factory=list)
    """A cast's shot: one result per character it places, nearest the camera first (`found` and `mask`
    are then their union); empty for one subject."""

    @property
    def picture(self) -> np.ndarray:
        """The shot's storyboard picture: the redrawn one, else the initial one."""
        return self.final if self.final is not None else self.initial


def default_identity(shots_text: Sequence[str], seeds: Sequence[int], num_identity: int) -> IdentityPass:
    """The identity pass StoryDiffusion takes when none is given: the first `num_identity` shots."""
    n = min(num_identity, len(shots_text))
    return IdentityPass(prompts=list(shots_text[:n]), seeds=list(seeds[:n]))


def mask_box_xyxy(mask: np.ndarray) -> tuple[float, float, float, float]:
    """The tight x0, y0, x1, y1 pixel box of an H×W mask's True pixels (the whole picture when empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0.0, 0.0, float(mask.shape[1]), float(mask.shape[0])
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def box_mask(box: PasteBox | None, size: tuple[int, int]) -> np.ndarray:
    """An H×W bool mask of a (y1, y2, x1, x2) box (all True when there is no box)."""
    if box is None:
        return np.ones(size, bool)
    y1, y2, x1, x2 = box
    out = np.zeros(size, bool)
    out[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = True
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An H×W×3 float picture in [0, 1] as uint8."""
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


class StoryboardPipeline:
    """StoryDiffusion + LangSAM + removal + StoryAnyDoor, loaded once, one `__call__` per batch of shots."""

    def __init__(self, story: StoryDiffusionPipeline, langsam: LangSAMPipeline, remover: SubjectRemover,
                 anydoor: AnyDoorPipeline | None = None, config: StoryboardConfig | None = None,
                 device: str | None = None) -> None:
        self.story, self.langsam, self.remover, self.anydoor = story, langsam, remover, anydoor
        self.config = config or StoryboardConfig()
        self.device = device or placement.compute_device()
        """Where each model runs while it works; between steps they all wait on the CPU."""
        self._finetunes: FinetuneSwitch | None = None
        """A cast's AnyDoor, wearing one character's fine-tune at a time (made on the first cast's redraw)."""

    @classmethod
    def from_pretrained(
        cls,
        config: StoryboardConfig | None = None,
        *,
        sdxl_path: PathLike | None = None,
        dino_path: PathLike | None = None,
        sam_path: PathLike | None = None,
        anydoor_path: PathLike | None = None,
        anydoor_finetune: PathLike | None = None,
        redraw: bool = True,
        removal: Literal["diffusion", "opencv"] = "diffusion",
        torch_dtype: torch.dtype | None = None,
        device: str | None = None,
    ) -> StoryboardPipeline:
        """Every model, once: SDXL with consistent attention, LangSAM and (with `redraw`) AnyDoor, each
        from its path or the weights registry, all on the CPU until they work.

        `anydoor_finetune` is a StoryAnyDoor fine-tune put onto AnyDoor; `removal` "diffusion" inpaints
        with SDXL's own weights (no second copy), "opencv" with OpenCV's Telea. `torch_dtype` is SDXL's
        (default float16 on CUDA, float32 on the CPU).
        """
        config = config or StoryboardConfig()
        device = device or placement.compute_device()
        dtype = torch_dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        story = StoryDiffusionPipeline.from_pretrained(sdxl_path, config=config.story_config(), torch_dtype=dtype)
        langsam = LangSAMPipeline.from_pretrained(dino_path=dino_path, sam_path=sam_path, config=config.langsam)
        removal_config = config.removal_config()
        remover = (SubjectRemover.from_sdxl(story.sdxl, removal_config) if removal == "diffusion"
                   else SubjectRemover(removal_config))
        anydoor = None
        if redraw:
            anydoor = AnyDoorPipeline.from_pretrained(anydoor_path)
            if anydoor_finetune is not None:
                from storyagent.models.anydoor.finetune import apply_finetune

                anydoor = apply_finetune(anydoor, anydoor_finetune)
            anydoor.config.sampling = config.anydoor_sampling(anydoor.config.sampling)
        return cls(story, langsam, remover, anydoor, config, device)

    def running(self, model, low_vram: bool):
        """`model` on the device for a block (its own CPU offload in low-VRAM mode); see `placement.on_device`."""
        return placement.on_device(model, self.device, low_vram=low_vram)

    def __call__(
        self,
        shots_text: Sequence[str],
        subject_reference: StoryboardSubject | Sequence[StoryboardSubject],
        seeds: Sequence[int] | None = None,
        identity: IdentityPass | None = None,
        *,
        only: Sequence[int] | None = None,
        backgrounds: Sequence[str] | None = None,
        placements: Sequence[Sequence[Placement]] | None = None,
        low_vram: bool | None = None,
        show_progress: bool = True,
    ) -> list[ShotResult]:
        """Draw, mask, clear and redraw the shots at the positions in `only` (default: all), in order.

        `shots_text` holds every shot's text (the identity pass and the positions refer to it);
        `seeds` one seed per shot (default `config.seed + i`); `identity` the identity shots' pass
        the drawn shots share (default: `default_identity`); pass the same one again to redraw a shot
        alone, identical to the first time. `backgrounds` says per shot what belongs where the
        subject was (the diffusion removal's prompt). `low_vram` overrides `config.cpu_offload`.
        A subject that is not found is a result (`reason`), never an error.

        A cast: `subject_reference` is a list of characters and `placements` gives every shot its
        characters (`Placement`: who, and where the story puts them), nearest the camera first. The
        shots' texts then name the characters themselves (StoryDiffusion gets no subject of its own),
        and each character is found, redrawn with its own `finetune` and pasted in its own mask.
        """
        cast = None if isinstance(subject_reference, StoryboardSubject) else list(subject_reference)
        if cast is not None and (placements is None or len(placements) != len(shots_text)):
            raise ValueError("a cast needs one list of placements per shot")
        subject = subject_reference if cast is None else None
        low_vram = self.config.cpu_offload if low_vram is None else low_vram
        seeds = list(seeds) if seeds is not None else [self.config.seed + i for i in range(len(shots_text))]
        drawn = sorted(set(only)) if only is not None else list(range(len(shots_text)))
        identity = identity or default_identity(shots_text, seeds, self.story.config.num_identity)
        steps = self.story.config.num_inference_steps
        with make_progress(disable=not show_progress) as progress:
            # 1. Initial storyboard: the identity shots together (consistent self-attention fills the
            #    bank), the other drawn shots reading it; an identity member's picture is reused.
            total = steps * (len(identity.prompts) + len(drawn))  # at most: a member drawn is drawn once
            task = progress.add_task("Storyboard (StoryDiffusion)", total=total, status="drawing")
            with self.running(self.story, low_vram):
                story = self.story(list(shots_text), subject.description if cast is None else "", seeds=seeds,
                                   identity=identity, only=drawn, output_type="np",
                                   on_step=lambda: progress.advance(task))
            progress.update(task, completed=total, status="finding the subject")
            initial = {i: to_uint8(story.images[i]) for i in drawn}
            if cast is not None:
                results = [ShotResult(position=i, prompt=story.prompts[i], seed=seeds[i], initial=initial[i],
                                      found=SubjectMask(found=False, mask=np.zeros(initial[i].shape[:2], bool)),
                                      mask=np.zeros(initial[i].shape[:2], bool)) for i in drawn]
                self.clean_cast(results, cast, placements, backgrounds, low_vram, progress)
                return results

            # 2. Subject masks: LangSAM with the subject's class word in every drawn picture.
            with self.running(self.langsam, low_vram):
                found = dict(zip(drawn, self.langsam([initial[i] for i in drawn], subject.class_word)))

            results: list[ShotResult] = []
            clean = progress.add_task("Storyboard (remove, redraw)", total=len(drawn), status="")
            for i in drawn:
                shot = ShotResult(position=i, prompt=story.prompts[i], seed=seeds[i], initial=initial[i],
                                  found=found[i], mask=found[i].mask)
                results.append(shot)
                progress.advance(clean)
                if not found[i].found:  # nothing to remove: the initial picture stays, and why
                    shot.reason = f"{found[i].reason}; the storyboard keeps the initial picture"
                    continue
                # 3. Removal: the drawn subject's grown mask refilled with the shot's background.
                background = backgrounds[i] if backgrounds is not None else ""
                shot.removal = self.remove(shot, background, subject.description, low_vram)
                if self.anydoor is None or subject.image is None:
                    continue
                # 4. Redraw: StoryAnyDoor draws the user's subject into the hole.
                shot.redrawn, shot.paste_box = self.redraw(shot, subject, low_vram)
                # 5. Paste: only the redrawn subject (its own mask, inside AnyDoor's paste box) over the
                #    removal's background; AnyDoor's own blend when none is found there.
                shot.final, shot.mask, shot.paste, shot.reason = self.paste(shot, subject.class_word, low_vram)
        return results

    # ---- a cast: steps 2 to 5 for every character of a shot --------------------------------------

    def clean_cast(self, shots: list[ShotResult], cast: list[StoryboardSubject],
                   placements: Sequence[Sequence[Placement]], backgrounds: Sequence[str] | None, low_vram: bool,
                   progress) -> None:
        """Steps 2-5 of a cast's drawn `shots` (their initial pictures made), filled into each result."""
        # 2. Each character's mask: LangSAM's boxes for its class word, told apart by the story's regions.
        with self.running(self.langsam, low_vram):
            for shot in shots:
                found = self.find_cast(shot.initial, [cast[p.character].class_word for p in placements[shot.position]],
                                       [p.pixels(shot.initial.shape[:2]) for p in placements[shot.position]])
                shot.characters = [CharacterResult(p.character, f, mask=f.mask if f.found else None)
                                   for p, f in zip(placements[shot.position], found)]
                shot.found, shot.reason = self.union_found(shot, cast)
                shot.mask = shot.found.mask.copy()
        clean = progress.add_task("Storyboard (remove, redraw)", total=len(shots), status="")
        for shot in shots:
            progress.advance(clean)
            if not shot.found.found:  # nothing to remove: the initial picture stays, and why
                shot.reason = f"{shot.reason}; the storyboard keeps the initial picture"
                continue
            # 3. Removal: all the drawn characters at once, their grown masks refilled with the background.
            found = [c for c in shot.characters if c.found.found]
            avoid = ", ".join(cast[c.character].description for c in found)
            background = backgrounds[shot.position] if backgrounds is not None else ""
            shot.removal = self.remove(shot, background, avoid, low_vram)
            # Each character's part of the hole: its own mask grown by the removal's rule (removal/pipeline.py).
            removal = self.remover.config
            grow = max(removal.min_dilate_px, round(removal.dilate_fraction * max(shot.initial.shape[:2])))
            for c in found:
                c.hole = dilate_mask(c.found.mask, grow) & shot.removal.mask
        if self.anydoor is None:
            return
        # 4. Redraw: character by character (one fine-tune switch each), each into its own hole.
        if self._finetunes is None or self._finetunes.pipe is not self.anydoor:
            self._finetunes = FinetuneSwitch(self.anydoor)
        switch = self._finetunes
        try:
            for k, who in enumerate(cast):
                todo = [(s, c) for s in shots for c in s.characters
                        if c.character == k and c.hole is not None and who.image is not None]
                if not todo:
                    continue
                switch.use(who.finetune)
                for shot, c in todo:
                    c.redrawn, c.paste_box = self.redraw_into(shot, who, c.hole, low_vram)
        finally:
            switch.use(None)  # AnyDoor as loaded, for the next call
        # 5. Paste: each redrawn character through its own mask, the farthest first.
        for shot in shots:
            if any(c.redrawn is not None for c in shot.characters):
                shot.final, shot.mask, notes = self.paste_cast(shot, cast, low_vram)
                shot.reason = "; ".join(r for r in (shot.reason, notes) if r)

    def find_cast(self, image: np.ndarray, class_words: Sequence[str], regions: Sequence) -> list[SubjectMask]:
        """Step 2 for one picture: each placed character's mask, in the placements' order.

        Grounding DINO looks once per class word; `cast.assign_boxes` gives each character the box that
        best matches its region in the story (two characters of one class word are told apart by where
        they stand); SAM masks each chosen box.
        """
        words = list(dict.fromkeys(class_words))
        detections: dict[str, Detections] = {}
        for word in words:
            (detections[word],) = self.langsam.detector([np.asarray(image)[..., :3]], grounding_prompt(word))
        chosen = assign_boxes(list(regions), [(detections[w].boxes, detections[w].scores) for w in class_words])
        out = []
        for word, j in zip(class_words, chosen):
            found, prompt = detections[word], grounding_prompt(word)
            if j is None:  # none found (LangSAM's own reason), or every box found is another character's
                out.append(self.langsam.subject_mask(image, found, prompt) if len(found) == 0 else SubjectMask(
                    found=False, mask=np.zeros(image.shape[:2], bool), candidates=len(found),
                    reason=f"every '{word}' found is another character's"))
                continue
            one = Detections(found.boxes[j:j + 1], found.scores[j:j + 1], found.labels[j:j + 1])
            out.append(self.langsam.subject_mask(image, one, prompt))
        return out

    @staticmethod
    def union_found(shot: ShotResult, cast: list[StoryboardSubject]) -> tuple[SubjectMask, str]:
        """The shot's characters found, as one `SubjectMask` (their union), and a note naming the missing."""
        found = [c.found for c in shot.characters if c.found.found]
        notes = [f"{cast[c.character].label}: {c.found.reason}"
                 for c in shot.characters if not c.found.found]
        if not found:
            return SubjectMask(found=False, mask=np.zeros(shot.initial.shape[:2], bool),
                               reason="; ".join(notes)), "; ".join(notes)
        boxes = np.array([f.box for f in found])
        union = SubjectMask(found=True, mask=np.logical_or.reduce([f.mask for f in found]),
                            box=(float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()),
                                 float(boxes[:, 3].max())),
                            score=min(f.score for f in found), mask_score=min(f.mask_score for f in found),
                            label=", ".join(f.label for f in found), candidates=sum(f.candidates for f in found))
        return union, "; ".join(notes)

    def redraw_into(self, shot: ShotResult, who: StoryboardSubject, hole: np.ndarray,
                    low_vram: bool) -> tuple[np.ndarray, PasteBox]:
        """Step 4 for one character: (AnyDoor's full frame with `who` redrawn into `hole` of the removal's
        picture, the paste box it regenerated)."""
        return self.anydoor_redraw(who, shot.removal.image, hole, shot.seed, low_vram)

    def anydoor_redraw(self, who: StoryboardSubject, target: np.ndarray, hole: np.ndarray, seed: int,
                       low_vram: bool) -> tuple[np.ndarray, PasteBox]:
        """AnyDoor's redraw of `who` into `hole` of `target` (as `AnyDoorPipeline.redraw`, same seed rule) and
        the box it replaced: every pixel outside that box is `target`'s."""
        generator = torch.Generator(device="cpu").manual_seed(seed)
        with self.running(self.anydoor, low_vram):
            out = self.anydoor(who.image, who.mask, target, hole, generator=generator, show_progress=False)
        return np.asarray(out.image, np.uint8), tuple(int(v) for v in out.paste_box)

    def paste_cast(self, shot: ShotResult, cast: list[StoryboardSubject],
                   low_vram: bool) -> tuple[np.ndarray, np.ndarray, str]:
        """Step 5 for a cast's shot: (picture, the characters' union mask, a note).

        Each redrawn character is found again in its own redraw (LangSAM, the box best matching its
        hole) and kept inside its hole and AnyDoor's paste box, so one character's redraw never reaches
        another's place (`c.paste` = `PASTE_MASK`); with nothing left there, AnyDoor's own blend inside
        its hole (`PASTE_BLEND`, and a note). The farthest is pasted first, so a nearer one covers
        it. Each character's `mask` is then where it
        shows: its pixels in the picture are its own redraw's, and the pixels outside every mask are
        the removal's background.
        """
        picture = shot.removal.image.copy()
        notes, layers = [], []
        with self.running(self.langsam, low_vram):
            for c in shot.characters:
                if not c.found.found:
                    continue
                if c.redrawn is None:  # no reference to redraw it from: it shows as drawn
                    layers.append((c, shot.initial, c.found.mask))
                    continue
                who = cast[c.character]
                (new,) = self.find_cast(c.redrawn, [who.class_word], [mask_box_xyxy(c.hole)])
                inside = c.hole & box_mask(c.paste_box, c.hole.shape)
                mask = new.mask & inside if new.found else np.zeros_like(c.hole)
                c.paste = PASTE_MASK
                if not mask.any():
                    # AnyDoor's own blend, inside this character's own hole (the rest of its paste box may
                    # hold another character).
                    mask, c.paste = (inside if inside.any() else c.hole), PASTE_BLEND
                    where = "was not found" if not new.found else "was found only outside its hole and paste box"
                    reason = f" ({new.reason})" if new.reason else ""
                    notes.append(f"{who.label}: the redrawn character {where}{reason}; "
                                 "AnyDoor's own blend was kept inside its hole")
                layers.append((c, c.redrawn, mask))
        covered = np.zeros(picture.shape[:2], bool)
        for c, _, mask in layers:  # nearest first: each keeps only what the nearer ones leave
            c.mask = mask & ~covered
            covered |= c.mask
            if mask.any() and not c.mask.any():
                notes.append(f"{cast[c.character].label}: hidden entirely behind nearer characters")
        for c, source, _ in reversed(layers):  # farthest first
            picture[c.mask] = source[c.mask]
        return picture, covered, "; ".join(notes)

    def remove(self, shot: ShotResult, background: str, avoid: str, low_vram: bool) -> RemovalResult:
        """Step 3 for one shot; the diffusion removal inpaints with SDXL's parts, on the device meanwhile."""
        diffusion = self.remover.method == "diffusion"
        with self.running(self.story, low_vram) if diffusion else contextlib.nullcontext():
            return self.remover(shot.initial, shot.found.mask, background=background, avoid=avoid, seed=shot.seed)

    def redraw(self, shot: ShotResult, subject: StoryboardSubject, low_vram: bool) -> tuple[np.ndarray, PasteBox]:
        """Step 4 for one shot: (AnyDoor's full frame with the subject redrawn into the removal's hole, the
        paste box it regenerated)."""
        return self.anydoor_redraw(subject, shot.removal.image, shot.removal.mask, shot.seed, low_vram)

    def paste(self, shot: ShotResult, class_word: str,
              low_vram: bool) -> tuple[np.ndarray, np.ndarray, PasteMethod, str]:
        """Step 5 for one shot: (picture, its subject mask, how it was pasted, a note).

        AnyDoor regenerates its whole paste box; only the new subject (LangSAM on the redrawn picture,
        kept inside that box) is taken from it, so the refilled background survives around a smaller
        or differently posed subject (`PASTE_MASK`). When nothing of the found subject lies inside
        the box (not found, or LangSAM's best box is elsewhere in the picture, where AnyDoor changed
        nothing), AnyDoor's own blend is kept: its output as it is (`PASTE_BLEND`), the subject's
        mask then the hole inside the box; the note says why.
        """
        with self.running(self.langsam, low_vram):
            (new,) = self.langsam([shot.redrawn], class_word)
        hole, inside = shot.removal.mask, box_mask(shot.paste_box, shot.redrawn.shape[:2])
        mask = new.mask & inside if new.found else np.zeros_like(hole)
        if mask.any():
            return np.where(mask[..., None], shot.redrawn, shot.removal.image), mask, PASTE_MASK, ""
        why = "was not found" if not new.found else "was found only outside AnyDoor's paste box"
        note = f"the redrawn subject {why}{f' ({new.reason})' if new.reason else ''}; AnyDoor's own blend was kept"
        blend = hole & inside
        return shot.redrawn.copy(), blend if blend.any() else hole, PASTE_BLEND, note

    def release(self) -> None:
        """Give the device's cached memory back (the models themselves already wait on the CPU)."""
        placement.free_memory()
