"""The dependency floors, checked: every direct dependency of pyproject.toml installed at the lowest
version its requirement allows, in a fresh virtual environment, then the tests that import every
model family and build its tiny model (`FLOOR_TESTS`).

    .ci/floors              # build/floors/venv made anew, the floors installed, the tests run
    .ci/floors --keep       # reuse that venv (the floors are applied again; seconds instead of minutes)
    .ci/floors --print      # only print the constraints (name==floor), one a line

pip has no "lowest versions" resolution (that is uv's `--resolution=lowest-direct`), so the floors
become a constraints file: `name==X` for every `name>=X` (or `~=X`, `==X`) of `[project].dependencies`.
A requirement without a floor is an error: every dependency says the oldest release the code works with.

torch and torchvision are the exception: they are installed at the CI's pin (`.ci/run`), because
their wheels are gigabytes of CUDA libraries. Their floors are argued in pyproject.toml from the calls
that need them, and `tests/test_requirement_floors.py` holds those calls.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "floors"
"""The venv and the constraints file live here (build/ is ignored by git)."""

PINNED_HERE = {"torch": "2.14.1", "torchvision": "0.29.1"}
"""Installed at the CI's pin instead of their floor (see the module docstring)."""

TEST_TOOLS = ["pytest", "pytest-timeout", "scikit-image"]
"""What the tests need besides the package, installed beside it under the same constraints (numpy stays at its floor)."""

FLOOR_TESTS = [
    # the model families, each built tiny and run: SDXL + consistent self-attention, Grounding DINO + SAM,
    # AnyDoor (DINOv2 layout, ControlNet, LoRA fine-tune), DynamiCrafter (CLIP layouts), LoRA-BE (peft),
    # SAM 2 video, the aesthetic head, SDXL inpainting, Stable Audio, Wan through diffusers
    "tests/models/test_storydiffusion.py",
    "tests/models/test_langsam.py",
    "tests/models/test_anydoor_convert.py",
    "tests/models/test_anydoor_training.py",
    "tests/models/test_dynamicrafter_convert.py",
    "tests/models/test_lora_be.py",
    "tests/models/test_sam2_video.py",
    "tests/models/test_aesthetic.py",
    "tests/models/test_removal.py",
    "tests/models/test_music_text_to_music.py",
    "tests/models/test_wan_lora_be.py",
    # reading video (PyAV), drawing (Pillow), the weights hub, the metrics (torchmetrics, scipy), AG2 + openai
    "tests/media/test_media.py",
    "tests/media/test_join_videos.py",
    "tests/weights/test_weights_fetch.py",
    "tests/eval/test_eval_consistency.py",
    "tests/agents/test_observer_sees_reference.py",
    # one canary per floor: the call that needs it
    "tests/test_requirement_floors.py",
]
DESELECT = [
    # Pixel hashes of one machine's stack (its OpenCV, Pillow and NumPy rounding), not an API.
    "before_casts",
]

_REQUIREMENT = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;]*)")


def normalize(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def floor_of(requirement: str) -> tuple[str, str]:
    """(name, floor) of one requirement string: the version after `>=`, `~=` or `==`."""
    match = _REQUIREMENT.match(requirement)
    if not match:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    for clause in match["spec"].split(","):
        clause = clause.strip()
        for op in (">=", "~=", "=="):
            if clause.startswith(op):
                return normalize(match["name"]), clause[len(op):].strip()
    raise ValueError(f"{requirement!r} has no floor: give it one (name>=X), the oldest release the code works with")


def floors(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Every direct dependency's floor, by normalized name, in pyproject's order."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return dict(floor_of(r) for r in project["dependencies"])


def constraints(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The constraints file's lines: `name==floor`, torch and torchvision at the CI's pin."""
    return [f"{name}=={PINNED_HERE.get(name, floor)}" for name, floor in floors(pyproject).items()]


def run(*cmd: str | os.PathLike[str], **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def installed_versions(python: Path, names: list[str]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([str(python), "-c", code, *names], check=True, capture_output=True, text=True).stdout
    import json

    return {normalize(k): v for k, v in json.loads(out).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="reuse build/floors/venv when it exists")
    parser.add_argument("--print", action="store_true", help="print the constraints and stop")
    parser.add_argument("pytest_args", nargs="*", help="instead of FLOOR_TESTS, these pytest arguments")
    args = parser.parse_args(argv)
    lines = constraints()
    if args.print:
        print("\n".join(lines))
        return 0

    start = time.monotonic()
    venv, constraint_file = WORK / "venv", WORK / "constraints.txt"
    if venv.exists() and not args.keep:
        shutil.rmtree(venv)
    WORK.mkdir(parents=True, exist_ok=True)
    constraint_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    python = venv / "bin" / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", venv)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run(*pip, *(f"{n}=={v}" for n, v in PINNED_HERE.items()))
    run(*pip, "-c", constraint_file, "-e", ".", *TEST_TOOLS)
    run(python, "-m", "pip", "check")

    # Each dependency is at its floor (the constraints make pip fail otherwise; this says it in a table).
    want = floors()
    got = installed_versions(python, list(want))
    print(f"\n{'dependency':28} {'floor':>10} {'installed':>10}")
    wrong = []
    for name, floor in want.items():
        expect = PINNED_HERE.get(name, floor)
        print(f"{name:28} {floor:>10} {got[name]:>10}{'' if got[name] == expect else '  <- not the floor'}")
        if got[name] != expect:
            wrong.append(name)
    if wrong:
        print(f"not at their floors: {', '.join(wrong)}")
        return 1
    print(f"installed in {time.monotonic() - start:.0f} s\n", flush=True)

    tests = args.pytest_args or [*FLOOR_TESTS, "-k", " and ".join(f"not {d}" for d in DESELECT)]
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], check=False, cwd=ROOT, env=env)
    print(f"floors checked in {time.monotonic() - start:.0f} s", flush=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
