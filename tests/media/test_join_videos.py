"""Joining clips without re-encoding: the film's clips are copied packet for packet after its title card."""

import av
import numpy as np
import pytest

from storyagent.media import CannotJoin, join_videos, write_video


def decode(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def moving_frames(n, h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w + n, 3), np.uint8)
    return [np.ascontiguousarray(base[:, t:t + w]) for t in range(n)]


def test_clips_follow_the_frames_as_they_were_encoded(tmp_path):
    clips = []
    for i, n in enumerate((9, 5)):
        clips.append(tmp_path / f"clip{i}.mp4")
        write_video(clips[-1], moving_frames(n, seed=i), fps=8)
    head = [np.full((64, 96, 3), v, np.uint8) for v in (0, 80, 160)]
    assert join_videos(tmp_path / "film.mp4", head, clips, fps=8) == 3 + 9 + 5
    film = decode(tmp_path / "film.mp4")
    assert len(film) == 17
    # The clips' pictures are exactly what their own files decode to: copied, not encoded again.
    assert all(np.array_equal(a, b) for a, b in zip(film[3:], decode(clips[0]) + decode(clips[1])))
    assert all(np.abs(a.astype(int) - b).mean() < 3 for a, b in zip(film[:3], head))
    with av.open(str(tmp_path / "film.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 8 and abs(float(container.duration / 1e6) - 17 / 8) < 1e-3


@pytest.mark.parametrize("other", [{"fps": 12}, {"size": (80, 96)}, {"crf": 0}])
def test_a_clip_encoded_otherwise_is_refused_and_nothing_written(tmp_path, other):
    h, w = other.get("size", (64, 96))
    frames = [f[:h] if h <= 64 else np.pad(f, ((0, h - 64), (0, 0), (0, 0))) for f in moving_frames(4)]
    write_video(tmp_path / "clip.mp4", frames, fps=other.get("fps", 8), crf=other.get("crf", 20))
    with pytest.raises(CannotJoin):
        join_videos(tmp_path / "film.mp4", moving_frames(3, seed=2), [tmp_path / "clip.mp4"], fps=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
