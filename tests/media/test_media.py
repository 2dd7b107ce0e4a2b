import numpy as np
import pytest
from PIL import Image

from storyagent.errors import InputError
from storyagent.media import (contact_sheet, load_reference, read_frames, read_image, read_video, segment_subject,
                              subject_cutout, write_video)
from tests.support.media import disc_image, write_disc_png, write_disc_video


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_grabcut_finds_the_subject_without_alpha():
    img, truth = disc_image()
    mask, how = segment_subject(img)
    assert how == "grabcut"
    assert iou(mask, truth) > 0.9


def test_alpha_channel_is_the_mask(tmp_path):
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[20:80, 30:90] = (200, 50, 50, 255)
    Image.fromarray(rgba).save(tmp_path / "toy.png")
    ref = load_reference(tmp_path / "toy.png")
    assert ref.mask_methods == ["alpha"]
    assert ref.masks[0][20:80, 30:90].all() and ref.masks[0].sum() == 60 * 60


def test_user_mask_beside_the_photo_wins(tmp_path):
    truth = write_disc_png(tmp_path / "cat.png")
    user = np.zeros_like(truth)
    user[10:50, 10:60] = True
    Image.fromarray((user * 255).astype(np.uint8)).save(tmp_path / "cat_mask.png")
    ref = load_reference(tmp_path)  # the folder: the mask file is not read as a second photo
    assert len(ref.frames) == 1 and ref.mask_methods == ["user mask"]
    assert (ref.masks[0] == user).all()


def test_video_round_trip_and_sampling(tmp_path):
    write_disc_video(tmp_path / "clip.mp4", n=12)
    frames, fps = read_video(tmp_path / "clip.mp4", max_frames=4)
    assert len(frames) == 4 and fps == 8.0 and frames[0].shape == (240, 320, 3)
    # The disc moves right across the clip, so sampled frames come from its whole length.
    assert not np.array_equal(frames[0], frames[-1])
    ref = load_reference(tmp_path / "clip.mp4", max_frames=4)
    truth = disc_image(center=(120, 120))[1]
    assert iou(ref.masks[0], truth) > 0.85


def test_written_mp4_is_h264_and_decodes_to_the_same_pictures(tmp_path):
    import av

    frames = [np.full((64, 96, 3), c, np.uint8) for c in (0, 128, 255)]
    write_video(tmp_path / "v.mp4", frames, fps=8)
    with av.open(str(tmp_path / "v.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    back = read_frames(tmp_path / "v.mp4", 10)
    assert len(back) == 3
    assert all(abs(int(b.mean()) - int(f.mean())) <= 3 for b, f in zip(back, frames))
    assert not list(tmp_path.glob(".*tmp*")), "no temp file left behind"


def test_gif_is_read(tmp_path):
    imgs = [Image.fromarray(disc_image(center=(100 + 10 * i, 120))[0]) for i in range(3)]
    imgs[0].save(tmp_path / "a.gif", save_all=True, append_images=imgs[1:], duration=125)
    assert len(read_frames(tmp_path / "a.gif", 8)) == 3


def test_grayscale_and_16bit_images_become_rgb8(tmp_path):
    img, _ = disc_image()
    gray = Image.fromarray(img).convert("L")
    gray.save(tmp_path / "g.png")
    rgb, alpha = read_image(tmp_path / "g.png")
    assert rgb.shape == (240, 320, 3) and rgb.dtype == np.uint8 and alpha is None
    deep = (np.asarray(gray).astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "d16.png")
    rgb16, _ = read_image(tmp_path / "d16.png")
    assert rgb16.dtype == np.uint8 and abs(int(rgb16[..., 0].astype(int).mean()) - int(np.asarray(gray).mean())) <= 1
    ref = load_reference(tmp_path / "d16.png")
    assert ref.masks[0].mean() > 0.05


@pytest.mark.parametrize("case", ["missing", "tiny", "corrupt_video", "empty_video", "text_as_png", "wrong_suffix",
                                  "empty_folder", "mask_nothing", "mask_everything"])
def test_bad_inputs_give_one_clear_sentence(tmp_path, case):
    target = tmp_path / "in.png"
    mask = None
    if case == "missing":
        target = tmp_path / "nope.png"
    elif case == "tiny":
        Image.new("RGB", (1, 1)).save(target)
    elif case == "corrupt_video":
        target = tmp_path / "c.mp4"
        target.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    elif case == "empty_video":
        target = tmp_path / "e.mp4"
        target.write_bytes(b"")
    elif case == "text_as_png":
        target.write_text("not an image")
    elif case == "wrong_suffix":
        target = tmp_path / "notes.txt"
        target.write_text("hello")
    elif case == "empty_folder":
        target = tmp_path / "folder"
        target.mkdir()
    elif case in ("mask_nothing", "mask_everything"):
        write_disc_png(target)
        value = 0 if case == "mask_nothing" else 255
        Image.fromarray(np.full((240, 320), value, np.uint8)).save(tmp_path / "m.png")
        mask = tmp_path / "m.png"
    with pytest.raises(InputError) as info:
        load_reference(target, mask=mask)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    assert message.endswith((".", "?"))


def test_cutout_is_cropped_rgba():
    img, truth = disc_image()
    rgba = subject_cutout(img, truth)
    assert rgba.shape[2] == 4 and abs(rgba.shape[0] - 121) <= 5 and abs(rgba.shape[1] - 121) <= 5
    assert rgba[rgba.shape[0] // 2, rgba.shape[1] // 2, 3] == 255 and rgba[0, 0, 3] < 128


def test_contact_sheet_lays_out_a_grid():
    imgs = [np.full((80, 128, 3), 40 * i, np.uint8) for i in range(5)]
    sheet = contact_sheet(imgs, [f"shot {i} 小狐狸" for i in range(5)], columns=3, thumb_width=128, title="Title")
    assert sheet.width == 12 + 3 * (128 + 12)
    arr = np.asarray(sheet)
    # The second row's first thumbnail sits below the first row and holds image 3's colour.
    assert (arr[:, 12 + 60] == 120).all(axis=1).any()


def test_subject_filling_the_frame_falls_back_to_a_rectangle_grabcut():
    # A subject that touches every border defeats the border colour model.
    img, truth = disc_image(h=200, w=200, center=(100, 115), radius=100)
    mask, how = segment_subject(img)
    assert how == "grabcut (rectangle)"
    assert iou(mask, truth) > 0.9


def test_real_photo_of_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    mask, how = segment_subject(skimage_data.chelsea())
    assert how == "grabcut (rectangle)" and 0.2 < mask.mean() < 0.8
    # The cat's eyes (around x=260, y=110 and x=340, y=110 in the 451×300 photo) are inside.
    assert mask[100:120, 250:270].mean() > 0.5
