"""The offline score: one theme for the film, varied in every shot, with chords, bass and a pad
under it, each shot's music spanning that shot's window.

The theme is a short melody in scale steps (so it can be played in any key and mode) with a
rhythm, drawn from the title and the seed. Each shot reads its mood, place and time of day
(`ShotFeel`) and plays the theme in its own key and mode (minor for trouble), tempo (slower for
trouble and calm), loudness (softer for trouble and at night), register (lower at night) and
instruments (from the place), with its rhythm varied and its chords chosen afresh under it.

Times are in seconds throughout: the windows come from the film, not from bars, so each shot fits
a whole number of beats into its window and its tempo follows from that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from storyagent.errors import InputError
from storyagent.models.animatic.scene_words import stable_seed
from storyagent.models.music.config import ComposerConfig
from storyagent.models.music.midi import CONTROL, NOTE_OFF, NOTE_ON, PROGRAM, MidiEvent, write_midi
from storyagent.models.music.mood import ShotFeel
from storyagent.schemas import StoryScript

SCALES: dict[str, tuple[int, ...]] = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
KEY_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
PARTS = ("melody", "chords", "bass", "pad")

# General MIDI programs (0-based) per place: melody, chords, bass, pad.
INSTRUMENTS: dict[str, tuple[int, int, int, int]] = {
    "kitchen": (71, 0, 45, 48),      # clarinet, piano, pizzicato strings, strings
    "bakery": (71, 0, 45, 48),
    "house": (68, 0, 32, 48),        # oboe, piano, acoustic bass, strings
    "room": (68, 0, 32, 48),
    "school": (9, 0, 32, 48),        # glockenspiel, piano, acoustic bass, strings
    "haunted": (8, 6, 43, 52),       # celesta, harpsichord, contrabass, choir aahs
    "castle": (60, 46, 43, 48),      # French horn, harp, contrabass, strings
    "city": (65, 4, 33, 89),         # alto sax, electric piano, finger bass, warm pad
    "town": (21, 25, 32, 48),        # accordion, steel guitar, acoustic bass, strings
    "market": (21, 25, 32, 48),
    "underwater": (11, 46, 35, 94),  # vibraphone, harp, fretless bass, halo pad
    "sea": (73, 46, 32, 49),         # flute, harp, acoustic bass, slow strings
    "lake": (71, 46, 32, 49),        # clarinet, harp, acoustic bass, slow strings
    "forest": (68, 24, 42, 48),      # oboe, nylon guitar, cello, strings
    "jungle": (75, 12, 32, 49),      # pan flute, marimba, acoustic bass, slow strings
    "mountain": (60, 46, 43, 48),    # French horn, harp, contrabass, strings
    "snow": (10, 46, 42, 52),        # music box, harp, cello, choir aahs
    "desert": (68, 24, 32, 49),      # oboe, nylon guitar, acoustic bass, slow strings
    "farm": (110, 105, 32, 48),      # fiddle, banjo, acoustic bass, strings
    "cave": (70, 46, 43, 91),        # bassoon, harp, contrabass, choir pad
    "space": (88, 8, 38, 95),        # new-age pad lead, celesta, synth bass, sweep pad
    "sky": (73, 46, 42, 88),         # flute, harp, cello, new-age pad
    "meadow": (73, 24, 32, 48),      # flute, nylon guitar, acoustic bass, strings
}

# How far each mood moves the tempo (BPM) and the melody's velocity from the neutral shot's.
MOOD_TEMPO = {"trouble": -24, "tense": -8, "calm": -18, "neutral": 0, "joy": 12, "lively": 24}
MOOD_VELOCITY = {"trouble": -26, "tense": -12, "calm": -16, "neutral": 0, "joy": 10, "lively": 14}
NIGHT_TEMPO, NIGHT_VELOCITY = -8, -14
# Velocities of the accompaniment, relative to the melody's.
PART_VELOCITY = {"melody": 0, "chords": -16, "bass": -8, "pad": -22}
PART_VOLUME = {"melody": 110, "chords": 84, "bass": 96, "pad": 80}  # CC7
PART_PAN = {"melody": 64, "chords": 44, "bass": 64, "pad": 84}      # CC10
# How likely each scale degree is as a chord root (major, minor): tonic, subdominant, dominant
# and the relative chords; the diminished triad never.
CHORD_WEIGHT = {"major": {0: 4, 1: 1, 2: 1, 3: 3, 4: 3, 5: 2, 6: 0},
                "minor": {0: 4, 1: 0, 2: 2, 3: 3, 4: 1, 5: 3, 6: 2}}
# Where in the home key a shot's key sits: major shots on I, IV or V, minor ones on vi, i, iii or ii.
MAJOR_KEYS = (0, 5, 7)
MINOR_KEYS = (9, 0, 4, 2)
HOME_KEYS = (0, 2, 3, 5, 7, 9, 10)  # C, D, Eb, F, G, A, Bb: comfortable for every instrument above


@dataclass(frozen=True)
class Theme:
    """The film's melody, in scale steps from the tonic, with its rhythm in beats."""

    degrees: tuple[int, ...]
    rhythm: tuple[float, ...]
    home: int
    """Pitch class of the film's home key (its first and last major shot's tonic)."""

    @property
    def intervals(self) -> tuple[int, ...]:
        """Steps between consecutive notes: what stays the same when the theme is transposed."""
        return tuple(b - a for a, b in zip(self.degrees, self.degrees[1:]))


@dataclass(frozen=True)
class Note:
    """One note of the score."""

    start: float
    end: float
    pitch: int
    velocity: int
    channel: int
    part: str
    """One of PARTS."""
    shot: int
    """1-based shot index."""


@dataclass(frozen=True)
class ShotScore:
    """What one shot's music is."""

    index: int
    start: float
    end: float
    feel: ShotFeel
    tonic: int
    """Pitch class of the shot's key."""
    mode: str
    """"major" or "minor"."""
    bpm: float
    beats: int
    """Whole beats the shot plays at `bpm`; its last note is held through what is left of the window."""
    velocity: int
    """The melody's MIDI velocity."""
    programs: dict[str, int]
    """General MIDI program per part."""
    melody_tonic: int
    """MIDI pitch of scale step 0 in the melody's register."""
    statements: tuple[tuple[int, ...], ...]
    """Scale steps of each statement of the theme in this shot (the theme transposed)."""

    @property
    def key(self) -> str:
        return f"{KEY_NAMES[self.tonic]} {self.mode}"


@dataclass(frozen=True)
class Score:
    """The composed score: its theme, each shot's music, and every note and controller."""

    theme: Theme
    shots: tuple[ShotScore, ...]
    notes: tuple[Note, ...]
    controls: tuple[MidiEvent, ...]
    duration: float

    def midi_events(self) -> list[MidiEvent]:
        events = list(self.controls)
        for n in self.notes:
            events.append(MidiEvent(n.start, NOTE_ON, n.channel, n.pitch, n.velocity))
            events.append(MidiEvent(n.end, NOTE_OFF, n.channel, n.pitch, 0))
        return events

    def to_midi(self) -> bytes:
        """The score as a Standard MIDI File."""
        return write_midi(self.midi_events())


def channel_of(part: str, shot_number: int) -> int:
    """Neighbouring shots play on different channels, so one shot's notes ring on while the next
    one's instruments (a program change) start: shots 1, 3, 5 ... on channels 0-3, the others 4-7."""
    return PARTS.index(part) + (4 if shot_number % 2 == 0 else 0)


def make_theme(title: str, seed: int) -> Theme:
    """A 5-7 note melody over one 4/4 bar, drawn from the title and the seed."""
    rng = random.Random(stable_seed("theme", title.strip().lower(), seed))
    n = rng.choice((5, 6, 6, 7))
    degrees = [rng.choice((0, 2, 4))]
    for i in range(n - 1):
        # Mostly steps, one leap early on: a tune someone could hum.
        choices = (-2, -1, 1, 2, 3, 4, -3) if i == 1 else (-2, -1, -1, 1, 1, 2)
        step = rng.choice(choices)
        while not -3 <= degrees[-1] + step <= 9:
            step = -step if -3 <= degrees[-1] - step <= 9 else rng.choice((-1, 1))
        degrees.append(degrees[-1] + step)
    # End on a note of the tonic triad when a step away can reach one.
    for step in (-1, 1, -2, 2):
        target = degrees[-2] + step
        if target % 7 in (0, 2, 4) and target != degrees[-2]:
            degrees[-1] = target
            break
    slots = _rhythm_slots(rng, n, 8)
    return Theme(tuple(degrees), tuple(s / 2 for s in slots), HOME_KEYS[rng.randrange(len(HOME_KEYS))])


# Rhythm cells in eighth notes: a quarter, two eighths, a dotted quarter and an eighth, a half note.
CELLS = ((2,), (1, 1), (3, 1), (4,))


def _rhythm_slots(rng: random.Random, n: int, total: int) -> list[int]:
    """`n` note lengths in eighths summing to `total`, built from CELLS and ending on a note of a
    quarter or longer (a phrase comes to rest); one of all such rhythms, drawn at random."""
    found: list[list[int]] = []

    def build(prefix: list[int]) -> None:
        if len(prefix) > n or sum(prefix) > total:
            return
        if sum(prefix) == total:
            if len(prefix) == n and prefix[-1] >= 2:
                found.append(prefix)
            return
        for cell in CELLS:
            build(prefix + list(cell))

    build([])
    if not found:  # more notes than cells can hold: even eighths, the last one longer
        return [1] * (n - 1) + [total - n + 1]
    return list(rng.choice(found))


def _varied_slots(theme: Theme, total: int, rng: random.Random, moves: int) -> list[int]:
    """The theme's rhythm stretched to `total` slots, then varied by moving `moves` slots from one
    note to another (the notes stay in order, so the melody is still the theme)."""
    base = [r * 2 for r in theme.rhythm]
    scale = total / sum(base)
    slots = [max(1, round(b * scale)) for b in base]
    while sum(slots) > total:
        slots[max(range(len(slots)), key=lambda i: (slots[i], i))] -= 1
    slots[-1] += total - sum(slots)
    for _ in range(moves):
        donors = [i for i, s in enumerate(slots) if s > 1]
        if not donors:
            break
        give = rng.choice(donors)
        slots[give] -= 1
        slots[rng.randrange(len(slots))] += 1
    return slots


def _pitch(tonic_pitch: int, mode: str, degree: int) -> int:
    octave, step = divmod(degree, 7)
    return tonic_pitch + 12 * octave + SCALES[mode][step]


def _phrases(beats: int) -> list[int]:
    """A shot's beats split into statements of the theme: 4-beat phrases, the remainder joined to
    the last one (a statement is never shorter than 2 beats)."""
    if beats <= 5:
        return [beats]
    phrases = [4] * (beats // 4)
    rest = beats - 4 * len(phrases)
    if rest >= 2:
        phrases.append(rest)
    else:
        phrases[-1] += rest
    return phrases


def _check_windows(script: StoryScript, windows: list[tuple[float, float]]) -> None:
    if len(windows) != len(script.shots):
        raise InputError(f"The score needs one window per shot: {len(windows)} windows for {len(script.shots)} shots.")
    last = 0.0
    for i, (start, end) in enumerate(windows, 1):
        if not (start >= last - 1e-9 and end > start):
            raise InputError(f"Shot {i}'s window ({start:.2f}-{end:.2f} s) must start where the one before ended "
                             "or later and end after it starts.")
        last = end


def compose(script: StoryScript, windows: list[tuple[float, float]], seed: int = 0,
            config: ComposerConfig | None = None) -> Score:
    """The score of `script`, each shot's music in its (start, end) window in seconds (the first from 0)."""
    config = config or ComposerConfig()
    _check_windows(script, windows)
    # The score starts with the film: whatever comes before the first shot (a title card) opens
    # with the first shot's music.
    windows = [(0.0, windows[0][1]), *windows[1:]]
    theme = make_theme(script.title, seed)
    shortest = min(end - start for start, end in windows)
    xfade = min(config.crossfade, 0.4 * shortest)
    duration = windows[-1][1]

    shots: list[ShotScore] = []
    notes: list[Note] = []
    controls: list[MidiEvent] = []
    for channel_set in (1, 2):
        for part in PARTS:
            ch = channel_of(part, channel_set)
            controls += [MidiEvent(0.0, CONTROL, ch, 7, PART_VOLUME[part]), MidiEvent(0.0, CONTROL, ch, 10, PART_PAN[part]),
                         MidiEvent(0.0, CONTROL, ch, 91, 70 if part == "pad" else 40),
                         MidiEvent(0.0, CONTROL, ch, 11, 127)]

    for shot, (start, end) in zip(script.shots, windows):
        rng = random.Random(stable_seed("shot", script.title.strip().lower(), seed, shot.index))
        feel = ShotFeel.from_shot(shot)
        mode = "minor" if feel.minor else "major"
        last = shot.index == len(script.shots)
        if mode == "major":
            offset = 0 if shot.index == 1 or last else rng.choice(MAJOR_KEYS)
        else:
            offset = rng.choice(MINOR_KEYS)
        tonic = (theme.home + offset) % 12
        target_bpm = config.base_bpm + MOOD_TEMPO.get(feel.mood, 0) + (NIGHT_TEMPO if feel.dark else 0)
        length = end - start
        # Whole beats at the mood's tempo, the last note held to the window's end; a shot too short
        # for `min_beats` plays them faster.
        exact = length * target_bpm / 60
        beats = max(config.min_beats, int(exact + 1e-9))
        beat = 60 / target_bpm if beats <= exact + 1e-9 else length / beats
        velocity = config.base_velocity + MOOD_VELOCITY.get(feel.mood, 0) + (NIGHT_VELOCITY if feel.dark else 0)
        velocity = int(min(120, max(24, velocity)))
        register = (12 if feel.mood in ("joy", "lively") else 0) - (12 if feel.dark else 0)
        melody_tonic = 60 + tonic - (12 if tonic > 6 else 0) + register
        programs = dict(zip(PARTS, INSTRUMENTS.get(feel.place, INSTRUMENTS["meadow"])))

        ch = {part: channel_of(part, shot.index) for part in PARTS}
        program_time = max(0.0, start - xfade / 2 - 0.01)
        controls += [MidiEvent(program_time, PROGRAM, ch[p], programs[p]) for p in PARTS]

        # The melody: one statement of the theme per phrase, each transposed by a step pattern
        # chosen for the shot (a sequence up, an answer at the fifth, a return), its rhythm varied.
        base_shift = 0 if shot.index == 1 else rng.choice((0, 2, -3, 4, 1))
        pattern = rng.choice(((0, 1, 0, 2), (0, 4, 2, 0), (0, -1, 1, 0), (0, 2, 4, 0)))
        staccato = feel.mood == "lively"
        t = start
        statements = []
        melody_segments: list[tuple[float, float, int]] = []  # (start, end, degree) of every melody note
        for j, phrase_beats in enumerate(_phrases(beats)):
            per_beat = 2 if 2 * phrase_beats >= len(theme.degrees) else 4
            first = shot.index == 1 and j == 0
            slots = _varied_slots(theme, phrase_beats * per_beat, rng, 0 if first else rng.randint(1, 2))
            shift = base_shift + pattern[j % len(pattern)]
            degrees = tuple(d + shift for d in theme.degrees)
            statements.append(degrees)
            for degree, n_slots in zip(degrees, slots):
                note_end = t + n_slots * beat / per_beat
                melody_segments.append((t, note_end, degree))
                t = note_end
        melody_segments[-1] = (melody_segments[-1][0], end, melody_segments[-1][2])
        # Keep the tune where the instruments sing, an octave lower at night: move it by octaves
        # into the register's range.
        low, high = (43, 79) if feel.dark else (55, 91)
        pitches = [_pitch(melody_tonic, mode, d) for _, _, d in melody_segments]
        while max(pitches) > high and min(pitches) - 12 >= low:
            melody_tonic, pitches = melody_tonic - 12, [p - 12 for p in pitches]
        while min(pitches) < low and max(pitches) + 12 <= high:
            melody_tonic, pitches = melody_tonic + 12, [p + 12 for p in pitches]
        for (t0, t1, _), pitch in zip(melody_segments, pitches):
            off = t1 if t1 >= end - 1e-9 else t0 + (t1 - t0) * (0.7 if staccato else 0.92)
            notes.append(Note(t0, off, pitch, velocity, ch["melody"], "melody", shot.index))

        # Harmony: a chord every two beats, re-chosen for each shot among the triads that hold the
        # melody note sounding at its start.
        weights = CHORD_WEIGHT[mode]
        chord_starts = [start + b * beat for b in range(0, beats, 2)]
        chord_bounds = list(zip(chord_starts, chord_starts[1:] + [end]))
        chord_tonic = 48 + tonic - (12 if tonic > 7 else 0)
        for k, (c0, c1) in enumerate(chord_bounds):
            degree = next(d for s, e, d in melody_segments if s <= c0 + 1e-6 < e)
            candidates = [(degree - third) % 7 for third in (0, 2, 4)]
            if last and k == len(chord_bounds) - 1 and 0 in candidates:
                root = 0
            else:
                pool = [r for r in candidates if weights[r] > 0] or candidates
                root = rng.choices(pool, weights=[max(weights[r], 1) for r in pool])[0]
            triad = [_pitch(chord_tonic, mode, root + step) for step in (0, 2, 4)]
            notes += _accompaniment(feel, triad, c0, c1, beat, velocity, ch, shot.index, xfade,
                                    first_chord=k == 0, last_chord=k == len(chord_bounds) - 1,
                                    film_start=shot.index == 1, film_end=last)
        # The pad fades in over the crossfade where the shot before it is still ringing out, and
        # out where the next one comes in (expression, CC11), so shots blend rather than cut.
        pad_start = start - (xfade / 2 if shot.index > 1 else 0.0)
        pad_end = end + (xfade / 2 if not last else 0.0)
        steps = 8
        if shot.index > 1:
            controls += [MidiEvent(pad_start + xfade * i / steps, CONTROL, ch["pad"], 11, round(127 * i / steps))
                         for i in range(steps + 1)]
        else:
            controls.append(MidiEvent(0.0, CONTROL, ch["pad"], 11, 127))
        if not last:
            controls += [MidiEvent(pad_end - xfade + xfade * i / steps, CONTROL, ch["pad"], 11,
                                   round(127 * (1 - i / steps))) for i in range(1, steps + 1)]

        shots.append(ShotScore(shot.index, start, end, feel, tonic, mode, round(60 / beat, 3), beats, velocity,
                               programs, melody_tonic, tuple(statements)))

    notes = [n for n in notes if n.start < duration]
    notes = [Note(n.start, min(n.end, duration), n.pitch, n.velocity, n.channel, n.part, n.shot) for n in notes]
    notes.sort(key=lambda n: (n.start, n.channel, n.pitch))
    return Score(theme, tuple(shots), tuple(notes), tuple(controls), duration)


def _accompaniment(feel: ShotFeel, triad: list[int], c0: float, c1: float, beat: float, velocity: int,
                   ch: dict[str, int], shot: int, xfade: float, *, first_chord: bool,
                   last_chord: bool, film_start: bool, film_end: bool) -> list[Note]:
    """Chords, bass and pad under one chord span [c0, c1)."""
    out: list[Note] = []
    v = {p: int(min(127, max(16, velocity + PART_VELOCITY[p]))) for p in PARTS}
    lively = feel.mood in ("lively", "joy")
    # Chords: arpeggiated eighths when the shot is lively, a pulse of soft repeated chords when it
    # is tense, else one held chord.
    if lively and not feel.dark:
        t, i = c0, 0
        pattern = (0, 1, 2, 1)
        while t < c1 - 1e-6:
            t1 = min(c1, t + beat / 2)
            out.append(Note(t, t1, triad[pattern[i % 4]] + 12, v["chords"], ch["chords"], "chords", shot))
            t, i = t1, i + 1
    elif feel.mood == "tense":
        t = c0
        while t < c1 - 1e-6:
            t1 = min(c1, t + beat / 2)
            out += [Note(t, t + (t1 - t) * 0.6, p, v["chords"], ch["chords"], "chords", shot) for p in triad]
            t = t1
    else:
        out += [Note(c0, c1, p, v["chords"], ch["chords"], "chords", shot) for p in triad]
    # Bass: the root, on every beat when lively (root and fifth), else held.
    root = triad[0] - 12
    if lively:
        t, i = c0, 0
        while t < c1 - 1e-6:
            t1 = min(c1, t + beat)
            pitch = root if i % 2 == 0 else root + 7
            out.append(Note(t, t + (t1 - t) * 0.85, pitch, v["bass"], ch["bass"], "bass", shot))
            t, i = t1, i + 1
    else:
        out.append(Note(c0, c1, root, v["bass"], ch["bass"], "bass", shot))
    # Pad: root, fifth and the third an octave up (an open voicing that stays out of the melody's
    # way), held across the chord and stretched into the neighbouring shots by half the crossfade.
    p0 = c0 - (xfade / 2 if first_chord and not film_start else 0.0)
    p1 = c1 + (xfade / 2 if last_chord and not film_end else 0.0)
    for pitch in (triad[0], triad[2], triad[1] + 12):
        out.append(Note(max(0.0, p0), p1, pitch, v["pad"], ch["pad"], "pad", shot))
    return out
