"""No subject, no film (issue 23, point 4): a reference whose cut-out is empty, the whole frame, a guess
or a flat colour is refused in one sentence that names the file and says what to give instead; a
picture with a subject in it is not."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyagent.errors import InputError
from storyagent.media import load_reference, write_video
from tests.support.media import busy_background, disc_image, figure_frame, fur_image
from tests.support.paths import PIP


def refusal(path: Path, **kw) -> str:
    with pytest.raises(InputError) as info:
        load_reference(path, **kw)
    return str(info.value)


def assert_one_sentence_naming(message: str, name: str, stem: str) -> None:
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".") and len(message) < 300
    assert name in message and f"{stem}_mask.png" in message and "plain background" in message


PICTURES = {
    "grey.png": (lambda: np.full((240, 320, 3), 128, np.uint8), "the picture is a single flat colour"),
    "fur.png": (fur_image, "nothing stands out from the background"),
    "leaves.png": (lambda: busy_background(block=False), "nothing stands out from the background"),
}


@pytest.mark.parametrize("name", list(PICTURES))
def test_a_picture_with_no_subject_is_refused_in_one_sentence(tmp_path, name):
    """A plain grey picture (once a film of "a grey disc"), a photo that is all subject (a close crop of
    fur) and one that is all background (leaves): GrabCut finds nothing in them, and the centred guess
    that stood in is refused."""
    make, problem = PICTURES[name]
    Image.fromarray(make()).save(tmp_path / name)
    message = refusal(tmp_path / name)
    assert_one_sentence_naming(message, name, Path(name).stem)
    assert problem in message


@pytest.mark.parametrize("mask,problem", [(0.0, "the cut-out is empty"), (1.0, "the cut-out is the whole picture")])
def test_a_cut_out_that_is_empty_or_the_whole_picture_is_refused(tmp_path, mask, problem):
    """What a segmenter other than GrabCut may give (GrabCut falls back to its guess instead)."""
    img, _ = disc_image()
    Image.fromarray(img).save(tmp_path / "ball.jpg")
    message = refusal(tmp_path / "ball.jpg", segment=lambda frame: (np.full(frame.shape[:2], bool(mask)), "langsam"))
    assert_one_sentence_naming(message, "ball.jpg", "ball")
    assert problem in message


def test_a_clip_with_no_subject_in_any_frame_is_refused_naming_the_clip(tmp_path):
    write_video(tmp_path / "fog.mp4", [np.full((96, 128, 3), 120 + i, np.uint8) for i in range(6)], 8)
    message = refusal(tmp_path / "fog.mp4")
    assert_one_sentence_naming(message, "fog.mp4", "fog")


def test_pictures_with_a_subject_are_not_refused(tmp_path):
    Image.fromarray(disc_image()[0]).save(tmp_path / "ball.png")
    Image.fromarray(figure_frame(0)[0]).save(tmp_path / "figure.png")
    # A disc filling most of the frame (touching every edge) is still a subject, not "all subject".
    Image.fromarray(disc_image(h=200, w=200, center=(100, 115), radius=100)[0]).save(tmp_path / "close.png")
    for name in ("ball.png", "figure.png", "close.png"):
        assert load_reference(tmp_path / name).masks[0].any()
    assert load_reference(PIP).masks[0].any()


def test_real_photos_with_a_subject_are_not_refused_and_real_textures_are():
    skimage_data = pytest.importorskip("skimage.data")
    from storyagent.media.segmentation import cutout_problem, segment_subject

    for photo in ("astronaut", "chelsea", "coffee", "rocket"):
        frame = getattr(skimage_data, photo)()
        assert cutout_problem(frame, *segment_subject(frame)) is None, photo
    for texture in ("grass", "gravel"):
        frame = np.repeat(getattr(skimage_data, texture)()[..., None], 3, axis=2)
        assert cutout_problem(frame, *segment_subject(frame)) == "nothing stands out from the background", texture
