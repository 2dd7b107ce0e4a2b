"""The studio page: start a film or reopen one, then review each stage as the human Observer.

Each browser tab keeps its own run id in `gr.State`; the runs themselves live in `Studio.sessions`
(one `RunSession` per run folder, so two tabs on one run see the same crew). A timer polls the
session and the manifest; the galleries are only sent again when something changed.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr

from storyagent.agents.lines import SPEECH, voice_only
from storyagent.cast import MAX_CAST, CastMember
from storyagent.config import RunConfig, field_help
from storyagent.errors import InputError, StoryAgentError
from storyagent.studio.runs import (AUDIO_SUFFIXES, CACHE, STORY_COLUMNS, check_llm, check_track, check_uploads,
                                    clip_poster, cutout_preview, earlier_runs, new_run_id, run_folder, run_inputs,
                                    save_story_edits, store_track, store_uploads, story_rows, uploads_folder)
from storyagent.studio.session import RunSession, View
from storyagent.tools.run import BACKENDS, backend_class
from storyagent.workspace import Workspace

STAGE_NAMES = {"story": "the story", "storyboard": "the storyboard", "video": "the clips"}
VIEWS = 12
"""How many outputs the timer's refresh updates."""
VOICE_CHOICES = ["auto", "espeak", "none"]
"""The voices offered in the list; any other spec (piper:VOICE, kokoro:VOICE, openai:VOICE ...) can be typed."""
MUSIC_INFO = "auto: a score made for the story; none: no music. Or upload your own track beside."
NARRATION = "audio/narration_{:02d}.wav"
"""Shot N's spoken line in a run folder (the sound stage's stem)."""
CUTOUTS_LABEL = "Cut-outs"
OTHERS = MAX_CAST - 1
"""The page's slots for the rest of the cast (characters 2 to MAX_CAST), shown one at a time."""
SENT = "Sent:"
"""How the page's message starts when an answer reached the crew."""
POSTERS_JS = """() => {
    // Gradio's gallery has no poster for a video; each clip's poster (its first frame) is listed in the
    // hidden #clip_posters element by the clip's file name, and set on every player showing that clip.
    const apply = () => {
        const posters = {};
        document.querySelectorAll('#clip_posters [data-clip]').forEach(e => { posters[e.dataset.clip] = e.dataset.poster; });
        document.querySelectorAll('#clips video').forEach(v => {
            const name = decodeURIComponent((v.getAttribute('src') || '').split('?')[0].split('/').pop());
            const poster = posters[name];
            if (poster && v.getAttribute('poster') !== poster) v.setAttribute('poster', poster);
        });
    };
    new MutationObserver(apply).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                        attributeFilter: ['src', 'data-poster']});
    apply();
}"""


def _say(exc: Exception) -> str:
    return f"**{exc}**"


class Studio:
    """The runs folder and the runs this server drives."""

    def __init__(self, runs: Path) -> None:
        self.runs = runs.resolve()
        self.runs.mkdir(parents=True, exist_ok=True)
        self.posters = self.runs / CACHE / "posters"
        self.sessions: dict[str, RunSession] = {}
        self._lock = threading.Lock()

    def session(self, run_id: str | None) -> RunSession:
        found = self.sessions.get(run_id or "")
        if found is None:
            raise InputError("No film is open in this tab; start a new one or reopen an earlier run.")
        return found

    # ---- starting and reopening -------------------------------------------------------------

    def preview(self, files: list[str] | None) -> tuple[Any, str]:
        """The uploads' cut-outs as one picture (labelled with how each was cut), and a message."""
        if not files:
            return gr.update(value=None, label=CUTOUTS_LABEL), ""
        try:
            strip, caption = cutout_preview(check_uploads(files))
            return gr.update(value=strip, label=f"{CUTOUTS_LABEL} ({caption})" if caption else CUTOUTS_LABEL), ""
        except InputError as exc:
            return gr.update(value=None, label=CUTOUTS_LABEL), _say(exc)

    def list_runs(self) -> Any:
        """The "Earlier runs" choices as the runs folder holds them now (runs made since the server
        started included, by this page, another tab or `storyagent run --out` into the folder)."""
        return gr.update(choices=earlier_runs(self.runs))

    def start(self, files: list[str] | None, prompt: str, name: str, class_word: str, shots: float, backend: str,
              llm: str, review: str, width: float, height: float, fps: float, seed: float, voice: str = "auto",
              music: str = "auto", track: str | None = None, *others: Any) -> tuple[str | None, str]:
        """A new run folder holding the uploads, and its crew started; (run id, message). `track`: the
        user's own music, uploaded; it is the score whatever `music` says. `others`: the rest of the
        cast as (uploads, name, class word) per character slot, flat; an empty slot is no character."""
        try:
            uploads = check_uploads(files)
            cast = _other_characters(others)
            own_track = check_track(track)
            given = dict(prompt=prompt, name=(name or "").strip() or Path(uploads[0]).stem.title(),
                         class_word=(class_word or "").strip() or "character", shots=int(shots or 0),
                         backend=backend, llm=(llm or "").strip() or "none", review=review, width=int(width or 0),
                         height=int(height or 0), fps=float(fps or 0), seed=int(seed or 0),
                         voice=(voice or "").strip() or "auto", music=(music or "").strip() or "auto")
            if own_track is not None:
                given["music"] = str(own_track)
            # Every setting is checked, and the backend's weights looked for, before a folder is made.
            probe = RunConfig.build(subject=uploads[0], supporting=[
                CastMember(name=who, class_word=word, media=_first_media(paths)) for paths, who, word in cast], **given)
            check_llm(probe.llm)
            backend_class(probe.backend)(probe).check()
            with self._lock:
                run_id = new_run_id(self.runs, prompt)
                folder = run_folder(self.runs, run_id)
                Workspace.open(folder, {}, resume=False).close()  # the folder is a run's from now on
            if own_track is not None:
                given["music"] = str(store_track(own_track, folder))
            supporting = [CastMember(name=who, class_word=word, media=store_uploads(paths, folder, uploads_folder(n)))
                          for n, (paths, who, word) in enumerate(cast, 2)]
            cfg = RunConfig.build(subject=store_uploads(uploads, folder), supporting=supporting, **given)
            return self._launch(run_id, RunSession(folder, cfg)), f"Started **{run_id}**."
        except StoryAgentError as exc:
            return None, _say(exc)

    def reopen(self, run_id: str) -> tuple[str | None, str]:
        """Resume an earlier run with the inputs it was started with (as `chat --resume` does)."""
        try:
            folder = run_folder(self.runs, run_id)
            with self._lock:
                live = self.sessions.get(run_id)
                if live is not None and live.alive:
                    return run_id, f"**{run_id}** is already open; here it is."
            inputs = run_inputs(folder)
            settings = {k: v for k, v in inputs.items() if k in RunConfig.model_fields and k != "review"}
            cfg = RunConfig.build(**settings, review="human")
            return self._launch(run_id, RunSession(folder, cfg, resume=True)), f"Reopened **{run_id}**."
        except StoryAgentError as exc:
            return None, _say(exc)

    def _launch(self, run_id: str, session: RunSession) -> str:
        with self._lock:
            self.sessions[run_id] = session
        session.start()
        return run_id

    # ---- the review ---------------------------------------------------------------------------

    def answer(self, run_id: str | None, text: str, table: Any = None) -> str:
        try:
            session = self.session(run_id)
            view = session.view()
            if view.stage == "story" and table is not None and text == "ok":
                # The crew takes the story on disk, so the table's edits are approved with it.
                save_story_edits(session.root, table.values.tolist() if hasattr(table, "values") else list(table))
            session.answer(text)
            return f"{SENT} `{text}`"
        except StoryAgentError as exc:
            return _say(exc)

    def redo_shot(self, run_id: str | None, shot: str | float | None, words: str) -> str:
        given = str(shot if shot is not None else "").strip()
        if not given:
            return _say(InputError("Select a shot in the grid (or type its number) to redo it."))
        if not given.isdigit():
            return _say(InputError(f"{given!r} is not a shot number; select a shot in the grid or type its number."))
        return self.answer(run_id, f"redo {int(given)}: {(words or '').strip()}".rstrip(": "))

    def redo_line(self, run_id: str | None, shot: str | float | None, words: str) -> str:
        """Shot N's line said again the way `words` ask ("slower", "happier"); words about anything else
        are refused here, since this button changes only how the line sounds."""
        given = str(shot if shot is not None else "").strip()
        if not given.isdigit():
            return self.redo_shot(run_id, given, words)  # its sentence for a missing or bad shot number
        said = (words or "").strip()
        if not voice_only(said):
            return _say(InputError(f"Say how shot {int(given)}'s line should sound, e.g. slower, faster, happier, "
                                   "sadder, louder, softer, calmer, higher or lower (to change its words, use "
                                   "\"Redo this shot\")."))
        if not SPEECH.search(said.lower()):
            said = f"say it {said}"  # at the storyboard or the clips, "slower" alone would be about the picture
        return self.answer(run_id, f"redo {int(given)}: {said}")

    def redo_stage(self, run_id: str | None, words: str) -> str:
        return self.answer(run_id, (words or "").strip() or "redo")

    def sent(self, message: str) -> tuple[str, Any, Any]:
        """`message` for the page, and the redo fields (shot, words): emptied once an answer reached
        the crew, so the next stage does not open with this stage's redo; kept when it was refused."""
        if message.startswith(SENT):
            return message, "", ""
        return message, gr.skip(), gr.skip()

    def refresh(self, run_id: str | None, shown: str) -> list[Any]:
        """The page's view of the run; every output skipped while nothing changed since `shown`."""
        session = self.sessions.get(run_id or "")
        if session is None:
            return [gr.skip()] * VIEWS
        view = session.view()
        manifest = session.root / "manifest.json"
        stamp = f"{view.state}|{view.stage}|{view.question}|{manifest.stat().st_mtime_ns if manifest.exists() else 0}"
        if stamp == shown:
            return [gr.skip()] * VIEWS
        root = session.root
        board = [(str(p), f"shot {i}") for i, p in _numbered(root / "storyboard", "shot_{:02d}.png", session.cfg.shots)]
        numbered_clips = _numbered(root / "shots", "shot_{:02d}.mp4", session.cfg.shots)
        clips = [(str(p), f"shot {i}") for i, p in numbered_clips]
        table = gr.update(value=story_rows(root), visible=True) if (root / "story.json").is_file() else gr.update()
        film = str(view.film) if view.film else None
        # The film's subtitles as a <track> of its player (soft subtitles), when the run wrote them.
        vtt = view.film.with_suffix(".vtt") if view.film else None
        player = gr.update(value=film, subtitles=str(vtt) if vtt is not None and vtt.is_file() else None)
        # A run that ends (here or in another tab) belongs in "Earlier runs" at once.
        earlier = self.list_runs() if view.state in ("done", "stopped", "failed") else gr.skip()
        lines = line_players(root, session.cfg.shots) if view.stage in ("story", "video") or view.film else ""
        return [_status(run_id, view), _question(view), table, board, clips, self._posters(root, numbered_clips),
                gr.update(value=lines, visible=bool(lines)), player, gr.update(value=film, visible=film is not None),
                gr.update(visible=view.state == "review"), earlier, stamp]

    def _posters(self, root: Path, clips: list[tuple[int, Path]]) -> str:
        """The hidden list the page's script reads: each clip's file name and the address of its poster."""
        items = []
        for _, clip in clips:
            try:
                poster = clip_poster(clip, self.posters / root.name)
            except StoryAgentError:
                continue  # a clip being rewritten right now; its poster comes with the next change
            items.append(f'<i data-clip="{html.escape(clip.name)}" '
                         f'data-poster="gradio_api/file={html.escape(str(poster))}"></i>')
        return "".join(items)


def _other_characters(others: tuple[Any, ...]) -> list[tuple[list[Path], str, str]]:
    """The filled slots of the rest of the cast as (checked uploads, name, class word); a slot with a name
    but no uploads is one sentence (its uploads are missing, or the slot should be removed)."""
    cast = []
    for n, i in enumerate(range(0, len(others) - len(others) % 3, 3), 2):
        files, name, word = others[i:i + 3]
        name, word = (name or "").strip(), (word or "").strip()
        if not files:
            if name or word:
                raise InputError(f"Character {n} ({name or word}) has no photos or clips; upload some, or remove "
                                 "the character.")
            continue
        try:
            paths = check_uploads(files)
        except InputError as exc:
            raise InputError(f"Character {n}: {exc}") from None
        cast.append((paths, name or _first_media(paths).stem.title(), word or "character"))
    return cast


def _first_media(paths: list[Path]) -> Path:
    """The first upload that is a photo or clip, not a mask beside one."""
    return next((p for p in paths if not p.stem.lower().endswith("_mask")), paths[0])


def line_players(root: Path, shots: int) -> str:
    """An <audio> player per shot's spoken line (`audio/narration_NN.wav`), captioned with its words; ""
    before any line is spoken. Each address carries the file's modification time, so a line spoken
    again is fetched again, never played from the browser's cache."""
    story = root / "story.json"
    try:
        words = {s["index"]: s["narration"] for s in json.loads(story.read_text(encoding="utf-8"))["shots"]}
    except (OSError, ValueError, KeyError, TypeError):
        words = {}
    items = []
    for i in range(1, shots + 1):
        wav = root / NARRATION.format(i)
        try:
            stamp = wav.stat().st_mtime_ns
        except OSError:
            continue
        src = f"gradio_api/file={quote(str(wav))}?v={stamp}"
        items.append(f'<div class="line" data-shot="{i}"><b>Shot {i}</b> <span>{html.escape(str(words.get(i, "")))}'
                     f'</span><br><audio controls preload="metadata" src="{html.escape(src)}"></audio></div>')
    if not items:
        return ""
    return "<div class='lines'><p>Each shot's line, as the film will say it:</p>" + "".join(items) + "</div>"


def _selected_shot(evt: gr.SelectData) -> int:
    return int(evt.index) + 1


def _numbered(folder: Path, pattern: str, count: int) -> list[tuple[int, Path]]:
    return [(i, folder / pattern.format(i)) for i in range(1, count + 1) if (folder / pattern.format(i)).is_file()]


def _status(run_id: str | None, view: View) -> str:
    stages = " · ".join(f"{k}: {v.split(':')[0]}" for k, v in view.stages.items()) or "starting"
    head = {"running": "The crew is working ...", "review": f"Your review of {STAGE_NAMES.get(view.stage or '', 'the work')}",
            "done": "The film is ready.", "stopped": "Stopped; the work so far is kept (reopen to go on).",
            "failed": f"**{view.error}**"}[view.state]
    return f"### {run_id}\n{head}\n\n`{stages}`"


def _question(view: View) -> str:
    if view.state != "review":
        return ""
    # The page has a player per line, so the chat's list of the lines' files is left out.
    lines = [ln for ln in view.question.splitlines() if ln.strip() and not ln.startswith(("Reply:", "Each shot's line:"))]
    return "\n\n".join(lines)


def _slots(count: int) -> tuple[Any, ...]:
    """The page with the first `count` slots of the rest of the cast shown: the count, each slot's
    visibility, and the add and remove buttons."""
    count = max(0, min(OTHERS, count))
    return (count, *(gr.update(visible=i < count) for i in range(OTHERS)),
            gr.update(interactive=count < OTHERS), gr.update(visible=count > 0))


def _cleared(count: int) -> list[Any]:
    """Every slot past the first `count` emptied (uploads, name, class word); the others left as they are."""
    return [gr.skip()] * (3 * count) + [None, "", ""] * (OTHERS - count)


def build_app(runs: Path) -> tuple[gr.Blocks, Studio]:
    """The studio's Blocks over the runs folder `runs`, and the Studio behind it."""
    studio = Studio(runs)
    with gr.Blocks(title="StoryAgent Studio") as demo:
        run_id = gr.State(None)
        shown = gr.State("")
        gr.Markdown("# StoryAgent Studio\nA film of your own characters (one, or a cast), reviewed by you at every stage.")
        message = gr.Markdown(elem_id="message")
        with gr.Tab("New film"):
            with gr.Row():
                files = gr.File(label="Photos or clips of your character (200 MB per file at most)",
                                file_count="multiple", elem_id="uploads")
                cutouts = gr.Image(label=CUTOUTS_LABEL, height=220, interactive=False, format="png",
                                   buttons=["download", "fullscreen"], elem_id="cutouts")
            prompt = gr.Textbox(label="Story idea", placeholder="a day at the seaside", elem_id="prompt")
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="Pip", elem_id="name")
                class_word = gr.Textbox(label="What it is", placeholder="fox", elem_id="class_word")
                shots = gr.Number(label="Shots", value=4, precision=0, minimum=1, maximum=32, elem_id="shots")
            # The rest of the cast: one slot per character, each shown by "Add another character".
            slots, others = [], []
            for n in range(2, OTHERS + 2):
                with gr.Group(visible=False, elem_id=f"character_{n}") as slot:
                    with gr.Row():
                        other_files = gr.File(label=f"Character {n}: photos or clips", file_count="multiple",
                                              elem_id=f"uploads_{n}")
                        other_cutouts = gr.Image(label=CUTOUTS_LABEL, height=160, interactive=False, format="png",
                                                 buttons=["download", "fullscreen"], elem_id=f"cutouts_{n}")
                    with gr.Row():
                        other_name = gr.Textbox(label=f"Character {n}'s name", placeholder="Mo", elem_id=f"name_{n}")
                        other_word = gr.Textbox(label="What it is", placeholder="owl", elem_id=f"class_word_{n}")
                other_files.change(studio.preview, other_files, [other_cutouts, message])
                slots.append(slot)
                others += [other_files, other_name, other_word]
            slots_shown = gr.State(0)
            with gr.Row():
                add_character = gr.Button("Add another character", size="sm", elem_id="add_character")
                remove_character = gr.Button("Remove the last character", size="sm", visible=False,
                                             elem_id="remove_character")
            with gr.Row():
                voice = gr.Dropdown(VOICE_CHOICES, value="auto", label="Voice", allow_custom_value=True,
                                    info=field_help("voice"), elem_id="voice")
                music = gr.Dropdown(["auto", "none"], value="auto", label="Music", info=MUSIC_INFO, elem_id="music")
                track = gr.File(label="Your own music (optional: an audio file, used as the score)",
                                file_types=sorted(AUDIO_SUFFIXES), elem_id="track")
            with gr.Row():
                backend = gr.Radio(list(BACKENDS), value="animatic", label="Backend", elem_id="backend")
                llm = gr.Textbox(label="LLM", value="none", elem_id="llm",
                                 info="none, openai:MODEL, ollama:MODEL, openai-compatible:MODEL@URL")
                review = gr.Radio(["human", "rules", "none"], value="human", label="Review", elem_id="review")
            with gr.Accordion("Frame size and seed", open=False):
                with gr.Row():
                    width = gr.Number(label="Width", value=512, precision=0, elem_id="width")
                    height = gr.Number(label="Height", value=320, precision=0, elem_id="height")
                    fps = gr.Number(label="Frames per second", value=8, elem_id="fps")
                    seed = gr.Number(label="Seed", value=0, precision=0, elem_id="seed")
            start = gr.Button("Make the film", variant="primary", elem_id="start")
        with gr.Tab("Earlier runs") as earlier_tab:
            earlier = gr.Dropdown(label="Run", choices=[], allow_custom_value=True, elem_id="earlier")
            with gr.Row():
                relist = gr.Button("Refresh the list", elem_id="relist")
                reopen = gr.Button("Reopen and resume", variant="primary", elem_id="reopen")
        status = gr.Markdown(elem_id="status")
        question = gr.Markdown(elem_id="question")
        with gr.Group(visible=False) as review_box:
            with gr.Row():
                # Text, not gr.Number: Gradio shows an empty Number as 0, an invalid shot (shots count from 1).
                shot = gr.Textbox(label="Shot", placeholder="select one", max_lines=1, elem_id="shot")
                words = gr.Textbox(label="What to change", placeholder="make it night", elem_id="words", scale=4)
            with gr.Row():
                approve = gr.Button("Approve", variant="primary", elem_id="approve")
                redo_one = gr.Button("Redo this shot", elem_id="redo_shot")
                redo_line = gr.Button("Redo this line (say it slower, happier ...)", elem_id="redo_line")
                redo_all = gr.Button("Redo the whole stage", elem_id="redo_stage")
                render = gr.Button("Approve the rest", elem_id="render")
                stop = gr.Button("Stop (keep the work)", variant="stop", elem_id="quit")
        story = gr.Dataframe(headers=STORY_COLUMNS, interactive=True, visible=False, wrap=True,
                             label="The story (edit cells, then approve)", elem_id="story")
        lines = gr.HTML(visible=False, elem_id="lines")
        board = gr.Gallery(label="Storyboard (select a shot to redo it)", columns=4, height="auto",
                           elem_id="board", allow_preview=False, object_fit="contain")
        clips = gr.Gallery(label="Clips (select a shot to redo it)", columns=4, height="auto", elem_id="clips",
                           allow_preview=True, object_fit="contain")
        posters = gr.HTML(visible="hidden", elem_id="clip_posters")
        film = gr.Video(label="The film", interactive=False, height=420, elem_id="film")
        download = gr.DownloadButton("Download the film", visible=False, elem_id="download")
        timer = gr.Timer(1.0)

        views = [status, question, story, board, clips, posters, lines, film, download, review_box, earlier, shown]
        assert len(views) == VIEWS
        # The list of earlier runs is read when the page opens and when its tab is opened, not when
        # the server started: runs made since then are on disk only.
        demo.load(studio.list_runs, None, earlier)
        demo.load(None, None, None, js=POSTERS_JS)
        earlier_tab.select(studio.list_runs, None, earlier)
        files.change(studio.preview, files, [cutouts, message])
        cast_buttons = [slots_shown, *slots, add_character, remove_character]
        add_character.click(lambda n: _slots(n + 1), slots_shown, cast_buttons, api_name=False)
        # Removing a character empties its slot: an empty slot is no character.
        remove_character.click(lambda n: (*_slots(n - 1), *_cleared(n - 1)), slots_shown, cast_buttons + others,
                               api_name=False)
        start.click(studio.start, [files, prompt, name, class_word, shots, backend, llm, review, width, height, fps,
                                   seed, voice, music, track, *others], [run_id, message], api_name="start")
        relist.click(studio.list_runs, None, earlier, api_name="relist")
        reopen.click(studio.reopen, earlier, [run_id, message], api_name="reopen")
        timer.tick(studio.refresh, [run_id, shown], views, show_progress="hidden")
        board.select(_selected_shot, None, shot)
        clips.select(_selected_shot, None, shot)
        answered = [message, shot, words]
        approve.click(lambda r, t: studio.sent(studio.answer(r, "ok", t)), [run_id, story], answered,
                      api_name="approve")
        redo_one.click(lambda r, s, w: studio.sent(studio.redo_shot(r, s, w)), [run_id, shot, words], answered,
                       api_name="redo_shot")
        redo_line.click(lambda r, s, w: studio.sent(studio.redo_line(r, s, w)), [run_id, shot, words], answered,
                        api_name="redo_line")
        redo_all.click(lambda r, w: studio.sent(studio.redo_stage(r, w)), [run_id, words], answered,
                       api_name="redo_stage")
        render.click(lambda r: studio.sent(studio.answer(r, "render")), run_id, answered, api_name="render")
        stop.click(lambda r: studio.answer(r, "quit"), run_id, message, api_name="quit")
    return demo, studio
