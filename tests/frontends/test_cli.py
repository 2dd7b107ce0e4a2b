"""The command line, run for real in subprocesses."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from storyagent.hashing import hash_file
from storyagent.media import read_frames
from storyagent.models.animatic.backgrounds import SceneSpec
from storyagent.workspace import MANIFEST

from tests.support.paths import ROOT
PIP = ROOT / "examples" / "pip"


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "storyagent", *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.sound
def test_demo_makes_a_four_shot_film(tmp_path):
    """What a newcomer runs first, with the default voice and score (auto: espeak-ng and FluidSynth here)."""
    res = cli("demo", "--out", str(tmp_path / "demo"), "--quiet")
    assert res.returncode == 0, res.stderr
    root = tmp_path / "demo"
    clips = sorted((root / "shots").glob("shot_*.mp4"))
    assert [c.name for c in clips] == [f"shot_0{i}.mp4" for i in range(1, 5)]
    for clip in clips:
        assert len(read_frames(clip, 1000)) / 8 >= 2.0, "each shot lasts at least 2 s"
    film = read_frames(root / "film.mp4", 1000)
    assert len(film) >= 4 * 16
    story = json.loads((root / "story.json").read_text())
    assert len({s["background"] for s in story["shots"]}) == 4
    assert len({(s["shot_type"], s["camera_motion"]) for s in story["shots"]}) >= 3
    assert "film.mp4" in res.stderr + res.stdout
    if shutil.which("espeak-ng") and shutil.which("fluidsynth"):
        with av.open(str(root / "film.mp4")) as container:
            assert sorted(s.type for s in container.streams) == ["audio", "video"], "the film is narrated and scored"
        assert (root / "audio" / "music.wav").is_file() and (root / "film.srt").is_file()


def test_run_on_a_plain_photo_without_alpha(tmp_path):
    from tests.support.media import disc_image

    img, _ = disc_image(h=300, w=400, center=(200, 150), radius=90)
    Image.fromarray(img).save(tmp_path / "ball.jpg")
    res = cli("run", "a day at the seaside", "--subject", str(tmp_path / "ball.jpg"), "--out", str(tmp_path / "x"),
              "--shots", "3", "-q")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "x" / MANIFEST).read_text())
    assert manifest["inputs"]["name"] == "Ball"
    assert manifest["artifacts"]["subject/frame_01"]["meta"]["mask_method"] == "grabcut"
    boards = [np.asarray(Image.open(tmp_path / "x" / "storyboard" / f"shot_0{i}.png")) for i in (1, 2, 3)]
    masks = [np.asarray(Image.open(tmp_path / "x" / "storyboard" / f"shot_0{i}_mask.png")) > 127 for i in (1, 2, 3)]
    # Backgrounds differ between shots, the subject (the orange ball, under each shot's light) is in each.
    assert np.abs(boards[0].astype(int) - boards[1]).mean() > 10
    story = json.loads((tmp_path / "x" / "story.json").read_text())
    for b, m, shot in zip(boards, masks, story["shots"]):
        tint = np.array(SceneSpec.from_text(shot["background"]).tint)
        assert np.abs(np.median(b[m], axis=0) - np.array([230, 90, 40]) * tint).max() < 30


@pytest.mark.parametrize("args,needle", [
    (["run", "", "--subject", str(PIP)], "prompt is empty"),
    (["run", "x" * 20000, "--subject", str(PIP)], "20000 characters"),
    (["run", "a story", "--subject", "/no/such/cat.mp4"], "does not exist"),
    (["run", "a story", "--subject", str(PIP), "--shots", "0"], "between 1 and 32"),
    (["run", "a story", "--subject", str(PIP), "--shots", "1000"], "between 1 and 32"),
    (["run", "a story", "--subject", str(PIP), "--out", str(ROOT / "pyproject.toml")], "is a file"),
])
def test_bad_input_is_one_sentence_and_no_traceback(tmp_path, args, needle):
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert len([line for line in res.stderr.splitlines() if line.strip()]) <= 3
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.mp4"))


def test_unicode_prompt_and_name(tmp_path):
    res = cli("run", "小狐狸的海边一天 🌊", "--subject", str(PIP / "pip.png"), "--name", "小皮", "--shots", "1", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and "小狐狸" in runs[0].name
    assert "小皮" in (runs[0] / "story.json").read_text(encoding="utf-8")


def test_ctrl_c_loses_no_finished_shot_and_resume_finishes(tmp_path):
    out = tmp_path / "long"
    args = [sys.executable, "-m", "storyagent", "run", "a long walk in the forest", "--subject", str(PIP / "pip.png"),
            "--shots", "24", "--width", "640", "--height", "400", "--out", str(out), "-q"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    def recorded() -> int:
        try:  # the manifest is written atomically, so any read sees a whole file
            return sum(k.startswith("shots/") for k in json.loads((out / MANIFEST).read_text())["artifacts"])
        except (OSError, ValueError):
            return 0

    deadline = time.time() + 90
    while recorded() < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    manifest = json.loads((out / MANIFEST).read_text())
    done = {k: v for k, v in manifest["artifacts"].items() if k.startswith("shots/")}
    assert 2 <= len(done) < 24
    for entry in done.values():
        assert hash_file(out / entry["path"]) == entry["meta"]["file_hashes"][entry["path"]]
        assert len(read_frames(out / entry["path"], 100)) == 20
    assert not list(out.rglob(".*tmp*"))
    kept = {v["path"]: (out / v["path"]).stat().st_mtime_ns for v in done.values()}

    res = cli(*args[3:], "--resume")
    assert res.returncode == 0, res.stderr
    assert all((out / p).stat().st_mtime_ns == t for p, t in kept.items()), "finished shots are reused"
    assert len(list((out / "shots").glob("shot_*.mp4"))) == 24 and (out / "film.mp4").exists()


def test_help_teaches():
    res = cli("run", "--help")
    assert res.returncode == 0
    for word in ("--subject", "--resume", "Examples", "storyagent run", "animatic|diffusion", "auto|off|force"):
        assert word in res.stdout
    assert cli("doctor").returncode == 0


@pytest.mark.parametrize("command", [[], ["run"], ["chat"], ["demo"], ["weights", "fetch"], ["eval", "film"],
                                     ["eval", "dataset"], ["finetune", "video"], ["batch"]])
def test_help_shows_flags_as_flags_and_no_python_types(command):
    """Flags take no value, so none is shown; values are shown by what they are, not by Python type."""
    out = cli(*command, "--help").stdout
    for leak in ("<bool>", "<str>", "<int>", "<float>", "<path>", "list[", "{"):
        assert leak not in out, f"{leak!r} in `storyagent {' '.join(command)} --help`"


def test_version():
    from storyagent import __version__

    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"storyagent {__version__}"


def test_files_of_a_run_are_readable_by_others_as_any_saved_file(tmp_path):
    """0644 under the usual umask, as a plain `open()` would make them (the temp files were 0600)."""
    out = tmp_path / "r"
    res = subprocess.run(["bash", "-c", f"umask 022 && {sys.executable} -m storyagent run 'a day' -s "
                          f"{PIP / 'pip.png'} --shots 1 --width 128 --height 80 --out {out} -q"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()
             and p.name != ".lock"}
    assert {"film.mp4", "story.json", "manifest.json", "storyboard.png", "shots/shot_01.mp4"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


def test_verbose_prints_the_crew_readably(tmp_path):
    res = cli("run", "a day at the seaside", "-s", str(PIP / "pip.png"), "--shots", "2", "--width", "128",
              "--height", "80", "--review", "rules", "--out", str(tmp_path / "r"), "-q", "-v")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert ">>>>>>>>" not in res.stderr and "TERMINATING RUN" not in res.stderr and '{"title"' not in res.stderr
    assert any(line.startswith("story designer: wrote ") for line in lines)
    assert any(line.startswith("storyboard generator → generate_storyboard(") for line in lines)
    assert any(line.startswith("observer: good") for line in lines)


def test_diffusion_backend_without_weights_names_the_fetch_command(tmp_path):
    env_hf = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "storyagent", "run", "a day", "--subject", str(PIP / "pip.png"),
                          "--class-word", "fox", "--backend", "diffusion", "--out", str(tmp_path / "r")], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, **env_hf, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "storyagent weights fetch sdxl-base" in res.stderr
    assert not (tmp_path / "r").exists(), "nothing is started that cannot finish"


def test_a_run_reports_each_stage_once(tmp_path):
    """One line per stage on the terminal: made on a fresh run, reused on a resume with nothing changed."""
    args = ["run", "a day at the seaside", "-s", str(PIP / "pip.png"), "--shots", "2", "--width", "128",
            "--height", "80", "--out", str(tmp_path / "r")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    for extra, word in (([], "made: 1, 2"), (["--resume"], "reused: 1, 2")):
        res = subprocess.run([sys.executable, "-m", "storyagent", *args, *extra], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, env=env)
        assert res.returncode == 0, res.stderr
        for stage in ("Storyboard", "Animating shots"):
            lines = [line for line in res.stderr.splitlines() if line.strip().startswith(stage)]
            assert len(lines) == 1 and word in lines[0], (extra, stage, lines)


BATCH = """[defaults]
subject = "pip.png"
shots = 2

[[film]]
prompt = "a day at the seaside"

[[film]]
prompt = "a day at the fair"
review = "human"

[[film]]
prompt = "a day in the snow"
width = 129
"""


def test_batch_refuses_a_bad_film_by_its_number_before_any_work(tmp_path):
    shutil.copy(PIP / "pip.png", tmp_path / "pip.png")
    (tmp_path / "films.toml").write_text(BATCH)
    res = cli("batch", "films.toml", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = [line.strip() for line in res.stderr.splitlines() if line.strip().startswith("film ")]
    assert [line.split(":")[0] for line in lines] == ["film 2", "film 3"], res.stderr
    assert "review 'human'" in lines[0] and "even" in lines[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["films.toml", "pip.png"], "nothing made"


def test_batch_help_teaches_and_ray_without_ray_says_what_to_install(tmp_path):
    out = cli("batch", "--help").stdout
    for word in ("[defaults]", "[[film]]", "films.jsonl", "--ray", "auto|ADDRESS",
                 "storyagent batch films.toml --ray auto"):
        assert word in out
    # A machine without Ray: a `ray` that cannot be imported, ahead of the installed one.
    (tmp_path / "noray" / "ray").mkdir(parents=True)
    (tmp_path / "noray" / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    shutil.copy(PIP / "pip.png", tmp_path / "pip.png")
    (tmp_path / "films.toml").write_text(BATCH.split("[[film]]\nprompt = \"a day at the fair\"")[0])
    res = subprocess.run([sys.executable, "-m", "storyagent", "batch", "films.toml", "--ray", "auto"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": f"{tmp_path / 'noray'}{os.pathsep}{ROOT}"})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: --ray needs Ray") and 'pip install -e ".[ray]"' in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "films").exists()


# ---- sound (issue 24) ------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_run_with_a_voice_makes_a_film_you_can_hear(tmp_path):
    import av

    out = tmp_path / "heard"
    res = cli("run", "a day at the seaside", "--subject", str(PIP), "--name", "Pip", "--shots", "2", "--width", "128",
              "--height", "80", "--fps", "4", "--voice", "espeak", "--music", "none", "--out", str(out), "-q")
    assert res.returncode == 0, res.stderr
    with av.open(str(out / "film.mp4")) as film:
        audio = [s for s in film.streams if s.type == "audio"]
        video = [s for s in film.streams if s.type == "video"]
        assert len(audio) == 1 and audio[0].codec_context.name == "aac"
        lengths = [float(s.duration * s.time_base) for s in (audio[0], video[0])]
    assert abs(lengths[0] - lengths[1]) <= 0.1, lengths
    inputs = json.loads((out / MANIFEST).read_text())["inputs"]
    assert (inputs["voice"], inputs["music"]) == ("espeak", "none")
    assert sorted(p.name for p in (out / "audio").glob("narration_*.wav")) == ["narration_01.wav", "narration_02.wav"]
    assert not (out / "audio" / "music.wav").exists(), "--music none makes no score"
    assert (out / "film.vtt").is_file() and (out / "film.srt").is_file()


@pytest.mark.parametrize("option,value,needle", [
    ("--voice", "bogus", "--voice 'bogus' is not understood"),
    ("--music", "/no/such/song.mp3", "does not exist"),
    ("--soundfont", str(ROOT / "README.md"), "is not a SoundFont"),
])
def test_a_bad_sound_setting_is_one_sentence_before_any_work(tmp_path, option, value, needle):
    out = tmp_path / "never"
    res = cli("run", "a day at the seaside", "--subject", str(PIP), option, value, "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2 and needle in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [], "refused before anything was made"


@pytest.mark.parametrize("command", ["run", "chat"])
def test_help_shows_the_sound_options_with_their_help(command):
    from storyagent.config import field_help

    res = subprocess.run([sys.executable, "-m", "storyagent", command, "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    text = " ".join(res.stdout.replace("│", " ").split())
    for field in ("voice", "music", "soundfont"):
        assert f"--{field}" in text
        assert " ".join(field_help(field).split()[:8]) in text, f"--{field}'s help is the RunConfig field's"
    if command == "chat":
        assert "--no-play" in text and "STORYAGENT_NO_PLAY" in text


def test_the_sound_settings_kept_in_storyagent_toml_are_the_defaults(tmp_path):
    """`voice = "none"` in ./storyagent.toml: a run without --voice is silent; --voice given wins."""
    (tmp_path / "storyagent.toml").write_text('voice = "none"\nmusic = "none"\n')
    res = cli("run", "a day at the seaside", "--subject", str(PIP), "--shots", "1", "--width", "64", "--height", "64",
              "--fps", "2", "--out", "kept", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    inputs = json.loads((tmp_path / "kept" / MANIFEST).read_text())["inputs"]
    assert (inputs["voice"], inputs["music"]) == ("none", "none")
    res = cli("run", "a day at the seaside", "--subject", str(PIP), "--voice", "bogus", "--out", "never", cwd=tmp_path)
    assert res.returncode == 2 and "--voice 'bogus'" in res.stderr
