"""The dependency floors (issue 26, item 12): each floor in pyproject.toml is the oldest release the code's
own calls work with, and these tests are those calls, one per floor that the model tests do not already
show. They pass in any environment the requirements allow; `.ci/floors` runs them (with the model tests)
with every dependency at its floor, and each fails one release below it (how each floor was found is in
pyproject.toml's comments)."""

import importlib.util
import os
import re
import subprocess
import sys
import tomllib

import pytest
import torch

from tests.support.paths import ROOT


def _floors_script():
    spec = importlib.util.spec_from_file_location("ci_floors", ROOT / ".ci" / "floors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_dependency_has_a_floor_that_is_a_release_and_the_script_installs_it():
    floors = _floors_script()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = floors.floors()
    assert len(found) == len(project["dependencies"]), "one floor per dependency"
    for name, floor in found.items():
        # A release number as pip spells it (`4.8.0.76`: `==4.8` would match no opencv release).
        assert re.fullmatch(r"\d+(\.\d+)+", floor), f"{name}: {floor!r} is not a full release number"
    lines = floors.constraints()
    assert lines == [f"{n}=={floors.PINNED_HERE.get(n, f)}" for n, f in found.items()]
    assert set(floors.PINNED_HERE) <= set(found), "the pinned exceptions are dependencies"
    with pytest.raises(ValueError, match="has no floor"):
        floors.floor_of("numpy<3")
    assert floors.floor_of("autogen[openai]~=0.14.1") == ("autogen", "0.14.1")


def test_torch_out_of_memory_is_recognised():
    """torch>=2.4: `torch.OutOfMemoryError` (2.3 has only torch._C._OutOfMemoryError), which placement.py
    catches to retry a shot or a fine-tune in a smaller setting."""
    from storyagent.models.placement import is_out_of_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_sdxl_loads_in_the_dtype_asked(tiny_sdxl_folder):
    """diffusers>=0.40: `from_pretrained(dtype=...)` (storydiffusion.load_sdxl). Before 0.40 the keyword is
    ignored and SDXL loads in float32: twice the memory on a GPU, and the storyboard stage runs out of it."""
    from storyagent.models.storydiffusion.pipeline import load_sdxl

    pipe = load_sdxl(tiny_sdxl_folder, torch_dtype=torch.bfloat16)
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype, pipe.text_encoder_2.dtype} == {torch.bfloat16}


def test_grounding_dino_loads_in_the_dtype_asked(tiny_langsam_weights):
    """transformers>=4.56 reads `dtype=` (langsam.detector); before, it reached the model's __init__ as an
    unknown keyword (the TypeError the issue names)."""
    from storyagent.models.langsam.detector import GroundingDinoDetector

    detector = GroundingDinoDetector.from_pretrained(tiny_langsam_weights[0], torch_dtype=torch.bfloat16)
    assert detector.model.dtype == torch.bfloat16


def test_anydoors_dinov2_names_are_transformers_names():
    """transformers>=5.18: DINOv2 with split q/k/v (`attention.q_proj`) and SwiGLU `mlp.gate_proj`/`up_proj`,
    the names AnyDoor's converter writes (anydoor.convert); 5.17 calls them `attention.attention.query` ..."""
    from storyagent.models.anydoor.convert import _DINOV2_FUSED, dinov2_renames
    from storyagent.models.anydoor.image_encoder import AnyDoorImageEncoder
    from storyagent.models.anydoor.testing import tiny_config

    settings = tiny_config().dinov2
    names = set(AnyDoorImageEncoder(settings).dinov2.state_dict())
    written = [*dinov2_renames(settings).values(),
               *(f"encoder.layer.{layer}.{target}" for layer in range(settings.depth)
                 for targets in _DINOV2_FUSED.values() for target in targets)]
    # The table names both MLPs (fc1/fc2, and ViT-g's SwiGLU); a model has one of them.
    swiglu = any(".mlp.gate_proj." in n for n in names)
    unused = (".mlp.fc1", ".mlp.fc2") if swiglu else (".mlp.gate_proj", ".mlp.up_proj", ".mlp.down_proj")
    missing = [w for w in written if not w.endswith(unused)
               and w not in names and not any(n.startswith(w + ".") for n in names)]
    assert not missing, f"the converter writes names this transformers lacks: {missing[:3]}"


def test_the_tiny_sam2_video_model_builds(tmp_path):
    """transformers>=5.20: a Sam2VideoConfig from nested dicts (sam2.testing); 5.18 and 5.19 hand the mask
    decoder the prompt encoder's config (AttributeError: num_multimask_outputs)."""
    from storyagent.models.sam2.testing import save_tiny_sam2_video

    assert (save_tiny_sam2_video(tmp_path / "sam2") / "config.json").exists()


def test_a_lora_file_with_a_stray_key_is_refused_naming_the_files_key():
    """peft>=0.21: `set_peft_model_state_dict` reports unexpected keys as the file spells them (lora_be.adapter
    names the first to the user); before, with the adapter's name put in (`lora_A.default.weight`)."""
    from peft import (
        LoraConfig,
        get_peft_model_state_dict,
        inject_adapter_in_model,
        set_peft_model_state_dict,
    )

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    inject_adapter_in_model(LoraConfig(r=2, target_modules=["0"]), model)
    state = get_peft_model_state_dict(model) | {"1.lora_A.weight": torch.zeros(2, 4)}
    assert set_peft_model_state_dict(model, state).unexpected_keys == ["1.lora_A.weight"]


@pytest.mark.parametrize("size", [(128, 80), (512, 320)])
def test_a_desert_is_drawn_at_any_seed(size):
    """pillow>=10.3: a rounded rectangle thinner than its two corners (a cactus arm, animatic.scenery.desert)
    is drawn; Pillow 10.2 raises "y1 must be greater than or equal to y0" for a third of these seeds."""
    from storyagent.models.animatic.backgrounds import draw_background

    for seed in range(12):
        picture = draw_background("a cactus in the desert", *size, seed=seed)
        assert picture.shape == (size[1], size[0], 3) and picture.std() > 1


def test_the_command_line_help_is_written():
    """typer>=0.29: `TyperOption.type_descriptor`, which commands.help_text reads to name each option's value."""
    res = subprocess.run([sys.executable, "-m", "storyagent", "run", "--help"], check=False, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert re.search(r"--shots\s+N\s", res.stdout), "the value of --shots is named N"


def test_importing_the_crew_warns_nothing():
    """pydantic>=2.10: AG2's `model_client_cls` field is no longer in pydantic's protected namespace; with 2.9
    every command that loads the crew printed a UserWarning before its one-sentence answer."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # the warnings a user sees
    res = subprocess.run([sys.executable, "-c", "import storyagent.agents.crew"], check=False, capture_output=True,
                         text=True, timeout=120, cwd=ROOT, env=env)
    assert res.returncode == 0 and "UserWarning" not in res.stderr, res.stderr
