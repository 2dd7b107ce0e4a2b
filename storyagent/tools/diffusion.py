"""The `diffusion` backend (the paper's pipeline, GPU and weights).

Storyboard: StoryDiffusion draws every shot with one consistent subject, LangSAM finds it, it is
removed, and AnyDoor redraws the user's own subject there (`diffusion_storyboard.py`). Video:
DynamiCrafter animates each storyboard picture with the shot's description as its prompt, with
the subject's LoRA-BE adapter when there is one. Weights come from `storyagent.weights` (a
`STORYAGENT_WEIGHTS_*` path or the Hugging Face cache).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from storyagent.config import RunConfig
from storyagent.media import write_video
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.backend import Backend
from storyagent.tools.per_shot import STORYBOARD_DIR, clip_path, shot_key
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace, hash_file, hash_json


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def storyboard_size(cfg: RunConfig) -> tuple[int, int]:
    """(width, height) of the storyboard pictures: the film's aspect ratio, multiples of 32.

    SDXL draws best near a megapixel (`storyboard_side` 1024); DynamiCrafter resizes the picture.
    """
    scale = cfg.storyboard_side / max(cfg.width, cfg.height)
    return (max(32, round(cfg.width * scale / 32) * 32), max(32, round(cfg.height * scale / 32) * 32))


class DiffusionBackend(Backend):
    """StoryDiffusion + LangSAM + AnyDoor storyboard; DynamiCrafter (+ LoRA-BE) clips.

    The video models are loaded on the first clip of a stage and dropped by `release()` at its end,
    so the storyboard's models and DynamiCrafter never share the GPU.
    """

    name = "diffusion"
    weights = ("sdxl-base", "grounding-dino-base", "sam-vit-h", "anydoor", "dynamicrafter-512")

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self._pipe = None
        self._adapter: tuple[Path | None, str | None] | None = None
        self.token: str | None = None
        """The adapter's subject token, once the adapter is loaded."""

    def prepare_subject(self, subject: PreparedSubject) -> None:
        """Nothing to build ahead: the storyboard reads the subject's frames and masks from the run
        folder, and the LoRA-BE adapter is looked up with the first clip (a storyboard needs none)."""

    # ---- storyboard -----------------------------------------------------------------------

    def storyboard_hash(self, script: StoryScript, subject: PreparedSubject, takes: dict) -> str:
        cfg = self.cfg
        return hash_json({"shots": [s.model_dump(mode="json") for s in script.shots], "subject": subject.input_hash,
                          "seed": cfg.seed, "takes": takes, "size": storyboard_size(cfg), "backend": self.name})

    def storyboard(self, ws: Workspace, script: StoryScript, subject: PreparedSubject,
                   show_progress: bool) -> list[StoryboardFrame]:
        """StoryDiffusion renders all shots together, so they are redone together."""
        h = self.storyboard_hash(script, subject, ws.manifest.get("takes", {}).get("storyboard", {}))
        keys = [shot_key(STORYBOARD_DIR, s.index) for s in script.shots]
        if not all(ws.fresh(k, h) for k in keys):
            self._draw_storyboard(ws, script, subject, h, show_progress)
        return [StoryboardFrame.model_validate(ws.artifact(k)) for k in keys]

    def _draw_storyboard(self, ws: Workspace, script: StoryScript, subject: PreparedSubject, stage_hash: str,
                         show_progress: bool) -> None:
        from storyagent.models.anydoor import AnyDoorPipeline
        from storyagent.tools.diffusion_storyboard import DiffusionStoryboardConfig, generate_storyboard_diffusion

        cfg = self.cfg
        width, height = storyboard_size(cfg)
        anydoor = AnyDoorPipeline.from_pretrained(device=_device())

        def redraw(*args, seed: int | None = 0):
            return anydoor.redraw(*args, seed=seed, num_inference_steps=cfg.steps, show_progress=False)

        settings = DiffusionStoryboardConfig(seed=cfg.seed, width=width, height=height,
                                             **({"steps": cfg.steps} if cfg.steps else {}))
        # Records every shot's frame (the initial picture where the subject was not found) under
        # its `shot_key`, with this stage's hash, once.
        generate_storyboard_diffusion(script, subject.subject, ws.root, settings, redraw=redraw, workspace=ws,
                                      input_hash=stage_hash, show_progress=show_progress)

    # ---- video ----------------------------------------------------------------------------

    def _adapter_and_hash(self) -> tuple[Path | None, str | None]:
        """The subject's LoRA-BE adapter (given, or found beside the subject media) and its content
        hash, looked up once a stage."""
        if self._adapter is None:
            path = self.cfg.adapter_path()
            self._adapter = (path, hash_file(path) if path else None)
        return self._adapter

    @property
    def adapter(self) -> Path | None:
        return self._adapter_and_hash()[0]

    def clip_inputs(self) -> dict[str, object]:
        return {"backend": self.name, "adapter": self._adapter_and_hash()[1]}

    @property
    def pipe(self):
        """DynamiCrafter, loaded on first use, with the subject's adapter when there is one."""
        if self._pipe is None:
            import torch

            from storyagent.models.dynamicrafter import DynamiCrafterPipeline

            dtype = torch.bfloat16 if _device() == "cuda" else torch.float32
            self._pipe = DynamiCrafterPipeline.from_pretrained(torch_dtype=dtype, device=_device())
            if self.adapter is not None:
                # LoRA-BE (paper, Sec. 3.3): the subject's own token keeps it the same inside every shot.
                from storyagent.models.lora_be import load_adapter

                self.token = load_adapter(self._pipe, self.adapter).token
        return self._pipe

    def prompt(self, shot: Shot) -> str:
        text = f"{shot.description}, {shot.subject_action}, camera {shot.camera_motion.value}"
        if self.token is None:
            return text
        name = self.cfg.name
        return text.replace(name, self.token) if name in text else f"{self.token}, {text}"

    def animate(self, ws: Workspace, shot: Shot, board: StoryboardFrame, input_hash: str, seed: int) -> ShotClip:
        import torch

        image = np.asarray(Image.open(ws.path(board.path)).convert("RGB"))
        generator = torch.Generator(device="cpu").manual_seed(seed)
        pipe = self.pipe  # loads the adapter first, which decides the prompt's wording
        prompt = self.prompt(shot)
        out = pipe(image=image, prompt=prompt, num_inference_steps=self.cfg.steps or 50, generator=generator,
                   output_type="np", show_progress=False)
        frames = list(np.asarray(out.frames[0], dtype=np.uint8))  # (T, H, W, 3)
        rel = clip_path(shot.index)
        write_video(ws.path(rel), frames, self.cfg.fps)
        adapter = self.adapter
        return ShotClip(path=rel, input_hash=input_hash, shot=shot.index, num_frames=len(frames), fps=self.cfg.fps,
                        meta={"prompt": prompt, "adapter": str(adapter) if adapter else None})

    def release(self) -> None:
        self._pipe, self.token, self._adapter = None, None, None
