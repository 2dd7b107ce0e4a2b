"""The `storyagent` command line."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from storyagent import __version__
from storyagent.agents.playback import NO_PLAY_ENV
from storyagent.commands import fail
from storyagent.commands.help_text import tidy_help
from storyagent.errors import InputError, StoryAgentError
from storyagent.progress import console

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

app = typer.Typer(
    name="storyagent",
    help=(
        "StoryAgent: a storytelling film of your own character from a prompt and a few photos or clips.\n\n"
        "Quick start:\n\n"
        "  storyagent demo\n\n"
        "  storyagent run \"a day at the seaside\" --subject my_cat.mp4 --name Tom --out runs/tom\n\n"
        "Runs offline by default (the CPU 'animatic' backend, no weights, no LLM). "
        "Every run folder is resumable: add --resume to continue or to redo only what changed."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        print(f"storyagent {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Options of `storyagent` itself (the commands have their own)."""


def _mount_commands() -> None:
    """Sub-command groups that live beside their code (eval metrics, fine-tuning)."""
    from storyagent.commands.eval import app as eval_app
    from storyagent.commands.finetune_storyboard import finetune_storyboard
    from storyagent.commands.finetune_video import finetune_video
    from storyagent.commands.weights import app as weights_app
    from storyagent.commands.weights import doctor

    app.add_typer(eval_app, name="eval", help="Score runs with the paper's metrics and compare runs or methods.")
    finetune_app = typer.Typer(help="Teach the models your character (needs weights; a GPU for real use).",
                               no_args_is_help=True)
    finetune_app.command("storyboard")(finetune_storyboard)
    finetune_app.command("video")(finetune_video)
    app.add_typer(finetune_app, name="finetune")
    app.command()(doctor)
    app.add_typer(weights_app, name="weights")
    app.command()(__import__("storyagent.studio.command", fromlist=["studio"]).studio)  # gradio imported on use


def default_name(subject: Path) -> str:
    stem = subject.stem if subject.suffix else subject.name
    words = [w for w in re.split(r"[\W_]+", stem) if w and not w.isdigit()]
    return " ".join(w[:1].upper() + w[1:] for w in words[:3]) or "Hero"


def default_out(prompt: str, resume: bool) -> Path:
    """`runs/<prompt-slug>`; a new run never lands in a folder that already holds one."""
    from storyagent.fileio import slugify
    from storyagent.manifest import read_run

    def taken(folder: Path) -> bool:
        try:
            return read_run(folder) is not None
        except StoryAgentError:  # a damaged manifest: someone's run, left for them to look at
            return True

    base = Path("runs") / slugify(prompt)
    if resume or not taken(base):
        return base
    n = 2
    while taken(base.with_name(f"{base.name}-{n}")):
        n += 1
    return base.with_name(f"{base.name}-{n}")


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled as Ctrl-C is (finished work kept, a message, no traceback)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signum)


def interrupted(exc: BaseException) -> tuple[str, int]:
    """How to report an interruption: the words, and the exit status a shell expects (128 + signal)."""
    if isinstance(exc, Stopped):
        return f"Stopped by {exc}.", 128 + exc.signum
    return "Interrupted.", 128 + signal.SIGINT


SOUND_DEFAULT = " Default: auto, or {0} = \"...\" in storyagent.toml."


def sound_settings(voice: str | None, music: str | None, soundfont: Path | None) -> dict[str, object]:
    """The sound settings given, each left out taken from storyagent.toml (`voice = "espeak"`), else left to
    RunConfig's default (auto, auto, none)."""
    from storyagent.agents.llm import file_setting

    given: dict[str, object] = {"voice": voice, "music": music, "soundfont": soundfont}
    for key, value in given.items():
        if value is None and (kept := file_setting(key)) is not None:
            given[key] = Path(kept).expanduser() if key == "soundfont" else kept
    return {k: v for k, v in given.items() if v is not None}


def cast_settings(subjects: list[str], class_words: list[str], name: str | None,
                  cast_file: Path | None) -> dict[str, object]:
    """The run settings of the cast the command line gives (`--subject`, `--class-word`, `--name` or `--cast`):
    the lead as `subject`, `name`, `class_word` (and its mask and voice, from a cast file), the others as
    `supporting`."""
    from storyagent.cast import cast_from_options, read_cast_file

    if cast_file is not None and subjects:
        raise InputError("Give the cast either as --cast FILE or as --subject options, not both.")
    if cast_file is not None:
        cast = read_cast_file(cast_file)
    elif subjects:
        plain = subjects[0].partition("=")[2] or subjects[0]
        cast = cast_from_options(subjects, class_words, name, default_name(Path(plain)))
    else:
        raise InputError("Say who the film is about: --subject PHOTO_OR_VIDEO (or --cast cast.toml); "
                         "try `storyagent demo` for a ready-made example.")
    lead, *supporting = cast
    settings: dict[str, object] = {"subject": lead.media, "name": lead.name, "class_word": lead.class_word,
                                   "supporting": supporting}
    if lead.mask is not None:
        settings["mask"] = lead.mask
    if lead.voice is not None:
        settings["lead_voice"] = lead.voice
    return settings


def _help(name: str) -> str:
    from storyagent.config import field_help

    return field_help(name)


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help=_help("prompt"))],
    subject: Annotated[Optional[list[str]], typer.Option("--subject", "-s", help=_help("subject") + " For a cast, once per character as NAME=PATH.")] = None,
    name: Annotated[Optional[str], typer.Option(help=_help("name") + " (default: from the file name)")] = None,
    class_word: Annotated[Optional[list[str]], typer.Option("--class-word", help=_help("class_word") + " For a cast, NAME=WORD per character.")] = None,
    cast: Annotated[Optional[Path], typer.Option("--cast", help="A cast.toml of several characters ([[character]] with name, class_word, media, and optionally mask and voice), instead of --subject.")] = None,
    shots: Annotated[int, typer.Option(help=_help("shots"))] = 4,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/<prompt>).")] = None,
    seed: Annotated[int, typer.Option(help=_help("seed"))] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out: reuse finished work, redo what changed.")] = False,
    mask: Annotated[Optional[Path], typer.Option(help=_help("mask"))] = None,
    backend: Annotated[str, typer.Option(help=_help("backend"))] = "animatic",
    width: Annotated[int, typer.Option(help=_help("width"))] = 512,
    height: Annotated[int, typer.Option(help=_help("height"))] = 320,
    fps: Annotated[float, typer.Option(help=_help("fps"))] = 8.0,
    shot_duration: Annotated[float, typer.Option("--shot-duration", "--duration", help=_help("shot_duration"))] = 2.5,
    steps: Annotated[Optional[int], typer.Option(help=_help("steps"))] = None,
    finetune: Annotated[str, typer.Option(help=_help("finetune"))] = "auto",
    finetune_preset: Annotated[str, typer.Option("--finetune-preset", help=_help("finetune_preset"))] = "paper",
    anydoor_steps: Annotated[Optional[int], typer.Option("--anydoor-steps", help=_help("anydoor_steps"))] = None,
    lora_be_epochs: Annotated[Optional[int], typer.Option("--lora-be-epochs", help=_help("lora_be_epochs"))] = None,
    video_adapter: Annotated[Optional[Path], typer.Option("--video-adapter", "--adapter", help=_help("video_adapter"))] = None,
    low_vram: Annotated[bool, typer.Option("--low-vram", help=_help("low_vram"))] = False,
    video_model: Annotated[str, typer.Option("--video-model", help=_help("video_model"))] = "dynamicrafter-512",
    voice: Annotated[Optional[str], typer.Option(help=_help("voice") + SOUND_DEFAULT.format("voice"))] = None,
    music: Annotated[Optional[str], typer.Option(help=_help("music") + SOUND_DEFAULT.format("music"))] = None,
    soundfont: Annotated[Optional[Path], typer.Option(help=_help("soundfont"))] = None,
    llm: Annotated[Optional[str], typer.Option(help="none | openai:MODEL | ollama:MODEL | openai-compatible:MODEL@URL | OAI_CONFIG_LIST path (default: STORYAGENT_LLM or none).")] = None,
    review: Annotated[str, typer.Option(help=_help("review"))] = "none",
    min_score: Annotated[float, typer.Option("--min-score", help=_help("min_score"))] = 5.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the agents' chat.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Make a film: story → storyboard → animated shots → film.mp4 in the run folder.

    Every option but --out, --resume, --llm, --verbose and --quiet is a field of the run's settings
    (`RunConfig`), under the same name, and is checked once before anything is made.

    Examples:

      storyagent run "a day at the seaside" --subject pip.png

      storyagent run "lost in the city at night" -s cat.mp4 --name Tom --class-word cat --shots 6 --out runs/tom

      storyagent run "lost in the city at night" -s cat.mp4 --out runs/tom --resume   # after editing runs/tom/story.json

      storyagent run "a rainy day" -s cat.mp4 --name Tom --class-word cat --backend diffusion   # GPU: learns Tom once (cached)

      storyagent run "a day at the seaside" -s pip.png --voice espeak --music none   # narrated, no score

      storyagent run "two friends build a raft" -s Pip=pip/ -s Mo=mo.png --class-word Pip=fox --class-word Mo=owl

      storyagent run "two friends build a raft" --cast cast.toml   # the same cast, from a file
    """
    settings = {k: v for k, v in locals().items() if k not in ("out", "resume", "llm", "verbose", "quiet", "cast")}
    try:
        settings |= cast_settings(subject or [], class_word or [], name, cast)
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    settings |= sound_settings(settings.pop("voice"), settings.pop("music"), settings.pop("soundfont"))
    folder = out if out is not None else default_out(prompt, resume)
    _make_film(folder, resume, llm, quiet, verbose, **settings)


def _make_film(folder: Path, resume: bool, llm: str | None, quiet: bool, verbose: bool, own_story_only: bool = False,
               **settings: object) -> None:
    """Validate the settings, run the crew, print where the film is; one sentence on any user error.

    `own_story_only` (the demo): refuse a folder that holds a run of another story.
    """
    from storyagent.agents.crew import run_crew
    from storyagent.agents.llm import parse_llm
    from storyagent.config import RunConfig

    try:
        llm_settings = parse_llm(llm)
        cfg = RunConfig.build(**settings, llm=llm_settings.spec)
        if own_story_only:
            _refuse_another_story(folder, cfg.inputs_record())
        result = run_crew(cfg, folder, resume=resume, show_progress=not quiet, llm=llm_settings, verbose=verbose)
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    except (KeyboardInterrupt, EOFError) as exc:
        words, status = interrupted(exc)
        console.print(f"\n[yellow]{words}[/] Finished work is kept in {folder}; continue with the same command plus "
                      f"--out {folder} --resume.", highlight=False, soft_wrap=True)
        raise typer.Exit(status) from None
    _summary(result)


def _refuse_another_story(folder: Path, inputs: dict[str, object]) -> None:
    """The demo resumes its own run in `folder`, and never writes over a run made with other inputs.

    The number of shots may differ: that is the demo at another length, not someone's story.
    """
    from storyagent.manifest import read_run

    run = read_run(folder)
    if run is not None and {k: v for k, v in run.inputs.items() if k != "shots"} != \
            {k: v for k, v in inputs.items() if k != "shots"}:
        raise InputError(f"{folder} holds a run of another story, which the demo never writes over; "
                         "give the demo another --out.")


def _summary(result) -> None:
    root = result.root
    if result.film is None:
        console.print(f"[yellow]Stopped before the film.[/] The work so far is in {root}; continue with --resume.",
                      highlight=False)
        return
    console.print(f"[bold green]Done:[/] {result.script.title!r}, {len(result.clips)} shots, "
                  f"{result.film.num_frames / result.film.fps:.1f} s", highlight=False)
    for label, rel in (("film", "film.mp4"), ("storyboard", "storyboard.png"), ("story", "story.json"),
                       ("manifest", "manifest.json")):
        console.print(f"  {label:<11}{root / rel}", highlight=False, soft_wrap=True)  # a path is never broken


@app.command()
def chat(
    prompt: Annotated[Optional[str], typer.Argument(help="The story idea; asked for when left out.")] = None,
    subject: Annotated[Optional[list[str]], typer.Option("--subject", "-s", help="Photo, video or folder of your character; asked for when left out (then you may add more characters). For a cast, once per character as NAME=PATH.")] = None,
    name: Annotated[Optional[str], typer.Option(help="The character's name (asked for; default: from the file name).")] = None,
    class_word: Annotated[Optional[list[str]], typer.Option("--class-word", help="What the character is: fox, cat, toy ... (asked for). For a cast, NAME=WORD per character.")] = None,
    cast: Annotated[Optional[Path], typer.Option("--cast", help="A cast.toml of several characters (see `run --help`), instead of --subject.")] = None,
    shots: Annotated[Optional[int], typer.Option(help="Number of shots, 1-32 (asked for; default 4).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/<prompt>).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Same seed, same film (default 0).")] = None,
    llm: Annotated[Optional[str], typer.Option(help="LLM for the Story Designer and the manager (see `run --help`).")] = None,
    voice: Annotated[Optional[str], typer.Option(help=_help("voice") + SOUND_DEFAULT.format("voice"))] = None,
    music: Annotated[Optional[str], typer.Option(help=_help("music") + SOUND_DEFAULT.format("music"))] = None,
    soundfont: Annotated[Optional[Path], typer.Option(help=_help("soundfont"))] = None,
    no_play: Annotated[bool, typer.Option("--no-play", help=f"Do not play the narration at the reviews (the files are "
                                                            f"still named); also {NO_PLAY_ENV}=1.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Pick up the conversation and the work in --out, with the inputs it was started with.")] = False,
) -> None:
    """Make a film together with the crew: you are the Observer and review every stage.

    Without --subject or --cast you are asked for your character, then whether to add another
    (its photo, name and class word), until you say no: the film then has that cast.

    At each review type: ok (go on), redo 2,4: what to change (only those shots are redone),
    any other feedback (the whole stage is redone with it), render (approve the rest), or quit.
    Your words change what they ask at any stage: "redo 3: make it night" at the clips redraws
    shot 3's picture at night first, then animates it. Words about the voice ("redo 2: say it slower",
    "redo 2: happier") speak shot 2's line again that way and change nothing else. At the story review
    each shot's line is spoken and played (ffplay, aplay or paplay, when one is installed).

    Examples:

      storyagent chat "a day at the seaside" --subject pip.png --name Pip --class-word fox

      storyagent chat "two friends build a raft" --cast examples/cast.toml

      storyagent chat --out runs/pip --resume     # every input comes back from the run folder
    """
    from storyagent.agents.crew import TRANSCRIPT

    console.print("[bold]StoryAgent chat[/]: the crew writes, draws and animates; you review each stage.")
    if no_play:
        os.environ[NO_PLAY_ENV] = "1"  # read by the human Observer, which plays the lines
    given = {"prompt": prompt, "subject": subject or [], "name": name, "class_word": class_word or [],
             "cast": cast, "shots": shots, "seed": seed, "voice": voice, "music": music, "soundfont": soundfont}
    try:
        settings, llm = _chat_settings(given, out, resume, llm)
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    except (KeyboardInterrupt, EOFError) as exc:
        raise typer.Exit(interrupted(exc)[1]) from None
    folder = out if out is not None else default_out(str(settings["prompt"]), resume)
    if resume and (folder / TRANSCRIPT).exists():
        _show_previous_session(folder / TRANSCRIPT)
    _make_film(folder, resume, llm, quiet=False, verbose=False, **{**settings, "review": "human"})


CAST_OPTIONS = ("subject", "name", "class_word", "cast")
"""The chat's options that say who the film is about."""


def _chat_settings(given: dict[str, object], out: Path | None, resume: bool,
                   llm: str | None) -> tuple[dict[str, object], str | None]:
    """The chat's run settings: on --resume, the run's own inputs (options given now win); otherwise
    what was given, asking for the rest."""
    from rich.prompt import IntPrompt, Prompt

    from storyagent.manifest import read_run

    stored = read_run(out) if resume and out is not None else None
    if stored is not None:
        inputs = {k: v for k, v in stored.inputs.items() if k not in ("review", "llm")}
        now = {k: v for k, v in given.items() if v not in (None, []) and k not in CAST_OPTIONS}
        if given["subject"] or given["cast"]:
            now |= cast_settings(given["subject"], given["class_word"], given["name"], given["cast"])
        settings = {**inputs, **now}
        names = [settings["name"], *(m["name"] if isinstance(m, dict) else m.name for m in settings.get("supporting", []))]
        console.print(f"Resuming {out}: {' and '.join(map(repr, names))}, {settings['shots']} shots, story idea "
                      f"{settings['prompt']!r}.", highlight=False, soft_wrap=True)
        return settings, llm if llm is not None else str(stored.inputs.get("llm", "none"))
    subjects, words = list(given["subject"]), list(given["class_word"])
    if given["cast"] is not None or len(subjects) > 1 or any(_named_value(v) for v in subjects + words):
        # A whole cast on the command line: nothing about the characters is asked.
        cast: dict[str, object] = cast_settings(subjects, words, given["name"], given["cast"])
        prompt = str(given["prompt"] or "")
        while not prompt.strip():
            prompt = Prompt.ask("What is the story about?", console=console)
    else:
        subject = Path(subjects[0]) if subjects else None
        while subject is None or not subject.exists():
            if subject is not None:
                console.print(f"[red]{subject} does not exist.[/]")
            subject = Path(Prompt.ask("Photo, video or folder of your character", console=console).strip())
        prompt = str(given["prompt"] or "")
        while not prompt.strip():
            prompt = Prompt.ask("What is the story about?", console=console)
        name = given["name"] or Prompt.ask("The character's name", default=default_name(subject), console=console)
        class_word = words[0] if words else Prompt.ask("What is it (cat, fox, toy ...)", default="character",
                                                       console=console)
        cast = {"subject": subject, "name": name, "class_word": class_word}
        if not subjects:  # the character was asked for, so the rest of the cast is asked for too
            cast["supporting"] = _ask_supporting(name, class_word, subject)
    shots = given["shots"]
    while shots is None or not 1 <= int(shots) <= 32:
        shots = IntPrompt.ask("How many shots (1-32)", default=4, console=console)
    sound = sound_settings(given.get("voice"), given.get("music"), given.get("soundfont"))
    return {"prompt": prompt, **cast, "shots": shots, "seed": given["seed"] or 0, **sound}, llm


def _named_value(value: str) -> bool:
    """Whether a --subject or --class-word value is the NAME=VALUE form of a cast."""
    from storyagent.cast import _named

    return _named(value) is not None and not Path(value).exists()


def _ask_supporting(lead: str, lead_word: str, lead_media: Path) -> list[object]:
    """The rest of the cast, asked one character at a time (media, name, class word) until the answer to
    "another?" is no; each is checked as the run will check it, and asked again when refused."""
    from rich.prompt import Prompt

    from storyagent.cast import MAX_CAST, CastMember, check_cast
    from storyagent.media.reading import media_files

    cast = [CastMember.model_construct(name=lead, class_word=lead_word, media=lead_media, mask=None, voice=None)]
    while len(cast) < MAX_CAST and _yes("Add another character?"):
        number = len(cast) + 1
        while True:
            media = Path(Prompt.ask(f"Photo, video or folder of character {number}", console=console).strip())
            try:
                media_files(media)
                break
            except StoryAgentError as exc:
                console.print(f"[red]{exc}[/]", highlight=False)
        while True:
            name = Prompt.ask(f"Character {number}'s name", default=default_name(media), console=console).strip()
            word = Prompt.ask(f"What is {name} (cat, owl, toy ...)", default="character", console=console)
            try:
                member = CastMember(name=name, class_word=word, media=media)
                check_cast([*cast, member])
                break
            except (StoryAgentError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
                console.print(f"[red]{_one_line(exc)}[/]", highlight=False)
        cast.append(member)
        console.print(f"The cast: {', '.join(f'{m.name} the {m.class_word}' for m in cast)}.", highlight=False)
    return cast[1:]


def _yes(question: str) -> bool:
    """A yes or no to `question` (no when the answer is left empty); asked again until it is one of them."""
    from rich.prompt import Prompt

    while True:
        answer = Prompt.ask(f"{question} (y/n)", default="n", show_default=True, console=console).strip().lower()
        if answer in ("y", "yes", "n", "no"):
            return answer.startswith("y")
        console.print("[red]Please answer y or n.[/]")


def _one_line(exc: Exception) -> str:
    from pydantic import ValidationError

    from storyagent.schemas import format_validation_error

    return format_validation_error(exc, "that character") if isinstance(exc, ValidationError) else str(exc)


def _show_previous_session(path: Path) -> None:
    import json

    try:
        sessions = json.loads(path.read_text(encoding="utf-8")).get("sessions", [])
    except (OSError, ValueError):
        return
    if not sessions:
        return
    console.print(f"[dim]Last time ({len(sessions)} session(s)):[/]")
    for m in sessions[-1]["messages"][-6:]:
        text = str(m.get("content") or (m.get("tool_calls") and f"[tool] {m['tool_calls'][0]['name']}") or "")
        console.print(f"[dim]  {m.get('speaker')}: {text[:100]}[/]", highlight=False)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/demo"),
    shots: Annotated[int, typer.Option(help="Number of shots.")] = 4,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Make a 4-shot film of Pip, the example fox shipped in examples/pip (about 5 s on a laptop)."""
    subject = EXAMPLES_DIR / "pip"
    if not subject.exists():
        raise fail(f"The example subject {subject} is missing; reinstall from a source checkout.")
    _make_film(out, resume=True, llm="none", quiet=quiet, verbose=False, own_story_only=True,
               prompt="a day at the seaside", subject=subject, name="Pip", class_word="fox", shots=shots)


@app.command()
def batch(
    jobs: Annotated[Path, typer.Argument(help="The jobs file: TOML (\\[defaults] and one \\[\\[film]] table per film) "
                                              "or JSON Lines (one film per line).")],
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="auto|ADDRESS",
        help="Make the shots on a Ray cluster: auto (the cluster `ray start` made on this machine) or its address "
             "(10.0.0.5:6379). Left out: the films are made here, one after another, without Ray.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder of the films' run folders, for films without their own out (default: beside the jobs file, "
             "named after it). On a cluster: a folder every node sees.")] = None,
    films_at_once: Annotated[Optional[int], typer.Option(
        "--films-at-once", min=1, help="With --ray: how many films' crews the driver runs at once (default: the "
                                       "cluster's CPUs and GPUs, at most 16).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar (the line per film stays).")] = False,
) -> None:
    """Make many films from one jobs file: here, one after another, or on a Ray cluster (--ray).

    Each film is what `storyagent run` makes, in its own run folder. A film
    takes out (its run folder) and any setting of `storyagent run` under its
    field name: prompt, subject, name, class_word, shots, seed, backend,
    width, height, fps, review ... \\[defaults] holds the settings every film
    shares. Paths are relative to the jobs file.

    Every film is checked before anything is made: a wrong one is named by
    its number and nothing starts. Review is none, rules, aesthetic or llm (a
    person reviews with `storyagent chat`). Running the same command again
    continues: finished films and shots are reused.

    A jobs file, films.toml; its films go to films/01_a-day-at-the-seaside,
    films/02_a-rainy-afternoon-in-the-garden and runs/tom:

      \\[defaults]
      shots = 4
      review = "rules"

      \\[\\[film]]
      prompt = "a day at the seaside"
      subject = "pip.png"
      name = "Pip"
      class_word = "fox"

      \\[\\[film]]
      prompt = "a rainy afternoon in the garden"
      subject = "pip.png"
      name = "Pip"
      class_word = "fox"

      \\[\\[film]]
      prompt = "lost in the city at night"
      subject = "cat.mp4"
      name = "Tom"
      out = "runs/tom"

    Or films.jsonl: one JSON object per line, one line per film, with the
    same settings ("prompt", "subject", "name" ...; no defaults).

    Examples:

      storyagent batch films.toml

      storyagent batch films.toml --ray auto     # the cluster this machine joined

      storyagent batch films.toml --ray 10.0.0.5:6379 --out /shared/films
    """
    from storyagent.agents.crew import run_crew
    from storyagent.agents.llm import default_spec, parse_llm
    from storyagent.tools.batch import BatchExecutor, read_jobs, run_batch

    def check(cfg) -> None:
        if cfg.review == "llm" and not parse_llm(cfg.llm).enabled:
            raise InputError("review 'llm' needs an LLM: set llm (a vision-capable model) or choose rules")

    try:
        films = read_jobs(jobs, default_name=default_name, out=out, check=check,
                          settings={"llm": default_spec(), **sound_settings(None, None, None)})
        if ray is None:
            executor, at_once = BatchExecutor(), 1
        else:
            from storyagent.tools.cluster import connect
            from storyagent.tools.ray_tasks import RayExecutor

            cluster = connect(ray)
            signal.signal(signal.SIGTERM, _stop)  # Ray's driver sets its own; a batch stops as `run` does
            executor = RayExecutor(cluster)
            resources = cluster.cluster_resources()
            at_once = films_at_once or max(1, min(16, int(resources.get("CPU", 1) + resources.get("GPU", 0))))
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    where = f"on the Ray cluster at {ray}, {at_once} at once" if ray is not None else "here, one after another"
    console.print(f"[bold]storyagent batch[/]: {len(films)} films {where}.", highlight=False)

    def make(job) -> bool:
        result = run_crew(job.config, job.out, resume=True, show_progress=False, executor=executor)
        return result.film is not None

    try:
        done = run_batch(films, make, at_once=at_once, show_progress=not quiet)
    except (KeyboardInterrupt, EOFError) as exc:
        words, status = interrupted(exc)
        console.print(f"\n[yellow]{words}[/] Finished films and shots are kept; run the same command again to "
                      "continue.", highlight=False, soft_wrap=True)
        raise typer.Exit(status) from None
    failed = [d for d in done if d.error]
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(done)} films failed[/] (film "
                      f"{', '.join(str(d.job.number) for d in failed)}); finished work is kept: run the same command "
                      "again to continue.", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[bold green]Done:[/] {len(done)} films.", highlight=False)


def main() -> None:
    # A closed terminal (SIGHUP) or `kill`/a scheduler (SIGTERM) stops a run as Ctrl-C does: the
    # exception unwinds through the atomic writers, so no temp file is left and finished work is kept.
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop)
    _mount_commands()
    command = tidy_help(typer.main.get_command(app))
    try:
        command(prog_name="storyagent")
    except StoryAgentError as exc:
        sys.exit(fail(str(exc)).exit_code)
    except KeyboardInterrupt as exc:
        words, status = interrupted(exc)
        console.print(f"\n[yellow]{words}[/]")
        sys.exit(status)
    except Exception as exc:  # a bug: one line to the user, the traceback only on request
        if os.environ.get("STORYAGENT_DEBUG"):
            raise
        console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}. "
                      "Set STORYAGENT_DEBUG=1 for the traceback and report it.", highlight=False, soft_wrap=True)
        sys.exit(1)
