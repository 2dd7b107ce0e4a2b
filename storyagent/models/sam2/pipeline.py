"""A subject's mask through a clip: SAM 2's video predictor, prompted with the first frame's mask.

Ravi et al., "SAM 2: Segment Anything in Images and Videos" (arXiv 2408.00714). The video model
keeps a memory bank of the frames it has segmented (their features and masks) and attends to it
on every new frame, so the subject keeps one outline over time where per-frame segmentation
flickers. The model, its processor and the tracking loop are transformers' own
(`Sam2VideoModel`, `Sam2VideoProcessor`, `propagate_in_video_iterator`); this module only feeds
them a clip and a mask and reads the masks back.

torch and transformers are imported when a model is loaded, never when this module is, so
`sam2_available()` costs the animatic path no torch import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.models.sam2.config import Sam2VideoMasksConfig
from storyagent.weights import WEIGHTS, fetch_hint, resolve_weights, weights_available

SAM2_WEIGHTS = "sam2.1-hiera-tiny"
"""The `storyagent weights` name of the default SAM 2 checkpoint."""
SAM2_REPO_ID = WEIGHTS[SAM2_WEIGHTS].repo_id
"""Its Hugging Face repository (transformers layout)."""
OBJECT_ID = 1
"""The one object a reference clip tracks: its subject."""


def holds_sam2_model(folder: Path) -> bool:
    """Whether `folder` has what `Sam2VideoModel.from_pretrained` reads (a partial download has not)."""
    return folder.is_dir() and (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def sam2_available() -> bool:
    """Whether the default SAM 2 weights are on this machine (a local path or the Hugging Face cache);
    never downloads and never imports torch."""
    if not weights_available(SAM2_WEIGHTS):
        return False
    return holds_sam2_model(resolve_weights(SAM2_WEIGHTS))


def resolve_sam2(model_id: str | os.PathLike[str]) -> Path:
    """The local folder of `model_id`: a folder as it is; the registered name or repository through
    `resolve_weights` (its environment variable, then the Hugging Face cache); any other repository
    from the Hugging Face cache only. Never the network."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        folder = path
    elif str(model_id) in (SAM2_WEIGHTS, SAM2_REPO_ID):
        folder = resolve_weights(SAM2_WEIGHTS)
    else:
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(str(model_id), local_files_only=True))
        except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a repository id at all
            raise WeightsNotFoundError(
                f"SAM 2 weights {str(model_id)!r} are neither a local folder nor in the Hugging Face cache; "
                f"{fetch_hint(SAM2_WEIGHTS)}, or pass the folder of a saved Sam2VideoModel.") from None
    if not holds_sam2_model(folder):
        raise WeightsNotFoundError(
            f"{folder} holds no SAM 2 video model (config.json and model.safetensors); {fetch_hint(SAM2_WEIGHTS)}.")
    return folder


def check_inputs(frames: list[np.ndarray], first_mask: np.ndarray) -> tuple[int, int]:
    """The clip's (height, width), or an `InputError` saying what is wrong with the frames or the mask."""
    if len(frames) == 0:
        raise InputError("SAM 2 got no frames; give the clip's frames as HxWx3 uint8 arrays.")
    size = frames[0].shape[:2]
    for i, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputError(f"Frame {i} is {frame.dtype} {frame.shape}; SAM 2 needs HxWx3 uint8 RGB frames.")
        if frame.shape[:2] != size:
            raise InputError(f"Frame {i} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {size[1]}x{size[0]}; "
                             "a clip's frames must share one size.")
    if first_mask.shape != size:
        raise InputError(f"The first frame's mask is {first_mask.shape} but the frames are {size}; "
                         "give one HxW mask at the frames' size.")
    if not first_mask.astype(bool).any():
        raise InputError("The first frame's mask is empty, so SAM 2 has no subject to follow; mask the subject "
                         "in frame 0 first.")
    return size


class Sam2VideoMasks:
    """`Sam2VideoMasks()(frames, first_mask) -> masks`: one (H, W) bool mask per frame, frame 0's being
    the prompt's object. The model is loaded on the first call and kept until `release()`.

    `model_id` is a folder written by `save_pretrained`, the weights name `sam2.1-hiera-tiny`, or a
    Hugging Face repository already in the local cache; nothing is downloaded.
    """

    name = "sam2 video"
    """How the manifest names the masks it makes."""

    def __init__(self, device: str | None = None, model_id: str | os.PathLike[str] = SAM2_REPO_ID,
                 config: Sam2VideoMasksConfig | None = None) -> None:
        if device is None:
            from storyagent.models.device import default_device

            device = default_device()
        self.device = device
        self.model_id = model_id
        self.config = config or Sam2VideoMasksConfig()
        self.model: Any = None
        """The `Sam2VideoModel`, once loaded."""
        self.processor: Any = None
        """Its `Sam2VideoProcessor` (frame resizing and normalisation, mask prompts, mask upsampling)."""

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike[str] = SAM2_REPO_ID, device: str | None = None,
                        config: Sam2VideoMasksConfig | None = None) -> Sam2VideoMasks:
        """Load now rather than on the first call (a local folder, the weights name or a cached repository)."""
        masks = cls(device=device, model_id=path_or_id, config=config)
        masks.load()
        return masks

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """The model and its processor in transformers' layout, which `from_pretrained` reads back."""
        self.load()
        folder = Path(path)
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        return folder

    def load(self) -> None:
        """Read the model and its processor from the local folder of `model_id`, once."""
        if self.model is not None:
            return
        import torch
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        folder = str(resolve_sam2(self.model_id))
        dtype = getattr(torch, self.config.dtype)
        model = Sam2VideoModel.from_pretrained(folder, local_files_only=True, dtype=dtype)
        self.processor = Sam2VideoProcessor.from_pretrained(folder, local_files_only=True)
        self.model = model.to(self.device).eval()

    def release(self) -> None:
        """Drop the model, so the next one has the memory; the next call loads it again."""
        on_gpu = self.model is not None and str(self.device).startswith("cuda")
        self.model = self.processor = None
        if on_gpu:
            import torch

            torch.cuda.empty_cache()

    def __call__(self, frames: list[np.ndarray], first_mask: np.ndarray) -> list[np.ndarray]:
        import torch

        # 1. Refuse what SAM 2 cannot follow before any weights are read.
        height, width = check_inputs(frames, first_mask)
        self.load()
        dtype = getattr(torch, self.config.dtype)
        with torch.inference_mode():
            # 2. A fresh session per clip: the frames resized to the model's square input and normalised,
            #    and an empty memory bank, so one clip's tracking never leaks into the next.
            session = self.processor.init_video_session(
                video=list(frames), inference_device=self.device, dtype=dtype,
                video_storage_device="cpu" if self.config.offload_video_to_cpu else self.device)
            # 3. The first frame's mask is the prompt; it is resized to the model's input side here.
            self.processor.add_inputs_to_inference_session(
                inference_session=session, frame_idx=0, obj_ids=OBJECT_ID, input_masks=first_mask.astype(bool))
            # 4. Forward through the clip: each frame attends to the memory of the prompt and of the
            #    frames before it, then is written into that memory.
            masks: list[np.ndarray | None] = [None] * len(frames)
            for output in self.model.propagate_in_video_iterator(session, start_frame_idx=0):
                # pred_masks: (objects=1, 1, h, w) low-resolution logits -> (1, 1, H, W) bool at the frame's size.
                full = self.processor.post_process_masks(
                    [output.pred_masks.float()], [[height, width]], mask_threshold=self.config.mask_threshold,
                    binarize=True)[0]
                masks[output.frame_idx] = full[0, 0].cpu().numpy().astype(bool)
        missing = [i for i, m in enumerate(masks) if m is None]
        if missing:
            raise RuntimeError(f"SAM 2 propagation returned no mask for frames {missing}")
        return masks  # type: ignore[return-value]
