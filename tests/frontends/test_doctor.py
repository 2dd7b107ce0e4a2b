"""`storyagent doctor` on a machine with no weights: a verdict on what works now, one line per group of
weights with the one command that fetches the group, and a row that says what each check enables."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from storyagent.weights import WEIGHTS

from tests.support.paths import ROOT


@pytest.fixture
def doctor_env(tmp_path):
    """A machine with empty caches, no weights paths, no LLM and no speech key."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STORYAGENT_WEIGHTS_", "HF_", "STORYAGENT_LLM", "OAI_CONFIG_LIST", "OPENAI_"))}
    return env | {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "STORYAGENT_CACHE": str(tmp_path / "cache"),
                  "PYTHONPATH": str(ROOT), "COLUMNS": "250"}


@pytest.fixture
def doctor(tmp_path, doctor_env):
    """`storyagent doctor ARGS` in a fresh process on that machine (`doctor(..., env=...)` changes it)."""

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        res = subprocess.run([sys.executable, "-m", "storyagent", "doctor", *args], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path, env=env or doctor_env)
        assert res.returncode == 0, res.stderr
        return res.stdout + res.stderr

    return run


def rows(output: str) -> dict[str, tuple[str, str]]:
    """The table's rows by check: (status, what it enables), a cell wrapped over several lines joined again."""
    found: dict[str, list[str]] = {}
    check = None
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) != 5:
            check = None
            continue
        check = cells[1] or check
        if check is not None:
            row = found.setdefault(check, ["", ""])
            row[:] = [" ".join(filter(None, (row[i], cells[i + 2]))) for i in (0, 1)]
    return {k: (v[0], v[1]) for k, v in found.items()}


def test_doctor_gives_a_verdict_and_one_line_per_group_of_weights(doctor):
    from storyagent.tools.backends.diffusion import DiffusionBackend
    from storyagent.weights.fetch import fetch_order

    out = doctor()
    table = rows(out)
    assert "Animatic films: ready (no weights needed)" in out
    needed = fetch_order(list(DiffusionBackend.weights))
    (verdict,) = [line for line in out.splitlines() if "Diffusion films:" in line]
    assert f"need {len(needed)} of its {len(needed)} weights" in verdict
    assert "storyagent weights fetch --backend diffusion" in verdict
    status, _ = table["weights: diffusion backend"]
    assert status.startswith(f"missing {len(needed)} of {len(needed)}") and "--backend diffusion" in status

    weight_rows = [check for check in table if check.startswith("weights:")]
    assert len(weight_rows) <= 5 < len(WEIGHTS), "grouped, not one row per weight"
    assert not any(f"weights: {name}" in table for name in WEIGHTS)
    for check, (status, enables) in table.items():
        assert enables, f"doctor's row {check!r} does not say what it enables"
    for check in ("autogen", "av", "diffusers", "transformers", "gradio", "chromium", "LLM"):
        assert check in table


def test_doctor_verbose_lists_every_weight_with_its_fetch_command(doctor):
    table = rows(doctor("--verbose"))
    for name, spec in WEIGHTS.items():
        status, enables = table[f"weights: {name}"]
        assert f"storyagent weights fetch {name}" in status and enables == spec.purpose


def test_every_weight_is_in_one_group_and_the_groups_fetch_what_they_list():
    from storyagent.commands.weights import weight_groups
    from storyagent.weights.fetch import fetch_order

    groups = weight_groups()
    assert {n for g in groups for n in g.names} == set(WEIGHTS)
    for group in groups:
        assert set(group.names) <= set(WEIGHTS), group.label
        if not group.optional:  # one command fetches the whole group: what its conversions read is in it
            assert set(fetch_order(list(group.names))) == set(group.names), f"{group.label} misses a need"
    missing = {n: "missing" for n in WEIGHTS}
    assert groups[0].fetch_command(missing) == "storyagent weights fetch --backend diffusion"
    assert groups[1].fetch_command({**missing, "clip-vit-l-14": "downloaded"}) == \
        "storyagent weights fetch laion-aesthetic-v2", "a group without a command fetches only its missing weights"


def test_doctor_says_what_each_sound_tool_gives_and_names_the_default_voice(doctor, doctor_env, monkeypatch):
    import shutil

    from storyagent.models.voice import best_voice_spec

    out = doctor()
    table = rows(out)
    for check in ("espeak-ng", "fluidsynth", "SoundFont", "voice: kokoro", "voice: piper"):
        assert table[check][1], f"doctor's {check!r} row says what it enables"
    assert "no weights" in table["espeak-ng"][1] and "score" in table["fluidsynth"][1]
    # No weights in this machine's cache: Kokoro and Piper say the command that fetches them.
    assert "storyagent weights fetch kokoro-82m" in table["voice: kokoro"][0]
    assert "storyagent weights fetch piper-" in table["voice: piper"][0]
    for name, var in doctor_env.items():
        monkeypatch.setenv(name, var)
    voice = best_voice_spec()
    (verdict,) = [line for line in out.splitlines() if line.strip().startswith("Sound:")]
    if shutil.which("espeak-ng"):
        assert voice == "espeak" and table["espeak-ng"][0].startswith("ok")
        assert f"narrated by {voice} (the default, --voice auto)" in verdict
    if shutil.which("fluidsynth") and "ok" in table["SoundFont"][0]:
        assert "a score composed from the story, played by FluidSynth" in verdict


def test_doctor_on_a_machine_without_espeak_or_fluidsynth_says_what_to_install(doctor, doctor_env, tmp_path):
    bare = tmp_path / "bare_path"
    bare.mkdir()
    out = doctor(env=doctor_env | {"PATH": str(bare)})
    table = rows(out)
    assert table["espeak-ng"][0].startswith("missing") and "espeak-ng" in table["espeak-ng"][0]
    assert table["fluidsynth"][0].startswith("missing") and "apt-get install fluidsynth" in table["fluidsynth"][0]
    (verdict,) = [line for line in out.splitlines() if line.strip().startswith("Sound:")]
    assert "silent" in verdict and "apt-get install espeak-ng" in verdict
    assert "no score" in verdict and "fluidsynth" in verdict
