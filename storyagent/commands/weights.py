"""`storyagent doctor` and `storyagent weights ...`: what this machine can run, and the weights it needs."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from storyagent.commands import fail
from storyagent.errors import InputError
from storyagent.progress import console

app = typer.Typer(help="List or download model weights (the only commands that use the network).",
                  no_args_is_help=True)


# What each package and tool enables, for doctor's rows: a newcomer reads what a missing one costs them.
PACKAGES: tuple[tuple[str, str, str], ...] = (
    # (import name for metadata.version, what it enables, how to get it)
    ("autogen", "the crew's group chat (every run)", "pip install -e ."),
    ("av", "reading and writing video (every run)", "pip install -e ."),
    ("diffusers", "diffusion backend: the SDXL storyboard and the DynamiCrafter clips", "pip install -e ."),
    ("transformers", "LangSAM masks, CLIP and DINOv2 (diffusion backend, --review aesthetic, eval)",
     "pip install -e ."),
    ("gradio", "storyagent studio: the review in a browser", "pip install -e '.[studio]'"),
)
# doctor's row for each engine `voice_status` reports: (check, what it enables).
VOICE_ROWS: dict[str, tuple[str, str]] = {
    "kokoro": ("voice: kokoro", "the most natural narration, offline (Kokoro-82M; torch)"),
    "piper": ("voice: piper", "natural narration offline on the CPU (Piper voices)"),
    "espeak": ("espeak-ng", "narration with no weights: the offline floor (--voice espeak)"),
    "openai": ("voice: openai", "narration by OpenAI's speech API (--voice openai:VOICE; network)"),
    "openai-compatible": ("voice: server", "narration by any /v1/audio/speech server (--voice "
                          "openai-compatible:VOICE@URL)"),
}
# The weights each reviewed feature loads besides the backend's own (the backend's come from its class).
AESTHETIC_WEIGHTS = ("clip-vit-l-14", "laion-aesthetic-v2")
METRIC_WEIGHTS = ("clip-vit-b-32", "clip-vit-l-14", "dinov2-vitg14", "laion-aesthetic-v2")
USABLE = ("local path", "converted", "downloaded")


@dataclass(frozen=True)
class WeightGroup:
    """Weights that one feature needs together, and the one command that fetches every one of them."""

    label: str
    enables: str
    names: tuple[str, ...]
    command: str = ""
    """Empty: fetch the missing ones by name."""
    optional: bool = False
    """Nothing needs all of them (other model sizes, helpers used where present): fetched one by one."""

    def missing(self, states: dict[str, str]) -> list[str]:
        return [n for n in self.names if states[n] not in USABLE]

    def fetch_command(self, states: dict[str, str]) -> str:
        return self.command or "storyagent weights fetch " + " ".join(self.missing(states))


def weight_groups() -> list[WeightGroup]:
    """Every weight in one group: the diffusion backend's (its conversions' needs included), the aesthetic
    review's, the metrics', and the optional rest (other sizes, helpers)."""
    from storyagent.weights import WEIGHTS
    from storyagent.weights.fetch import fetch_order

    groups = [
        WeightGroup("diffusion backend", "run --backend diffusion: the paper's storyboard (SDXL, LangSAM, AnyDoor) "
                    "and clips (DynamiCrafter)", tuple(fetch_order(list(backend_weights("diffusion")))),
                    "storyagent weights fetch --backend diffusion"),
        WeightGroup("aesthetic review", "run --review aesthetic: the LAION aesthetic predictor scores the storyboard",
                    AESTHETIC_WEIGHTS),
        WeightGroup("metrics", "storyagent eval: CLIP-score, CLIP-temp, DINO subject consistency, aesthetics",
                    METRIC_WEIGHTS),
    ]
    sound = tuple(n for n in WEIGHTS if n == "kokoro-82m" or n.startswith("piper-") or n == "stable-audio-open-1.0")
    if sound:
        # Alternatives, not a set: any one voice gives narration, the music model a score with weights.
        groups.append(WeightGroup("voices and music", "narration better than espeak-ng (Kokoro, Piper voices) and "
                                  "a text-to-music score (Stable Audio Open)", sound, optional=True))
    grouped = {n for g in groups for n in g.names}
    rest = tuple(n for n in WEIGHTS if n not in grouped)
    if rest:
        groups.append(WeightGroup("optional", "other sizes and helpers: " + ", ".join(rest) +
                                  " (doctor --verbose says what each is for)", rest, optional=True))
    return groups


def doctor(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="One row per weight, each with its fetch command.")] = False,
) -> None:
    """What works on this machine (torch, GPU, packages, weights, LLM), what each enables, and the one
    command that fetches what a missing feature needs."""
    from importlib import metadata

    from storyagent.weights import WEIGHTS, weights_state

    table = Table(title="StoryAgent doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("what it enables")
    ok, no = "[green]ok[/]", "[yellow]missing[/]"
    table.add_row("python", f"{sys.version.split()[0]}", "everything")
    torch_ok, gpu = _torch_row(table, ok, no)
    found: dict[str, bool] = {}
    for pkg, enables, get in PACKAGES:
        try:
            table.add_row(pkg, f"{ok} {metadata.version(pkg)}", enables)
            found[pkg] = True
        except metadata.PackageNotFoundError:
            table.add_row(pkg, f"{no} ({get})", enables)
            found[pkg] = False
    chromium = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
    table.add_row("chromium", f"{ok} {chromium}" if chromium else "[dim]none[/] (apt-get install chromium)",
                  "the studio's browser tests (developers only)")
    animatic_ok = found["autogen"] and found["av"]
    table.add_row("animatic backend", ok if animatic_ok else no, "the offline default: no weights, no GPU, no network")

    states = {name: weights_state(name) for name in WEIGHTS}
    if verbose:
        for name, spec in WEIGHTS.items():
            usable = states[name] in USABLE
            # One command fixes any missing piece: fetch downloads what is absent and converts what needs it.
            table.add_row(f"weights: {name}", f"{ok} {states[name]}" if usable else
                          f"{no} (storyagent weights fetch {name})", spec.purpose)
    groups = weight_groups()
    for group in groups:
        missing = group.missing(states)
        if not missing:
            status = f"{ok} all {len(group.names)}"
        elif group.optional:
            status = f"[dim]{len(missing)} of {len(group.names)} not fetched[/] (storyagent weights fetch NAME)"
        else:
            which = ", ".join(f"{n}: {states[n]}" if states[n] != "missing" else n for n in missing)
            which = f" ({which})" if len(missing) < len(group.names) else ""
            status = f"{no} {len(missing)} of {len(group.names)}{which}: {group.fetch_command(states)}"
        table.add_row(f"weights: {group.label}", status, group.enables)
    table.add_row("LLM", _llm_status(ok), "the LLM Story Designer and Observer (--llm, STORYAGENT_LLM)")
    default_voice = _sound_rows(table, ok, no)
    console.print(table)

    # The verdict: what each kind of film needs here, in one line each.
    diffusion = groups[0]
    missing = diffusion.missing(states)
    console.print("[bold]What works now[/]")
    console.print("  Animatic films: " + ("[green]ready[/] (no weights needed): storyagent demo" if animatic_ok else
                                         "[red]not ready[/]: reinstall StoryAgent (pip install -e .)"),
                  highlight=False, soft_wrap=True)
    needs = [] if torch_ok else ["torch (pip install torch)"]
    if missing:
        needs.append(f"{len(missing)} of its {len(diffusion.names)} weights, all fetched by one command: "
                     f"{diffusion.command}")
    gpu_note = "" if gpu else " (and a GPU: on this CPU a film takes hours)"
    console.print("  Diffusion films: " + (f"[yellow]need[/] {'; '.join(needs)}{gpu_note}" if needs else
                                          f"[green]ready[/]{gpu_note}"), highlight=False, soft_wrap=True)
    console.print("  Studio: " + ("[green]ready[/]: storyagent studio" if found["gradio"] else
                                  "[yellow]needs[/] gradio: pip install -e '.[studio]'"), highlight=False, soft_wrap=True)
    console.print(f"  Sound: {default_voice}", highlight=False, soft_wrap=True)


def _sound_rows(table: Table, ok: str, no: str) -> str:
    """The narration voices' and the score's rows; returns the verdict's line on sound (the default voice
    `--voice auto` takes here, and the score `--music auto` makes)."""
    from storyagent.models.music import music_engine, music_unavailable
    from storyagent.models.music.fluidsynth import INSTALL_HINT, find_soundfont, fluidsynth_binary
    from storyagent.models.voice import best_voice_spec, voice_status

    for engine, available, what in voice_status():
        label, enables = VOICE_ROWS.get(engine, (f"voice: {engine}", f"--voice {engine}"))
        table.add_row(label, f"{ok} {what}" if available else f"{no} ({what})", enables)
    synth = fluidsynth_binary()
    table.add_row("fluidsynth", f"{ok} {synth}" if synth else f"{no} ({INSTALL_HINT})",
                  "the score composed from the story (--music auto without text-to-music weights)")
    font = find_soundfont()
    table.add_row("SoundFont", f"{ok} {font}" if font else f"{no} (apt-get install fluid-soundfont-gm, or --soundfont "
                  "FILE.sf2)", "the composed score's instruments (General MIDI)")

    voice = best_voice_spec()
    said = (f"[green]narrated[/] by {voice} (the default, --voice auto)" if voice != "none" else
            "[yellow]silent[/]: no voice here (apt-get install espeak-ng, or storyagent weights fetch kokoro-82m)")
    engine = music_engine("auto")
    if engine == "none":
        score = f"[yellow]no score[/]: {music_unavailable('auto')}"
    elif engine.startswith("fluidsynth:"):
        score = "a score composed from the story, played by FluidSynth"
    else:
        score = f"a score by {engine}"
    return f"{said}; {score} (--music auto)."


def _torch_row(table: Table, ok: str, no: str) -> tuple[bool, str | None]:
    """torch's and the GPU's rows; returns whether torch imports and the GPU's name (None: no GPU)."""
    try:
        import torch
    except ImportError:
        table.add_row("torch", f"{no} (pip install torch)", "diffusion backend, fine-tuning, metrics")
        return False, None
    from storyagent.models.device import default_device

    gpu = torch.cuda.get_device_name(0) if default_device() == "cuda" else None
    table.add_row("torch", f"{ok} {torch.__version__}", "diffusion backend, fine-tuning, metrics")
    table.add_row("GPU", f"{ok} {gpu}" if gpu else "[yellow]none[/] (CPU only)", "diffusion backend at usable speed")
    return True, gpu


def _llm_status(ok: str) -> str:
    """The LLM a run uses when --llm is not given (STORYAGENT_LLM, storyagent.toml), or what is wrong with it."""
    from storyagent.agents.llm import parse_llm

    try:
        settings = parse_llm(None)
    except InputError as exc:
        return f"[red]{exc}[/]"
    return f"{ok} {settings.spec}" if settings.enabled else "[yellow]none[/] (the offline planner writes the story)"


@app.command("list")
def weights_list() -> None:
    """Every model the diffusion backend and the tools can use: its state here, size and licence."""
    from storyagent.weights import WEIGHTS, weights_state
    from storyagent.weights.registry import entry_size, human_size, load_registry

    entries = load_registry()
    table = Table()
    for col in ("name", "state", "size", "licence", "purpose"):
        table.add_column(col)
    for name, spec in WEIGHTS.items():
        size = human_size(entry_size(entries[name])) if name in entries else "-"
        table.add_row(name, weights_state(name), size, spec.licence, spec.purpose)
    console.print(table)


def backend_weights(backend: str) -> tuple[str, ...]:
    """The weights `run --backend BACKEND` loads."""
    from storyagent.tools.run import backend_class

    try:
        return backend_class(backend).weights
    except InputError as exc:
        raise fail(str(exc)) from None


def parse_configs(items: list[str], names: list[str]) -> dict[str, Path]:
    """`--config NAME=FILE` options by weights name."""
    configs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise fail(f"--config {item} is not NAME=FILE; e.g. --config anydoor=my_anydoor.json.")
        if name not in names:
            raise fail(f"--config names {name}, which this command does not fetch ({', '.join(names)}).")
        if not Path(path).expanduser().is_file():
            raise fail(f"--config {item}: {path} is not a file; give the JSON file of the model's architecture.")
        configs[name] = Path(path).expanduser().resolve()
    return configs


@app.command("fetch")
def weights_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="Names from `storyagent weights list`.")] = None,
    backend: Annotated[str | None, typer.Option(help="Fetch every model this backend needs (diffusion).")] = None,
    config: Annotated[list[str] | None, typer.Option(
        help="NAME=FILE: convert NAME with the architecture in FILE (its family's config JSON) instead of the "
             "released model's; repeatable.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Download weights (resuming a partial download), convert them once where the loader needs it, and record
    size, sha256, licence and source. Uses the network; afterwards everything runs offline."""
    from storyagent.errors import StoryAgentError
    from storyagent.models.conversion import convert_downloaded
    from storyagent.weights import WEIGHTS
    from storyagent.weights.fetch import endpoint, fetch_order, fetch_weights

    wanted = list(names or []) + list(backend_weights(backend) if backend else ())
    if not wanted:
        raise fail("Name the weights to fetch (see `storyagent weights list`) or give --backend diffusion.")
    unknown = [n for n in wanted if n not in WEIGHTS]
    if unknown:
        raise fail(f"Unknown weights {', '.join(unknown)}; see `storyagent weights list`.")
    order = fetch_order(wanted)
    configs = parse_configs(config or [], order)
    for name in order:
        spec = WEIGHTS[name]
        console.print(f"fetching {name} ({spec.repo_id}, licence: {spec.licence}) ...")
        try:
            path = fetch_weights(name, configs.get(name), show_progress=not quiet, convert=convert_downloaded)
        except KeyboardInterrupt:
            raise fail("Interrupted; run the same command again to continue the download.", 130) from None
        except StoryAgentError as exc:
            raise fail(f"Could not fetch {name}: {_first_line(exc)}") from None
        except Exception as exc:  # network and hub errors: one line, not a traceback
            if os.environ.get("STORYAGENT_DEBUG"):
                raise
            raise fail(f"Could not fetch {name} from {endpoint()} ({_first_line(exc)}); check the network, then run "
                       "the same command again.") from None
        console.print(f"  {name} -> {path}")


@app.command("verify")
def weights_verify(
    names: Annotated[list[str] | None, typer.Argument(help="Names to check; default every fetched one.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Check every file `weights fetch` recorded against its recorded size and sha256; exit 1 on a problem."""
    from storyagent.weights.fetch import byte_progress
    from storyagent.weights.registry import file_problem, load_registry, names_in, recorded_files

    entries = load_registry()
    unknown = [n for n in names or [] if n not in entries]
    if unknown:
        raise fail(f"Nothing was fetched for {', '.join(unknown)}; run `storyagent weights fetch {' '.join(unknown)}`.")
    files = [f for n in names_in(entries, names) for f in recorded_files(entries[n], n)]
    if not files:
        console.print("Nothing fetched yet; `storyagent weights fetch NAME` records what it downloads.")
        return
    problems = []
    with byte_progress(not quiet) as progress:
        task = progress.add_task("verifying", total=sum(f.size for f in files))
        for f in files:
            if problem := file_problem(f, lambda n: progress.advance(task, n)):
                problems.append((f, problem))
    for f, problem in problems:
        console.print(f"[red]{problem}[/]: {f.path} ({f.name}); fix: storyagent weights fetch {f.name}",
                      highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(f"ok: {len(files)} files match their recorded size and sha256")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
