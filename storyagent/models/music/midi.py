"""A small Standard MIDI File writer and reader (format 0 written; formats 0 and 1 read).

The score places every event in seconds, so the file keeps one fixed tempo: 480 ticks per quarter
note at 120 BPM, i.e. 960 ticks a second, a resolution of about a millisecond. Each shot's own
tempo lives in where its notes fall, not in tempo meta events, so shot windows given in seconds
are met exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

TICKS_PER_QUARTER = 480
MICROSECONDS_PER_QUARTER = 500_000  # 120 BPM
TICKS_PER_SECOND = TICKS_PER_QUARTER * 1_000_000 / MICROSECONDS_PER_QUARTER

NOTE_OFF, NOTE_ON, CONTROL, PROGRAM = 0x80, 0x90, 0xB0, 0xC0
# Events at the same tick go in this order: notes end before new ones start (a repeated pitch must
# not have its new note cut by the old one's note-off), and programs and controllers are set
# before the notes that use them.
_ORDER = {PROGRAM: 0, CONTROL: 1, NOTE_OFF: 2, NOTE_ON: 3}


@dataclass(frozen=True)
class MidiEvent:
    """One channel event at a time in seconds."""

    time: float
    kind: int
    """NOTE_ON, NOTE_OFF, CONTROL or PROGRAM."""
    channel: int
    data1: int
    """Pitch, controller number or program number."""
    data2: int = 0
    """Velocity or controller value (unused by PROGRAM)."""


@dataclass(frozen=True)
class MidiNote:
    """A note read back from a file: start and end in seconds."""

    start: float
    end: float
    channel: int
    pitch: int
    velocity: int


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def write_midi(events: list[MidiEvent]) -> bytes:
    """A format-0 Standard MIDI File holding `events` (any order; times in seconds, >= 0)."""
    for e in events:
        if not (0 <= e.channel < 16 and 0 <= e.data1 < 128 and 0 <= e.data2 < 128 and e.time >= 0):
            raise ValueError(f"MIDI event out of range: {e}")
    timed = sorted(((round(e.time * TICKS_PER_SECOND), _ORDER[e.kind], e.channel, e.data1, e.data2, e.kind)
                    for e in events))
    track = bytearray()
    track += b"\x00\xff\x51\x03" + MICROSECONDS_PER_QUARTER.to_bytes(3, "big")
    last = 0
    for tick, _, channel, data1, data2, kind in timed:
        track += _varlen(tick - last)
        last = tick
        track += bytes([kind | channel, data1]) if kind == PROGRAM else bytes([kind | channel, data1, data2])
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _read_varlen(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def read_midi(data: bytes) -> tuple[list[MidiNote], list[MidiEvent]]:
    """The notes of a Standard MIDI File (format 0 or 1), and its program and controller events.

    Tempo changes are followed (each track's ticks are turned into seconds through the tempo map of
    the first track, as format 1 prescribes)."""
    if data[:4] != b"MThd":
        raise ValueError("not a Standard MIDI File (no MThd header)")
    length, _fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    if division & 0x8000:
        raise ValueError("SMPTE time division is not supported")
    pos = 8 + length
    tracks: list[list[tuple[int, int, int, int, int]]] = []  # (tick, status, data1, data2, tempo or -1)
    for _ in range(ntracks):
        if data[pos:pos + 4] != b"MTrk":
            raise ValueError("damaged MIDI file (track header missing)")
        (size,) = struct.unpack(">I", data[pos + 4:pos + 8])
        end, pos = pos + 8 + size, pos + 8
        tick, status, events = 0, 0, []
        while pos < end:
            delta, pos = _read_varlen(data, pos)
            tick += delta
            if data[pos] & 0x80:
                status = data[pos]
                pos += 1
            if status == 0xFF:
                meta = data[pos]
                n, pos = _read_varlen(data, pos + 1)
                if meta == 0x51:
                    events.append((tick, 0xFF, 0, 0, int.from_bytes(data[pos:pos + 3], "big")))
                pos += n
            elif status in (0xF0, 0xF7):
                n, pos = _read_varlen(data, pos)
                pos += n
            else:
                kind = status & 0xF0
                if kind in (0xC0, 0xD0):
                    events.append((tick, status, data[pos], 0, -1))
                    pos += 1
                else:
                    events.append((tick, status, data[pos], data[pos + 1], -1))
                    pos += 2
        tracks.append(events)
    tempo_map = sorted((t, tempo) for t, s, _, _, tempo in tracks[0] if s == 0xFF) if tracks else []

    def seconds(tick: int) -> float:
        time, last_tick, tempo = 0.0, 0, MICROSECONDS_PER_QUARTER
        for t, new_tempo in tempo_map:
            if t >= tick:
                break
            time += (t - last_tick) * tempo / 1e6 / division
            last_tick, tempo = t, new_tempo
        return time + (tick - last_tick) * tempo / 1e6 / division

    notes: list[MidiNote] = []
    others: list[MidiEvent] = []
    for events in tracks:
        sounding: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for tick, status, d1, d2, _ in sorted(events, key=lambda e: (e[0], (e[1] & 0xF0) == NOTE_ON and e[3] > 0)):
            kind, channel = status & 0xF0, status & 0x0F
            if status == 0xFF:
                continue
            if kind == NOTE_ON and d2 > 0:
                sounding.setdefault((channel, d1), []).append((tick, d2))
            elif kind in (NOTE_ON, NOTE_OFF):
                started = sounding.get((channel, d1))
                if started:
                    t0, velocity = started.pop(0)
                    notes.append(MidiNote(seconds(t0), seconds(tick), channel, d1, velocity))
            elif kind in (CONTROL, PROGRAM):
                others.append(MidiEvent(seconds(tick), kind, channel, d1, d2))
    notes.sort(key=lambda n: (n.start, n.channel, n.pitch))
    return notes, others
