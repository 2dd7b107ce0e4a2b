"""What the converters' command lines share: check the input files first, convert, and answer any
failure in one sentence on stderr with exit status 2, leaving no half-written output folder."""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from storyagent.errors import InputError, StoryAgentError


def run_converter(convert: Callable[[], Path], out_dir: str, inputs: Mapping[str, str | None]) -> int:
    """A converter's command line: check the input files (`inputs`: what each is -> its path), convert,
    say where the result is.

    Any failure is one sentence on stderr and exit status 2 (STORYAGENT_DEBUG=1 raises it instead);
    an output folder this run created is removed again, so none is left half-written.
    """
    out = Path(out_dir)
    created = not out.exists()
    done = False
    try:
        if out.exists() and not out.is_dir():
            raise InputError(f"The output {out} is a file; give a folder to write the converted model into.")
        for what, path in inputs.items():
            if path is not None and (problem := checkpoint_file_problem(path, what)):
                raise InputError(problem)
        result = convert()
        done = True
    except KeyboardInterrupt:
        print("error: interrupted before the conversion finished; run the same command again.", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("STORYAGENT_DEBUG"):
            raise
        print(f"error: {failure_sentence(exc)}", file=sys.stderr)
        return 2
    finally:
        if not done and created:
            shutil.rmtree(out, ignore_errors=True)
    print(f"wrote {result}")
    return 0


def checkpoint_file_problem(path: str | os.PathLike[str], what: str) -> str | None:
    """Why `path` cannot be `what`, read off the file's first bytes before a loader sees it; None if it may be."""
    path = Path(path)
    if not path.exists():
        return f"{path} does not exist; give the path of {what}."
    if not path.is_file():
        return f"{path} is not a file; give the path of {what} itself."
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        return f"Cannot read {path} ({exc.strerror}); check that it is {what} and readable."
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip format
        if zipfile.is_zipfile(path):
            return None
        return (f"{path} is a damaged PyTorch checkpoint (its zip archive is truncated or corrupt); "
                f"download {what} again.")
    if head[8:9] == b"{":  # safetensors: the header's length (8 bytes), then the JSON header
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt"):
                return None
        except (SafetensorError, OSError, ValueError) as exc:
            return f"{path} is a damaged safetensors file ({_first_line(exc)}); download {what} again."
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy format
        return None
    return f"{path} is neither a PyTorch checkpoint nor a safetensors file; give the path of {what}."


def failure_sentence(exc: BaseException) -> str:
    """One sentence for any failure of a conversion, saying what to do."""
    if isinstance(exc, StoryAgentError):
        return _first_line(exc)
    if isinstance(exc, MemoryError):
        return "There is not enough memory to convert this checkpoint; close other programs or use a larger machine."
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or _first_line(exc)}{where}; check the paths and the free disk space, then run again."
    return (f"The conversion failed unexpectedly ({type(exc).__name__}: {_first_line(exc)}); run again with "
            "STORYAGENT_DEBUG=1 for the traceback and report it.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def convert_downloaded(converter: str, files: list[Path], out_dir: Path, *, name: str,
                       needs: Mapping[str, Path], config: Path | None = None) -> Path:
    """`storyagent weights fetch`'s conversion: `converter`'s `convert_downloaded` turns the upstream
    `files` into `out_dir`, through a temporary folder beside it, so `out_dir` only ever appears complete.

    `needs` maps the other weights the conversion reads to their paths; `config`, a JSON file of the
    family's config, replaces the architecture it would otherwise assume.
    """
    import importlib

    for path in files:
        if path.suffix in (".ckpt", ".pth", ".pt", ".safetensors") and (problem := checkpoint_file_problem(path, name)):
            raise InputError(problem)
    if config is not None and not Path(config).is_file():
        raise InputError(f"The config {config} for {name} is not a file; give the JSON file of its architecture.")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        importlib.import_module(converter).convert_downloaded(files, tmp, name=name, needs=needs, config=config)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
