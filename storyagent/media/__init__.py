"""Reference media in, video out: reading photos and clips, cutting the subject out, writing mp4.

Frames are H×W×3 uint8 RGB numpy arrays; masks are H×W bool arrays (True = subject); pixel boxes
are `Box` (top, bottom, left, right; ends exclusive).

- `reading`: media files, images, videos (streamed: `probe_video`, `decode_video`), mask images;
  bounded memory, special files refused
- `reference`: the subject's reference media (`load_reference`): frames, a mask per frame, the clip
  frames dropped
- `segmentation`: GrabCut subject masks, mask and cut-out checks, the RGBA cut-out
- `tracking`: a clip's masks held steady (the first frame's carried by optical flow or a propagator)
- `box`: the one `Box` type and the geometry on it
- `writing`: mp4 (encoded, or clips joined without re-encoding; an AAC soundtrack beside) and PNG,
  written atomically
- `audio`: sound as `Audio` (float samples and their rate), any audio file read, WAV written
- `mixing`: loudness (BS.1770, LUFS), true peak, the limiter, ducking and the film's mix (imported
  from `storyagent.media.mixing` where needed: it loads pyloudnorm)
- `layout`: fonts, word wrap, the contact sheet, `letterbox` (a frame fitted into another shape with bars)
"""

from storyagent.media.audio import Audio, read_audio, write_wav
from storyagent.media.box import Box, expand_box, grow_box, mask_box, square_box
from storyagent.media.layout import contact_sheet, letterbox, load_font, wrap_text
from storyagent.media.reading import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    MIN_SIDE,
    VIDEO_SUFFIXES,
    decode_video,
    media_files,
    probe_video,
    read_frames,
    read_image,
    read_mask,
    read_video,
)
from storyagent.media.reference import DroppedFrame, ReferenceMedia, load_reference
from storyagent.media.segmentation import check_cutout, check_mask, segment_subject, subject_cutout
from storyagent.media.tracking import MaskPropagator, TrackedMasks, track_subject
from storyagent.media.writing import CannotJoin, join_videos, write_png, write_video

__all__ = [
    "IMAGE_SUFFIXES", "MAX_PIXELS", "MIN_SIDE", "VIDEO_SUFFIXES", "Audio", "Box", "CannotJoin", "DroppedFrame", "MaskPropagator",
    "ReferenceMedia", "TrackedMasks", "check_cutout", "check_mask", "contact_sheet", "decode_video", "expand_box",
    "grow_box", "join_videos", "letterbox", "load_font", "load_reference", "mask_box", "media_files", "probe_video", "read_frames",
    "read_audio", "read_image", "read_mask", "read_video", "segment_subject", "square_box", "subject_cutout", "track_subject",
    "wrap_text", "write_png", "write_video", "write_wav",
]
