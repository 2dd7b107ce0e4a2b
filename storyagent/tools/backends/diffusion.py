"""The `diffusion` backend (the paper's pipeline, GPU and weights).

Subject: LangSAM masks the reference frames when the run opens, which also prints what is left to
train and about how long it takes. Fine-tunes (paper, Fig. 3): at the storyboard stage, once the
story is written and approved, the subject's StoryAnyDoor and LoRA-BE are found in the cache or
trained (`finetunes.py`: `train_subject`). Storyboard: StoryDiffusion draws
every shot with one consistent subject, LangSAM finds it, it is removed, and StoryAnyDoor redraws
the user's own subject there (`models/storyboard`, loaded once per run; its files and records are
written by `StoryboardDraw`). Video: DynamiCrafter with the subject's
LoRA-BE adapter animates each storyboard picture with the shot's description as its prompt.
Weights come from `storyagent.weights` (a `STORYAGENT_WEIGHTS_*` path or the Hugging Face cache).

A cast of several characters: each character's own StoryAnyDoor and one LoRA-BE for the cast
(`CastFineTunes`); every shot's prompt names each character it shows ("Pip, a fox, hops on the
left"), each is found, redrawn with its own StoryAnyDoor and pasted in its own mask
(`storyboard/shot_NN_mask_<name>.png`, `meta["character_masks"]`); the video prompt writes each
character's token for its name. A film of one character is exactly what it was before casts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from storyagent.cast import CastMember
from storyagent.config import RunConfig
from storyagent.fileio import slugify
from storyagent.hashing import hash_file, hash_json
from storyagent.media import write_png, write_video
from storyagent.models import placement
from storyagent.models.continuation import (
    Continued,
    WindowRule,
    continue_shot,
    retime,
    shot_frames,
)
from storyagent.models.wan.config import DYNAMICRAFTER, is_wan, wan_config
from storyagent.schemas import (
    Region,
    Shot,
    ShotClip,
    StoryboardFrame,
    StoryScript,
    Subject,
    front_to_back,
)
from storyagent.tools.backends.finetunes import (
    CastFineTunes,
    FineTune,
    SubjectFineTunes,
    anydoor_entry,
)
from storyagent.tools.per_shot import STORYBOARD_DIR, clip_path, shot_feedback, shot_key
from storyagent.tools.run import Backend, Run
from storyagent.tools.shot_failure import ShotFailedError, with_memory_retry
from storyagent.tools.subject import LangSAMMasks

if TYPE_CHECKING:  # the models load with the first storyboard, not with the command line
    from storyagent.models.lora_be import CastToken
    from storyagent.models.storyboard import (
        Placement,
        ShotResult,
        StoryboardConfig,
        StoryboardPipeline,
        StoryboardSubject,
    )
    from storyagent.models.storydiffusion import IdentityPass


def storyboard_size(cfg: RunConfig) -> tuple[int, int]:
    """(width, height) of the storyboard pictures: the film's aspect ratio, multiples of 32.

    SDXL draws best near a megapixel (`storyboard_side` 1024); DynamiCrafter resizes the picture.
    """
    scale = cfg.storyboard_side / max(cfg.width, cfg.height)
    return (max(32, round(cfg.width * scale / 32) * 32), max(32, round(cfg.height * scale / 32) * 32))


def shot_text(shot: Shot, notes: Mapping[int, str] | None = None) -> str:
    """The image prompt of a shot: its text, led by the reviewer's words for it that the story could not
    take in (`notes`, by shot number; see `per_shot.shot_feedback`)."""
    text = f"{shot.subject_action}, {shot.description}, {shot.background}, {shot.shot_type.value} shot"
    note = (notes or {}).get(shot.index, "")
    return f"{note}, {text}" if note else text


def where(region: Region) -> str:
    """Where a character stands, in the words an image prompt understands."""
    x, _ = region.center
    return "on the left" if x < 0.4 else "on the right" if x > 0.6 else "in the middle"


def cast_shot_text(shot: Shot, cast: list[CastMember], notes: Mapping[int, str] | None = None) -> str:
    """The image prompt of a cast's shot: every character it shows described as "Name, a class_word",
    with its action and where it stands, then the shot's text (led by the reviewer's words, as `shot_text`)."""
    words = {m.name.casefold(): m.class_word for m in cast}
    people = " and ".join(f"{c.name}, a {words.get(c.name.casefold(), 'character')}, {c.action} {where(c.region)}"
                          for c in shot.cast(cast[0].name))
    text = f"{people}, {shot.description}, {shot.background}, {shot.shot_type.value} shot"
    note = (notes or {}).get(shot.index, "")
    return f"{note}, {text}" if note else text


def placements(shot: Shot, cast: list[CastMember]) -> list[Placement]:
    """The characters of a cast's shot as the storyboard places them: nearest the camera first, each
    with its position in the cast and its story region (x0, y0, x1, y1); a name outside the cast is left out."""
    from storyagent.models.storyboard import Placement

    position = {m.name.casefold(): i for i, m in enumerate(cast)}
    return [Placement(position[c.name.casefold()], (c.region.x, c.region.y, c.region.x + c.region.w,
                                                    c.region.y + c.region.h))
            for c in front_to_back(shot.cast(cast[0].name)) if c.name.casefold() in position]


def reference_for_redraw(subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    """The reference frame whose subject mask is largest: the most of the subject for AnyDoor to copy."""
    if not subject.frames or not subject.masks:
        raise ValueError("the subject has no prepared frames and masks to redraw from")
    masks = [np.asarray(Image.open(p).convert("L")) > 127 for p in subject.masks]
    best = int(np.argmax([m.sum() for m in masks]))
    return np.asarray(Image.open(subject.frames[best]).convert("RGB")), masks[best]


@dataclass
class StoryboardDraw:
    """One storyboard pass of the backend: the pipeline called for the stale shots together (and shot
    by shot when that runs out of GPU memory on its low-VRAM retry too, so only a shot that fails
    again is skipped), every shot's pictures written and recorded once each."""

    pipe: StoryboardPipeline
    run: Run
    script: StoryScript
    seeds: dict[int, int]
    texts: dict[int, str]
    """Every shot's image prompt, by shot number (`shot_text`, or `cast_shot_text` for a cast)."""
    identity: IdentityPass
    frame_hash: Callable[[Shot], str]
    characters: list[StoryboardSubject] | None = None
    """A cast's characters, in cast order, each with its reference and its StoryAnyDoor; None: one subject."""

    def __call__(self, stale: list[int]) -> None:
        try:
            self.draw(stale)
        except ShotFailedError:
            if len(stale) == 1:
                raise
            failed: list[ShotFailedError] = []
            for number in stale:
                try:
                    self.draw([number])
                except ShotFailedError as exc:
                    failed.append(exc)
            if failed:
                raise ShotFailedError.combine(failed) from None

    def draw(self, numbers: list[int]) -> None:
        """The shots `numbers` through the pipeline (once more in low-VRAM mode after a GPU out-of-memory
        error), then written and recorded."""
        from storyagent.models.storyboard import StoryboardSubject

        shots, who = self.script.shots, self.run.subject.subject
        position = {s.index: i for i, s in enumerate(shots)}
        if self.characters is None:
            subject = StoryboardSubject(f"{who.name}, a {who.class_word}", who.class_word, *reference_for_redraw(who))
            placed = None
        else:
            subject, placed = self.characters, [placements(s, self.run.config.cast) for s in shots]

        def attempt(low_vram: bool):
            return self.pipe([self.texts[s.index] for s in shots], subject, [self.seeds[s.index] for s in shots],
                             self.identity, only=[position[n] for n in numbers],
                             backgrounds=[s.background for s in shots], placements=placed, low_vram=low_vram,
                             show_progress=self.run.show_progress)

        results, retried = with_memory_retry(numbers, attempt, self.pipe.config.cpu_offload)
        for result in results:
            self.record(shots[result.position], result, retried)

    def record(self, shot: Shot, result: ShotResult, retried: bool) -> None:
        """`storyboard/shot_NN_initial.png`, `_hole.png`, `_removed.png`, `shot_NN.png` (the redrawn
        picture) and `shot_NN_mask.png` written; the initial, removed and storyboard frames recorded."""
        ws, h, name = self.run.ws, self.frame_hash(shot), shot_key(STORYBOARD_DIR, shot.index)
        initial, found = f"{name}_initial.png", result.found
        reason = f"shot {shot.index}: {result.reason}" if result.reason else ""
        write_png(ws.path(initial), result.initial)
        if result.removal is None:
            ws.record(f"{name}_initial", StoryboardFrame(path=initial, input_hash=h, shot=shot.index,
                                                         meta={"found": False, "reason": reason}))
        else:
            hole, removed = f"{name}_hole.png", f"{name}_removed.png"
            write_png(ws.path(hole), result.removal.mask.astype(np.uint8) * 255)
            write_png(ws.path(removed), result.removal.image)
            ws.record(f"{name}_initial", StoryboardFrame(
                path=initial, mask_path=hole, input_hash=h, shot=shot.index,
                meta={"found": True, "box": list(found.box), "score": found.score, "prompt": result.prompt}))
            ws.record(f"{name}_removed", StoryboardFrame(
                path=removed, mask_path=hole, input_hash=h, shot=shot.index,
                meta={"method": result.removal.method, "subject_box": list(result.removal.box)}))
        final = f"{name}.png" if result.final is not None else None
        if final is not None:
            write_png(ws.path(final), result.final)
        mask = f"{name}_mask.png"
        write_png(ws.path(mask), result.mask.astype(np.uint8) * 255)
        meta = {"found": found.found, "reason": reason, "prompt": result.prompt, "seed": result.seed}
        if retried:
            meta["out_of_memory_retry"] = "ran out of GPU memory; drawn again with --low-vram settings"
        if final is not None:
            meta["redraw"] = True
        if result.paste is not None:
            # Which picture the redraw reached the storyboard through (models/storyboard: PASTE_MASK, PASTE_BLEND).
            meta["paste"] = {"method": result.paste, "box": list(result.paste_box) if result.paste_box else None}
        if self.characters is not None:
            meta |= self.record_characters(shot, result)
        ws.record(name, StoryboardFrame(path=final or initial, mask_path=mask, input_hash=h, shot=shot.index,
                                        meta=meta))

    def record_characters(self, shot: Shot, result: ShotResult) -> dict[str, object]:
        """A cast's shot: `storyboard/shot_NN_mask_<name>.png` for every character found (where it shows in
        the picture), and the frame's meta naming them (`character_masks`) and what was found of each."""
        cast, name = self.run.config.cast, shot_key(STORYBOARD_DIR, shot.index)
        masks, found = {}, {}
        for c in result.characters:
            who = cast[c.character].name
            found[who] = {"found": c.found.found, "box": list(c.found.box) if c.found.box else None,
                          "score": c.found.score, "reason": c.found.reason or c.reason}
            if c.paste is not None:
                found[who]["paste"] = {"method": c.paste, "box": list(c.paste_box) if c.paste_box else None}
            if c.mask is not None:
                masks[who] = f"{name}_mask_{slugify(who, 30)}.png"
                write_png(self.run.ws.path(masks[who]), c.mask.astype(np.uint8) * 255)
        for member in cast:  # an earlier take's mask of a character this picture does not show
            if member.name not in masks:
                self.run.ws.path(f"{name}_mask_{slugify(member.name, 30)}.png").unlink(missing_ok=True)
        return {"character_masks": masks, "characters": found}


class DiffusionBackend(Backend):
    """The subject's fine-tunes; StoryDiffusion + LangSAM + StoryAnyDoor storyboard; DynamiCrafter
    (+ LoRA-BE) clips.

    Every model waits on the CPU and visits the GPU only while it works (`placement.on_device`),
    so no two of them share the GPU; the storyboard pipeline is loaded on the first storyboard and
    kept for the run's redraws, DynamiCrafter on the first clip of a stage; `release()` (at the end
    of the video stage) drops both. `--low-vram` offloads each model's idle parts and decodes
    the VAE a frame at a time; a shot that runs out of GPU memory is tried once more that way.
    """

    name = "diffusion"
    weights = ("sdxl-base", "grounding-dino-base", "sam-vit-h", "anydoor", "dynamicrafter-512")
    resources = {"num_cpus": 1, "num_gpus": 1}
    subject_work = True

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self._pipe = None
        self._storyboard: StoryboardPipeline | None = None
        self.token: str | None = None
        """The adapter's subject token, once the adapter is loaded."""
        self.characters: tuple[CastToken, ...] = ()
        """The adapter's characters (`lora_be.CastToken`: token, class word, name), once it is loaded."""
        self.finetunes: dict[str, FineTune] = {}
        """The fine-tunes by manifest name: "story_anydoor" and "lora_be" for one character; for a cast
        "story_anydoor/<name>" per character and the cast's "lora_be"."""

    @property
    def video_weights(self) -> tuple[str, ...]:
        """Everything this run loads: the storyboard's models, then the video model of `--video-model`."""
        return (*(w for w in self.weights if w != "dynamicrafter-512"), self.cfg.video_model)

    def check(self) -> None:
        """Fail before any work when a weight this run loads is missing here (the video model is a setting:
        Wan's weights are needed instead of DynamiCrafter's, not as well)."""
        from storyagent.errors import WeightsNotFoundError
        from storyagent.weights import weights_available

        missing = [name for name in self.video_weights if not weights_available(name)]
        if missing:
            raise WeightsNotFoundError(
                f"--backend {self.name} needs weights that are not on this machine ({', '.join(missing)}); "
                f"run `storyagent weights fetch {' '.join(missing)}` or leave out --backend for the offline animatic."
            )

    def reference_masks(self, character: CastMember) -> LangSAMMasks:
        return LangSAMMasks(character.class_word)

    def prepare_subject(self, run: Run) -> None:
        """When the run opens: nothing trains yet (that waits for the approved story, `train_subject`); what will
        train at the storyboard stage, and about how long it takes, is printed now (`finetunes.estimate`)."""
        if self.cfg.finetune == "off":
            return
        from storyagent.progress import console
        from storyagent.tools.backends.finetunes import estimate

        line = estimate(self._tunes(run).plans(self._wanted()))
        if line:
            console.print(line, highlight=False, soft_wrap=True)

    def train_subject(self, run: Run) -> None:
        """The subject's StoryAnyDoor and LoRA-BE fine-tunes (paper, Fig. 3), from the cache or trained now: at the
        storyboard stage, after the story is written and approved (`Run.train`)."""
        cfg = self.cfg
        if cfg.finetune == "off":
            self.finetunes = {}
            run.manifest.set_finetunes({"off": "the stock AnyDoor and DynamiCrafter (--finetune off)"})
        else:
            self.finetunes = self._tunes(run)(run.ws, self._wanted())

    def attach_subject(self, run: Run) -> None:
        """A worker's view of the run (a batch on Ray): the fine-tunes from the cache, trained there first
        by the batch's one task for this subject; nothing recorded."""
        if self.cfg.finetune == "off":
            self.finetunes = {}
        elif len(self.cfg.cast) > 1:
            self.finetunes = self._tunes(run).ensure(self._wanted())
        else:
            tunes = self._tunes(run)
            self.finetunes = {m: tunes.ensure(m) for m in self._wanted()}

    def _wanted(self) -> tuple[str, ...]:
        # A LoRA-BE adapter the user gave is used as it is; StoryAnyDoor is still the subject's own.
        return ("story_anydoor",) if self.cfg.video_adapter else ("story_anydoor", "lora_be")

    def _tunes(self, run: Run) -> SubjectFineTunes | CastFineTunes:
        """One character's fine-tunes, or a cast's (each character's StoryAnyDoor, the cast's one LoRA-BE)."""
        if len(self.cfg.cast) > 1:
            return CastFineTunes(self.cfg, run.cast, self.reference_masks, run.show_progress)
        return SubjectFineTunes(self.cfg, run.subject, self.reference_masks(self.cfg.cast[0]), run.show_progress)

    # ---- storyboard -----------------------------------------------------------------------

    def storyboard_settings(self) -> StoryboardConfig:
        from storyagent.models.storyboard import StoryboardConfig

        cfg = self.cfg
        width, height = storyboard_size(cfg)
        return StoryboardConfig(seed=cfg.seed, width=width, height=height, steps=cfg.steps or None,
                                cpu_offload=cfg.low_vram)

    @property
    def storyboard_pipe(self) -> StoryboardPipeline:
        """The storyboard pipeline, its models loaded on first use and kept for the run (`release` drops them)."""
        if self._storyboard is None:
            from storyagent.models.storyboard import StoryboardPipeline

            # A cast's AnyDoor is loaded as it is; each character's fine-tune goes on for its own redraws.
            tune = self.finetunes.get("story_anydoor") if len(self.cfg.cast) == 1 else None
            self._storyboard = StoryboardPipeline.from_pretrained(self.storyboard_settings(),
                                                                  anydoor_finetune=tune.path if tune else None)
        return self._storyboard

    def storyboard(self, run: Run, script: StoryScript) -> list[StoryboardFrame]:
        """Draw the shots whose picture is missing or stale, and only those.

        Every picture shares one identity shots' pass (StoryDiffusion's "bank"), stored in the
        manifest with the first drawing. While any picture made with it is still fresh, it is kept
        and run again to redraw the stale shots alone (a redo of shot 2 leaves the others as they
        are); when none is, the first shots as they are now make a new one.
        """
        from storyagent.models.storydiffusion import IdentityPass

        ws, subject, cast = run.ws, run.subject, self.cfg.cast
        settings = self.storyboard_settings()
        inputs = {"settings": settings.to_dict() | {"cpu_offload": None}, "subject": subject.input_hash,
                  "story_anydoor": self.finetune_key("story_anydoor"), "backend": self.name}
        if len(cast) > 1:  # every character's media and StoryAnyDoor (a film of one: the hash it had)
            inputs["cast"] = [{"name": m.name, "class_word": m.class_word, "subject": p.input_hash,
                               "story_anydoor": self.finetune_key(anydoor_entry(m.name, len(cast)))}
                              for m, p in zip(cast, run.cast)]
        shared = hash_json(inputs)
        seeds = {s.index: run.seed("storyboard", s.index) for s in script.shots}
        notes = {s.index: shot_feedback(run.manifest, "storyboard", s.index) for s in script.shots}
        texts = {s.index: shot_text(s, notes) if len(cast) == 1 else cast_shot_text(s, cast, notes)
                 for s in script.shots}

        def frame_hash(shot: Shot, identity: IdentityPass) -> str:
            frame = {"shared": shared, "identity": asdict(identity), "text": texts[shot.index], "seed": seeds[shot.index]}
            if len(cast) > 1:  # where each character stands decides which box is whose
                frame["placements"] = [asdict(p) for p in placements(shot, cast)]
            return hash_json(frame)

        keys = {s.index: shot_key(STORYBOARD_DIR, s.index) for s in script.shots}
        stored = run.manifest.storyboard_identity
        identity = IdentityPass(**stored["pass"]) if stored.get("shared") == shared else None
        stale = [s.index for s in script.shots if identity is None or not ws.fresh(keys[s.index], frame_hash(s, identity))]
        if identity is None or len(stale) == len(script.shots):
            first = script.shots[:settings.story_config().num_identity]
            identity = IdentityPass(prompts=[texts[s.index] for s in first], seeds=[seeds[s.index] for s in first])
        if stale:
            try:
                draw = StoryboardDraw(self.storyboard_pipe, run, script, seeds, texts, identity,
                                      lambda shot: frame_hash(shot, identity), self.storyboard_characters(run))
                draw(stale)
            finally:
                # Kept even when a shot failed: the shots drawn with this pass stay fresh on --resume.
                run.manifest.set_storyboard_identity({"shared": shared, "pass": asdict(identity)})
        return [StoryboardFrame.model_validate(run.manifest.artifact(keys[s.index])) for s in script.shots]

    def storyboard_characters(self, run: Run) -> list[StoryboardSubject] | None:
        """A cast's characters for the storyboard, in cast order: each described "Name, a class_word", with the
        reference frame AnyDoor copies it from and its own StoryAnyDoor; None for a film of one character."""
        from storyagent.models.storyboard import StoryboardSubject

        cast = self.cfg.cast
        if len(cast) == 1:
            return None
        out = []
        for member, prepared in zip(cast, run.cast):
            tune = self.finetunes.get(anydoor_entry(member.name, len(cast)))
            out.append(StoryboardSubject(f"{member.name}, a {member.class_word}", member.class_word,
                                         *reference_for_redraw(prepared.subject), finetune=tune.path if tune else None,
                                         name=member.name))
        return out

    def finetune_key(self, model: str) -> str | None:
        found = self.finetunes.get(model)
        return found.key if found else None

    # ---- video ----------------------------------------------------------------------------

    @property
    def adapter(self) -> Path | None:
        """The LoRA-BE adapter the clips are made with: the one given, else the subject's fine-tune."""
        given = self.cfg.adapter_path()
        if given is not None:
            return given
        return Path(self.finetunes["lora_be"].path) if "lora_be" in self.finetunes else None

    def clip_inputs(self) -> dict[str, object]:
        # The video model of --video-model; a DynamiCrafter clip keeps the hash it had before Wan.
        wan = {} if self.cfg.video_model == DYNAMICRAFTER else {"video_model": self.cfg.video_model}
        given = self.cfg.adapter_path()
        inputs = {"backend": self.name, "adapter": hash_file(given) if given else self.finetune_key("lora_be")} | wan
        if (fs := self.adapter_fs) is not None:
            # Clips are sampled at the fs the adapter pins (issue 26); an adapter from before pins none
            # and its clips keep the key they had.
            inputs["fs"] = fs
        return inputs

    @property
    def adapter_fs(self) -> int | None:
        """The fs the LoRA-BE adapter was trained at, from its file's metadata (None: no adapter, or one
        from before the fs was pinned; the clips then use DynamiCrafter's own, 24)."""
        if self.adapter is None:
            return None
        from storyagent.models.lora_be import adapter_fs

        return adapter_fs(self.adapter)

    @property
    def pipe(self):
        """The video model (DynamiCrafter, or the Wan model of `--video-model`: `models/wan`), loaded on first
        use, with the subject's adapter when there is one."""
        if self._pipe is None and is_wan(self.cfg.video_model):
            from storyagent.models.wan import load_wan

            # On the CPU until a clip is made (`_wan_frames`); bf16 where the GPU is.
            self._pipe = load_wan(self.cfg.video_model)
            if self.adapter is not None:  # LoRA-BE on Wan: every block with its own subject embedding
                config = self._pipe.load_adapter(self.adapter)
                self.token, self.characters = config.token, tuple(config.characters)
        if self._pipe is None:
            import torch

            from storyagent.models.dynamicrafter import DynamiCrafterPipeline

            # On the CPU until a clip is made (`_frames`); the GPU's dtype chosen now.
            dtype = torch.bfloat16 if placement.compute_device() == "cuda" else torch.float32
            self._pipe = DynamiCrafterPipeline.from_pretrained(torch_dtype=dtype, device="cpu")
            if self.adapter is not None:
                # LoRA-BE (paper, Sec. 3.3): the subject's own token keeps it the same inside every shot.
                from storyagent.models.lora_be import load_adapter

                config = load_adapter(self._pipe, self.adapter)
                self.token, self.characters = config.token, tuple(config.characters)
        return self._pipe

    def prompt(self, shot: Shot, feedback: str = "") -> str:
        """The shot's video prompt: the reviewer's words for this clip first, the subject as its token.

        A cast's shot says what each of its characters does, and every character's name is its token
        (`lora_be.name_tokens`); a character the words never name leads the prompt with its token."""
        cast = self.cfg.cast
        if len(cast) == 1:
            text = f"{shot.description}, {shot.subject_action}, camera {shot.camera_motion.value}"
        else:
            acts = ", ".join(c.action if c.name.casefold() in c.action.casefold() else f"{c.name} {c.action}"
                             for c in shot.cast(cast[0].name))
            text = f"{shot.description}, {acts}, camera {shot.camera_motion.value}"
        text = f"{feedback}, {text}" if feedback else text
        if self.token is None:
            return text
        named = [c for c in self.characters if c.name]
        if len(cast) == 1 or not named:  # one subject, or an adapter that knows no names: the lead's token
            name = self.cfg.name
            return text.replace(name, self.token) if name in text else f"{self.token}, {text}"
        from storyagent.models.lora_be import name_tokens

        tokens = {c.name.casefold(): c.token for c in named}
        text = name_tokens(text, named)
        missing = [tokens[c.name.casefold()] for c in shot.cast(cast[0].name)
                   if c.name.casefold() in tokens and tokens[c.name.casefold()] not in text]
        return ", ".join([*missing, text])

    def animate(self, run: Run, shot: Shot, board: StoryboardFrame, input_hash: str) -> ShotClip:
        ws, seed = run.ws, run.seed("video", shot.index)
        image = np.asarray(Image.open(ws.path(board.path)).convert("RGB"))
        self.pipe  # noqa: B018 -- loads the adapter first, which decides the prompt's wording
        prompt = self.prompt(shot, shot_feedback(run.manifest, "video", shot.index))
        # The story's duration at the film's fps; a shot longer than one window is continued from its
        # last frame (`models/continuation`).
        total = shot_frames(shot.duration, self.cfg.fps)
        # Out of GPU memory: the memory is freed and the shot made once more in low-VRAM mode; a
        # second failure skips this shot only (the others are made, `--resume` redoes it).
        made, retried = with_memory_retry([shot.index],
                                          lambda low_vram: self._frames(image, prompt, seed, low_vram, total),
                                          self.cfg.low_vram)
        frames = list(made.frames)
        rel = clip_path(shot.index)
        write_video(ws.path(rel), frames, self.cfg.fps)
        adapter = self.adapter
        meta = {"prompt": prompt, "seed": seed, "adapter": str(adapter) if adapter else None,
                "sampler": self.sampler_settings()}
        if len(made.seeds) > 1:
            meta["windows"] = {"frames": list(made.plan.lengths), "seeds": made.seeds, "seams": made.seams,
                               "fades": made.fades}
        if retried:
            meta["out_of_memory_retry"] = "ran out of GPU memory; made again with --low-vram settings"
        return ShotClip(path=rel, input_hash=input_hash, shot=shot.index, num_frames=len(frames), fps=self.cfg.fps,
                        meta=meta)

    def sampler_settings(self) -> dict[str, float | int]:
        """DynamiCrafter's sampling settings for a clip: the variant's own (upstream's scripts/run.sh: 50
        DDIM steps, guidance 7.5, eta 1.0; `--steps` overrides the steps) at the fs the adapter was
        trained at (`pipe.default_fs`: the adapter's pinned fs, else the variant's 24). Wan: its model card's
        steps and guidance (it has no frame-rate input)."""
        if is_wan(self.cfg.video_model):
            wan = wan_config(self.cfg.video_model)
            return {"steps": self.cfg.steps or wan.num_inference_steps, "guidance_scale": wan.guidance_scale}
        pipe = self.pipe
        s = pipe.config.sampling
        return {"steps": self.cfg.steps or s.ddim_steps, "guidance_scale": s.cfg_scale, "eta": s.eta,
                "fs": pipe.default_fs}

    @property
    def window_rule(self) -> WindowRule:
        """One window of the video model: DynamiCrafter's own clip length (16 frames for the 512 model); Wan's
        4k+1 frames at its own rate, up to its longest (81 or 121), all windows of a shot the same length."""
        if is_wan(self.cfg.video_model):
            return WindowRule(max_frames=wan_config(self.cfg.video_model).max_frames, step=4, fixed=False)
        return WindowRule(max_frames=self.pipe.config.sampling.frames)

    def _frames(self, image: np.ndarray, prompt: str, seed: int, low_vram: bool, total: int) -> Continued:
        """One clip's `total` frames (T x H x W x 3 uint8), window by window (`continue_shot`), DynamiCrafter
        on the GPU for this shot only; in low-VRAM mode its models visit the GPU one at a time and the VAE
        decodes frame by frame."""
        import torch

        if is_wan(self.cfg.video_model):
            return self._wan_frames(image, prompt, seed, low_vram, total)
        pipe = self.pipe
        settings = self.sampler_settings()

        def window(start: np.ndarray, num_frames: int, window_seed: int, _: int) -> np.ndarray:
            # Every window its own generator, seeded from the shot's own video seed (`run.seed("video", shot)`).
            generator = torch.Generator(device="cpu").manual_seed(window_seed)
            # The storyboard is letterboxed into the model's frame, not centre-cropped, and the bars are
            # cut off again: the clip keeps the storyboard's aspect and all of its picture.
            out = pipe(image=start, prompt=prompt, num_frames=num_frames, num_inference_steps=settings["steps"],
                       guidance_scale=settings["guidance_scale"], eta=settings["eta"], fs=settings["fs"],
                       generator=generator, output_type="np", show_progress=False, image_fit="pad")
            frames = np.asarray(out.frames[0], dtype=np.uint8)
            top, bottom, left, right = out.content_box or (0, frames.shape[1], 0, frames.shape[2])
            return frames[:, top:bottom, left:right]

        chunk = pipe.vae_chunk
        pipe.vae_chunk = 1 if low_vram else chunk
        try:
            with placement.on_device(pipe, placement.compute_device(), low_vram=low_vram):
                return continue_shot(image, total, self.window_rule, window, seed)
        finally:
            pipe.vae_chunk = chunk

    def _wan_frames(self, image: np.ndarray, prompt: str, seed: int, low_vram: bool, total: int) -> Continued:
        """The clip's `total` frames at the film's fps from Wan: the shot's duration in windows of 4k+1 frames
        at the model's own rate (`continue_shot`), each at the film's aspect and at most the model's area, then
        retimed to the film's fps. Default: bf16 on the GPU; low VRAM: group offload and a tiled VAE."""
        from dataclasses import replace

        pipe = self.pipe
        width, height = pipe.size_for(self.cfg.width, self.cfg.height)

        def window(start: np.ndarray, num_frames: int, window_seed: int, _: int) -> np.ndarray:
            return pipe(start, prompt, num_frames, window_seed, width=width, height=height,
                        num_inference_steps=self.cfg.steps)

        fps = pipe.config.fps
        with pipe.running(placement.compute_device(), low_vram=low_vram):
            made = continue_shot(image, shot_frames(total / self.cfg.fps, fps), self.window_rule, window, seed)
        frames = retime(made.frames, fps, self.cfg.fps, total)
        return replace(made, frames=frames, seams=sorted({min(total - 1, round(s * self.cfg.fps / fps))
                                                          for s in made.seams}))

    def release(self) -> None:
        self._pipe, self.token, self.characters, self._storyboard = None, None, (), None
        placement.free_memory()
