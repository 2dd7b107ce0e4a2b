"""The `diffusion` backend behind the storyboard and video tools (the paper's pipeline).

Storyboard: StoryDiffusion draws every shot with one consistent subject, LangSAM finds it, it is
removed, and AnyDoor redraws the user's own subject there (`diffusion_storyboard.py`). Video:
DynamiCrafter animates each storyboard picture with the shot's description as its prompt.
Weights come from `storyagent.weights` (a `STORYAGENT_WEIGHTS_*` path or the Hugging Face cache).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from storyagent.config import RunConfig
from storyagent.media import write_video
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace, hash_json

def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def storyboard_size(cfg: RunConfig) -> tuple[int, int]:
    """(width, height) of the storyboard pictures: the film's aspect ratio, multiples of 32.

    SDXL draws best near a megapixel (`storyboard_side` 1024); DynamiCrafter resizes the picture.
    """
    scale = cfg.storyboard_side / max(cfg.width, cfg.height)
    return (max(32, round(cfg.width * scale / 32) * 32), max(32, round(cfg.height * scale / 32) * 32))


def diffusion_storyboard(ws: Workspace, cfg: RunConfig, script: StoryScript, subject: PreparedSubject,
                         stage_hash: str, show_progress: bool) -> list[StoryboardFrame]:
    """Draw the whole storyboard: StoryDiffusion renders all shots together, so they are redone together."""
    from storyagent.models.anydoor import AnyDoorPipeline
    from storyagent.tools.diffusion_storyboard import DiffusionStoryboardConfig, generate_storyboard_diffusion

    width, height = storyboard_size(cfg)
    anydoor = AnyDoorPipeline.from_pretrained(device=_device())

    def redraw(*args, seed: int | None = 0):
        return anydoor.redraw(*args, seed=seed, num_inference_steps=cfg.steps, show_progress=False)

    settings = DiffusionStoryboardConfig(seed=cfg.seed, width=width, height=height,
                                         **({"steps": cfg.steps} if cfg.steps else {}))
    records = generate_storyboard_diffusion(script, subject.subject, ws.root, settings, redraw=redraw, workspace=ws,
                                            show_progress=show_progress)
    frames = []
    for record in records:
        # A shot whose subject was not found keeps its initial picture; the Observer hears why.
        frame = StoryboardFrame(path=record.final or record.initial, mask_path=record.mask, input_hash=stage_hash,
                                shot=record.shot, meta={"found": record.found, "reason": record.reason})
        frames.append(ws.record(f"storyboard/shot_{record.shot:02d}", frame))
    return frames


class DiffusionAnimator:
    """Makes one shot's clip with DynamiCrafter; the pipeline is loaded once, on first use."""

    def __init__(self, ws: Workspace, cfg: RunConfig, boards: dict[int, StoryboardFrame]) -> None:
        self.ws, self.cfg, self.boards = ws, cfg, boards
        self.adapter = cfg.adapter_path()
        self.token: str | None = None
        self._pipe = None

    @property
    def pipe(self):
        if self._pipe is None:
            import torch

            from storyagent.models.dynamicrafter import DynamiCrafterPipeline

            dtype = torch.bfloat16 if _device() == "cuda" else torch.float32
            self._pipe = DynamiCrafterPipeline.from_pretrained(torch_dtype=dtype).to(_device())
            if self.adapter is not None:
                # LoRA-BE (paper, Sec. 3.3): the subject's own token keeps it the same inside every shot.
                from storyagent.models.lora_be import load_adapter

                self.token = load_adapter(self._pipe, self.adapter).token
        return self._pipe

    def prompt(self, shot: Shot) -> str:
        text = f"{shot.description}, {shot.subject_action}, camera {shot.camera_motion.value}"
        if self.token is None:
            return text
        return text.replace(self.cfg.name, self.token) if self.cfg.name in text else f"{self.token}, {text}"

    def __call__(self, shot: Shot, input_hash: str, seed: int, rel_path: str) -> ShotClip:
        import torch

        image = np.asarray(Image.open(self.ws.path(self.boards[shot.index].path)).convert("RGB"))
        generator = torch.Generator(device="cpu").manual_seed(seed)
        pipe = self.pipe  # loads the adapter first, which decides the prompt's wording
        prompt = self.prompt(shot)
        out = pipe(image=image, prompt=prompt, num_inference_steps=self.cfg.steps or 50, generator=generator,
                   output_type="np", progress=False)
        frames = list(np.asarray(out.frames[0], dtype=np.uint8))  # (T, H, W, 3)
        write_video(self.ws.path(rel_path), frames, self.cfg.fps)
        return ShotClip(path=rel_path, input_hash=input_hash, shot=shot.index, num_frames=len(frames), fps=self.cfg.fps,
                        meta={"prompt": prompt, "adapter": str(self.adapter) if self.adapter else None})


def stage_hash(cfg: RunConfig, script: StoryScript, subject: PreparedSubject, takes: dict) -> str:
    return hash_json({"shots": [s.model_dump(mode="json") for s in script.shots], "subject": subject.input_hash,
                      "seed": cfg.seed, "takes": takes, "size": storyboard_size(cfg), "backend": "diffusion"})
