"""What each named weight is: its Hugging Face repository, its files, its licence and the environment
variable that points it at a local copy. Plain data; imports nothing from StoryAgent."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WeightSpec:
    """One downloadable set of weights."""

    name: str
    """Short name used on the command line: `storyagent weights fetch NAME`."""
    repo_id: str
    """Hugging Face repository that holds the files."""
    files: tuple[str, ...] = field(default_factory=tuple)
    """Files to fetch from the repository; empty means the whole snapshot (narrowed by `allow_patterns`)."""
    purpose: str = ""
    """What the weights are for, shown by `storyagent weights list` and `storyagent doctor`."""
    licence: str = "see model card"
    """The terms the weights come under, as the model card states them (shown by `weights list`)."""
    allow_patterns: tuple[str, ...] = ()
    """For a snapshot: the files worth fetching (fnmatch patterns); empty fetches every file."""
    converter: str | None = None
    """Module whose `convert_downloaded` turns the upstream files into the folder our loader reads,
    once, at fetch time; None when the loaders read the files as they are."""
    needs: tuple[str, ...] = ()
    """Other weights the conversion reads (fetched first by `storyagent weights fetch`)."""
    loads_upstream: bool = False
    """Whether the loader also reads the upstream files as they are (the conversion then only saves
    work at load time)."""

    @property
    def licence_url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"


_DC = "storyagent.models.dynamicrafter.convert"
_DC_LICENCE = "Apache-2.0 code; weights: see model card"
# The OpenCLIP towers sit inside DynamiCrafter's model.ckpt; only the tokenizer comes from here.
_CLIP_TOKENIZER = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
# Diffusers' own layout; the repository also holds single-file and fp16 copies (tens of GB more).
_DIFFUSERS = ("model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors", "*/model.safetensors")
# Wan 2.x in diffusers' layout: the components' configs, the sharded safetensors of the transformer(s) and
# UMT5 text encoder (with their index files), the tokenizer; the repositories' original-layout copies are skipped.
_WAN = ("model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors", "tokenizer/*")
_WAN_LICENCE = "Apache-2.0"
# Transformers' layout; `weights fetch` skips pytorch_model.bin where model.safetensors is beside it.
_TRANSFORMERS = ("*.json", "*.txt", "model.safetensors", "pytorch_model.bin")

# Piper voices `weights fetch` knows by name (the first is the default); any other voice of the repository
# is found in the Hugging Face cache by the same layout, or given as the path of its .onnx file.
_PIPER_VOICES = ("en_US-lessac-medium", "en_US-amy-medium", "en_US-ryan-high", "en_GB-alan-medium")


def _piper_file(voice: str) -> str:
    """rhasspy/piper-voices' layout: en_US-lessac-medium -> en/en_US/lessac/medium/en_US-lessac-medium.onnx."""
    language, rest = voice.split("-", 1)
    name, quality = rest.rsplit("-", 1)
    return f"{language.split('_')[0]}/{language}/{name}/{quality}/{voice}.onnx"


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in [
        WeightSpec("dynamicrafter-512", "Doubiiu/DynamiCrafter_512", ("model.ckpt",),
                   "DynamiCrafter image-to-video, 320x512 (Video Creator)", _DC_LICENCE, converter=_DC,
                   needs=("open-clip-vit-h-14",), loads_upstream=True),
        WeightSpec("dynamicrafter-256", "Doubiiu/DynamiCrafter", ("model.ckpt",),
                   "DynamiCrafter image-to-video, 256x256", _DC_LICENCE, converter=_DC, needs=("open-clip-vit-h-14",),
                   loads_upstream=True),
        WeightSpec("dynamicrafter-1024", "Doubiiu/DynamiCrafter_1024", ("model.ckpt",),
                   "DynamiCrafter image-to-video, 576x1024", _DC_LICENCE, converter=_DC,
                   needs=("open-clip-vit-h-14",), loads_upstream=True),
        # The Wan image-to-video models of `--video-model` (storyagent.models.wan.config: the same names and
        # repositories), loaded by diffusers' WanImageToVideoPipeline as they are.
        WeightSpec("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", (),
                   "Wan2.2 TI2V-5B image-to-video, 704x1280 at 24 fps (--video-model wan2.2-ti2v-5b)", _WAN_LICENCE,
                   allow_patterns=_WAN),
        WeightSpec("wan2.1-i2v-14b-480p", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", (),
                   "Wan2.1 I2V-14B image-to-video, 480x832 at 16 fps (--video-model wan2.1-i2v-14b-480p)",
                   _WAN_LICENCE, allow_patterns=_WAN),
        WeightSpec("wan2.2-i2v-a14b", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", (),
                   "Wan2.2 I2V-A14B image-to-video, two 14B experts (--video-model wan2.2-i2v-a14b)", _WAN_LICENCE,
                   allow_patterns=_WAN),
        WeightSpec("open-clip-vit-h-14", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", (),
                   "OpenCLIP ViT-H/14 tokenizer (DynamiCrafter prompts)", "MIT", allow_patterns=_CLIP_TOKENIZER),
        WeightSpec("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", (),
                   "SDXL base for the StoryDiffusion storyboard", "CreativeML Open RAIL++-M",
                   allow_patterns=_DIFFUSERS),
        WeightSpec("grounding-dino-base", "IDEA-Research/grounding-dino-base", (),
                   "Grounding DINO text-prompted detector (LangSAM)", "Apache-2.0", allow_patterns=_TRANSFORMERS),
        WeightSpec("sam-vit-h", "ybelkada/segment-anything", ("checkpoints/sam_vit_h_4b8939.pth",),
                   "Segment Anything ViT-H (LangSAM masks)", "Apache-2.0"),
        # SAM 2.1 tiny: 38.9M parameters (~156 MB), within 0.1 J&F of small on SA-V test (76.5 vs 76.6, SAM 2's
        # README); a reference clip holds one subject, so the larger encoders buy little for their size. The
        # repository also keeps the original sam2.1_hiera_tiny.pt, which the transformers patterns skip.
        WeightSpec("sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny", (),
                   "SAM 2.1 video predictor (a reference clip's subject mask carried through its frames)",
                   "Apache-2.0", allow_patterns=_TRANSFORMERS),
        WeightSpec("anydoor", "xichenhku/AnyDoor", ("epoch=1-step=8687.ckpt",),
                   "AnyDoor subject redraw (storyboard)", "MIT code; weights: see model card",
                   converter="storyagent.models.anydoor.convert"),
        WeightSpec("dinov2-vitg14", "facebook/dinov2-giant", (),
                   "DINOv2 ViT-g/14 identity encoder (AnyDoor)", "Apache-2.0", allow_patterns=_TRANSFORMERS),
        WeightSpec("clip-vit-l-14", "openai/clip-vit-large-patch14", (),
                   "CLIP ViT-L/14 (aesthetic predictor, CLIP metrics)", "MIT code; weights: see model card",
                   allow_patterns=_TRANSFORMERS),
        WeightSpec("clip-vit-b-32", "openai/clip-vit-base-patch32", (),
                   "CLIP ViT-B/32 (CLIP-score and CLIP-temp as EvalCrafter computes them)",
                   "MIT code; weights: see model card", allow_patterns=_TRANSFORMERS),
        # Stable Audio Open 1.0 (gated: accept its licence on the model page, then `huggingface-cli login`):
        # diffusers' folders only; the repository's single-file checkpoint would double the download.
        WeightSpec("stable-audio-open-1.0", "stabilityai/stable-audio-open-1.0", (),
                   "Stable Audio Open text-to-music (the film's score, 44.1 kHz stereo, up to 47 s)",
                   "Stability AI Community License", allow_patterns=_DIFFUSERS + ("tokenizer/*",)),
        WeightSpec("laion-aesthetic-v2", "camenduru/improved-aesthetic-predictor",
                   ("sac+logos+ava1-l14-linearMSE.pth",),
                   "LAION improved aesthetic predictor head (Observer)", "Apache-2.0",
                   converter="storyagent.models.aesthetic.convert", loads_upstream=True),
        # Narration voices (issue 24). Kokoro-82M: the model, its config and every voice pack (~0.5 MB each).
        WeightSpec("kokoro-82m", "hexgrad/Kokoro-82M", (), "Kokoro-82M narration voice (--voice kokoro:VOICE, e.g. af_heart)",
                   "Apache-2.0", allow_patterns=("config.json", "kokoro-v1_0.pth", "voices/*.pt")),
        *[WeightSpec("piper-" + voice.lower().replace("_", "-"), "rhasspy/piper-voices",
                     (_piper_file(voice), _piper_file(voice) + ".json"), f"Piper narration voice (--voice piper:{voice})",
                     "MIT (repository); the voice's recordings: see its MODEL_CARD") for voice in _PIPER_VOICES],
    ]
}


def fetch_hint(name: str) -> str:
    return f"run `storyagent weights fetch {name}` (needs a network) or set {env_var(name)} to a local copy"


def env_var(name: str) -> str:
    """The environment variable that points `name` at a local path: STORYAGENT_WEIGHTS_SDXL_BASE, ..."""
    return "STORYAGENT_WEIGHTS_" + "".join(c if c.isalnum() else "_" for c in name).upper()
