"""Narration voices: one line of a shot's narration in, mono audio out.

Engines, best first: Kokoro-82M (`kokoro:VOICE`, torch) and Piper (`piper:VOICE`, ONNX on the CPU), both
with weights from the Hugging Face cache that `storyagent weights fetch` fills; any server that answers
OpenAI's POST /v1/audio/speech (`openai:VOICE`, `openai-compatible:VOICE@URL`); and espeak-ng
(`espeak`), the offline floor with no weights. `load_voice("auto")` takes the best this machine has.
A reviewer's words ("say it slower", "happier") become a `VoiceStyle` that every engine applies.
"""

from storyagent.models.voice.config import (
           VoiceError,
           VoiceSpec,
           parse_voice_spec,
           read_voice_spec,
)
from storyagent.models.voice.loading import (
           Voice,
           best_voice_spec,
           load_voice,
           voice_status,
)
from storyagent.models.voice.style import VoiceStyle

__all__ = ["Voice", "VoiceError", "VoiceSpec", "VoiceStyle", "best_voice_spec", "load_voice", "parse_voice_spec",
           "read_voice_spec", "voice_status"]
