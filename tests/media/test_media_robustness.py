"""Hostile and heavy media (issue 16, findings 3 and 9): bounded memory for any clip or photo, EXIF
orientation, and one sentence, never a hang or an internal error, for special files, symlink loops
and bad masks."""

import os
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from benchmarks.media_memory import LIMIT_MB, reading_peak_mb, write_clip
from storyagent.cli import app as cli_app
from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.media import (
    load_reference,
    media_files,
    read_image,
    read_mask,
    read_video,
    reading,
    write_video,
)
from tests.support.media import write_disc_png

BITS = 10  # frame indices up to 1023, one 8-pixel stripe per bit


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and len(message) < 300 and message.endswith(".")
    assert not re.search(r"[.?!] [A-Z]", message), f"more than one sentence: {message}"
    return message


def write_indexed_clip(path: Path, n: int) -> None:
    """A clip whose frame i shows i in binary as black and white stripes, which survive H.264."""
    frames = []
    for i in range(n):
        bits = (i >> np.arange(BITS)) & 1
        frames.append(np.repeat(np.repeat(bits * 255, 8)[None, :, None], 32, axis=0).repeat(3, axis=2).astype(np.uint8))
    write_video(path, frames, fps=30)


def frame_index(frame: np.ndarray) -> int:
    bits = frame[:, 4::8].mean(axis=(0, 2)) > 127
    return int((bits * (1 << np.arange(BITS))).sum())


@pytest.fixture
def conversions(monkeypatch):
    """Counts the decoded frames turned into arrays."""
    count = []
    convert = reading._frame_to_rgb
    monkeypatch.setattr(reading, "_frame_to_rgb", lambda frame, side: count.append(1) or convert(frame, side))
    return count


def test_long_clip_converts_only_the_kept_frames(tmp_path, conversions):
    write_indexed_clip(tmp_path / "long.mp4", 300)
    frames, fps = read_video(tmp_path / "long.mp4", max_frames=5)
    assert fps == 30.0 and len(conversions) == 5
    assert [frame_index(f) for f in frames] == [0, 75, 150, 224, 299]  # spread over the whole clip


def test_decode_video_gives_exactly_the_wanted_frames(tmp_path, conversions):
    write_indexed_clip(tmp_path / "c.mp4", 120)
    assert reading.probe_video(tmp_path / "c.mp4") == (120, 30.0)
    got = reading.decode_video(tmp_path / "c.mp4", {3, 40, 41, 500})
    assert sorted(got) == [3, 40, 41] and all(frame_index(got[i]) == i for i in got)
    assert len(conversions) == 3


def test_clips_are_sampled_from_their_first_600_frames_unless_more_are_asked_for(tmp_path, conversions):
    assert reading.MAX_SCANNED_FRAMES == 600
    write_indexed_clip(tmp_path / "c.mp4", 700)
    assert [frame_index(f) for f in read_video(tmp_path / "c.mp4", max_frames=3)[0]] == [0, 300, 599]
    every = read_video(tmp_path / "c.mp4", max_frames=10_000)[0]  # how the film reads its shots back
    assert [frame_index(f) for f in every] == list(range(700))


def test_4k_clip_is_shrunk_as_it_is_read_and_memory_stays_bounded(tmp_path):
    clip = tmp_path / "4k.mp4"
    write_clip(clip, 3840, 2160, frames=30)
    frames, _ = read_video(clip, 4, max_side=reading.WORK_SIDE)
    assert [f.shape for f in frames] == [(288, 512, 3)] * 4
    # Holding the 30 decoded 4K frames, as the reader once did, takes 746 MB.
    assert reading_peak_mb(clip) < LIMIT_MB


def test_reference_video_frames_are_at_the_working_size(tmp_path):
    write_clip(tmp_path / "hd.mp4", 1280, 720, frames=8)
    ref = load_reference(tmp_path / "hd.mp4", max_frames=3)
    # The disc crosses the frame between the three samples, so the flow cannot follow it, and at either
    # end it touches the edge, where no cut-out finds it: those frames are dropped, at the same size.
    frames, masks = ref.frames + [d.frame for d in ref.dropped], ref.masks + [d.mask for d in ref.dropped]
    assert [f.shape for f in frames] == [(288, 512, 3)] * 3 and {m.shape for m in masks} == {(288, 512)}


def test_video_with_frames_over_the_pixel_limit_is_refused(tmp_path, monkeypatch):
    write_clip(tmp_path / "big.mp4", 256, 128, frames=2)
    monkeypatch.setattr(reading, "MAX_PIXELS", 256 * 128 - 1)
    with pytest.raises(InputError) as info:
        read_video(tmp_path / "big.mp4")
    assert "256×128" in one_sentence(info)


def test_photo_over_40_megapixels_is_decoded_at_a_reduced_size(tmp_path):
    big = Image.new("L", (8000, 6000), 30)
    big.paste(220, (0, 0, 800, 600))
    big.save(tmp_path / "big.jpg", quality=50)
    rgb, _ = read_image(tmp_path / "big.jpg")
    assert rgb.shape == (3000, 4000, 3)  # the JPEG decoder's 1/2 scale: the 48 MP picture was never made
    assert rgb[:300, :400].mean() > 200 and rgb[400:].mean() < 60


def test_pixel_limit_applies_to_every_format(tmp_path):
    img = np.zeros((300, 400, 3), np.uint8)
    img[:30, :40] = 255
    Image.fromarray(img).save(tmp_path / "a.jpg")
    Image.fromarray(img).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.jpg", max_pixels=10_000)[0].shape == (75, 100, 3)  # JPEG: 1/4 scale
    png = read_image(tmp_path / "a.png", max_pixels=10_000)[0]
    assert png.shape[0] * png.shape[1] <= 10_000 and abs(png.shape[1] / png.shape[0] - 4 / 3) < 0.03
    assert png[:5, :8].mean() > 200


def test_decompression_bomb_is_refused_in_one_sentence(tmp_path):
    Image.new("L", (1, 1)).save(tmp_path / "bomb.png")
    data = bytearray((tmp_path / "bomb.png").read_bytes())
    start = data.index(b"IHDR")  # claim 20000×20000 pixels in a 70-byte file
    data[start + 4:start + 12] = (20000).to_bytes(4, "big") * 2
    data[start + 17:start + 21] = zlib.crc32(bytes(data[start:start + 17])).to_bytes(4, "big")
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "bomb.png")
    assert "megapixels" in one_sentence(info)


def orientation_6(path: Path, array: np.ndarray) -> None:
    """Save `array` with EXIF orientation 6: shown rotated 90° clockwise, as a phone held upright stores it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(path, exif=exif)


def test_exif_orientation_puts_photo_and_mask_upright(tmp_path):
    stored = np.full((80, 120, 3), (40, 60, 160), np.uint8)  # as the sensor saw it: 120 wide, 80 high
    stored[:30, :40] = (230, 40, 40)  # the subject in the stored top-left corner
    orientation_6(tmp_path / "cat.jpg", stored)
    mask = np.zeros((80, 120), np.uint8)
    mask[:30, :40] = 255
    orientation_6(tmp_path / "cat_mask.png", mask)

    rgb, _ = read_image(tmp_path / "cat.jpg")
    assert rgb.shape == (120, 80, 3)  # upright: taller than wide
    assert rgb[5:35, 55:75].mean(axis=(0, 1)) @ [1, -1, 0] > 150  # the red corner turned to the top right
    assert read_mask(tmp_path / "cat_mask.png", (120, 80))[:40, 50:].all()

    ref = load_reference(tmp_path)  # the mask beside the photo lines up with it
    assert ref.mask_methods == ["user mask"] and ref.frames[0].shape == (120, 80, 3)
    assert ref.masks[0].sum() == 40 * 30 and ref.masks[0][:40, 50:].all()


def test_portrait_phone_video_comes_out_upright(tmp_path):
    import av

    stored = np.zeros((48, 64, 3), np.uint8)  # as the sensor saw it: 64 wide, 48 high
    stored[:10, :16] = 255  # a mark in the stored top-left corner
    with av.open(str(tmp_path / "phone.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(-90)  # shown turned 90° clockwise, as phones record portrait video
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        container.mux(stream.encode())
    frames, _ = read_video(tmp_path / "phone.mp4", 2)
    assert [f.shape for f in frames] == [(64, 48, 3)] * 2
    assert frames[0][:16, -10:].mean() > 200 and frames[0][:16, :10].mean() < 50  # the mark now top right


def test_symlink_loop_and_dangling_link_in_the_subject_folder(tmp_path):
    write_disc_png(tmp_path / "pip.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    with pytest.raises(InputError) as info:
        load_reference(tmp_path)
    assert "loop.png is a symbolic link that loops back on itself" in one_sentence(info)
    (tmp_path / "loop.png").unlink()
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    with pytest.raises(InputError) as info:
        media_files(tmp_path)
    assert "gone.jpg is a symbolic link to a missing file" in one_sentence(info)


@pytest.mark.timeout(20)  # opening a FIFO blocks until a writer comes: fail, do not hang
def test_fifo_named_like_a_photo_is_refused_without_opening_it(tmp_path):
    write_disc_png(tmp_path / "pip.png")
    os.mkfifo(tmp_path / "x.png")
    os.mkfifo(tmp_path / "y.mp4")
    for read in (lambda: load_reference(tmp_path), lambda: load_reference(tmp_path / "x.png"),
                 lambda: read_image(tmp_path / "x.png"), lambda: read_mask(tmp_path / "x.png", (10, 10)),
                 lambda: read_video(tmp_path / "y.mp4")):
        with pytest.raises(InputError) as info:
            read()
        assert "is a named pipe (FIFO), not a regular file" in one_sentence(info)
    (tmp_path / "x.png").unlink()
    os.mkfifo(tmp_path / "pip_mask.png")  # the mask looked for beside a photo
    with pytest.raises(InputError) as info:
        load_reference(tmp_path / "pip.png")
    assert "pip_mask.png is a named pipe (FIFO)" in one_sentence(info)


def test_device_is_refused(tmp_path):
    with pytest.raises(InputError) as info:
        read_image(Path("/dev/zero"))
    assert "is a device" in one_sentence(info)


@pytest.mark.parametrize("mask", ["missing", "folder"])
def test_bad_mask_path_is_refused_by_the_settings_and_the_reader(tmp_path, mask):
    write_disc_png(tmp_path / "pip.png")
    path = tmp_path / "nope.png" if mask == "missing" else tmp_path
    needle = "does not exist" if mask == "missing" else "is a folder"
    with pytest.raises(InputError) as info:
        RunConfig.build(prompt="a day", subject=tmp_path / "pip.png", name="Pip", mask=path)
    assert needle in one_sentence(info) and "--mask" in str(info.value)
    with pytest.raises(InputError) as info:
        load_reference(tmp_path / "pip.png", mask=path)
    assert needle in one_sentence(info)


@pytest.mark.parametrize("case", ["fifo", "symlink_loop", "missing_mask", "folder_mask"])
def test_cli_answers_hostile_media_in_one_sentence(tmp_path, case):
    subject, extra = tmp_path / "media", []
    subject.mkdir()
    write_disc_png(subject / "pip.png")
    if case == "fifo":
        os.mkfifo(subject / "x.png")
    elif case == "symlink_loop":
        (subject / "a.jpg").symlink_to("b.jpg")
        (subject / "b.jpg").symlink_to("a.jpg")
    else:
        extra = ["--mask", str(tmp_path / "nope.png" if case == "missing_mask" else subject)]
    out = tmp_path / "run"
    # In process: the `run` command's own refusal (exit status 2, one line) is what is checked here;
    # an unexpected exception would surface as result.exception with exit status 1.
    res = CliRunner().invoke(cli_app, ["run", "a day", "--subject", str(subject), *extra, "--out", str(out), "-q"])
    text = res.output
    assert res.exit_code == 2, (text, res.exception)
    assert "internal error" not in text and "Traceback" not in text
    assert {"fifo": "named pipe", "symlink_loop": "loops back", "missing_mask": "does not exist",
            "folder_mask": "is a folder"}[case] in " ".join(text.split())
    assert not out.exists(), "refused before the run folder is made"
