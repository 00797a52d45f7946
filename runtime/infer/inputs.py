"""Turn command-line inputs into image paths: files, folders (recursive), glob patterns, and ``-`` for stdin.

Rules (docs/runtime.md, "Inputs"):

- A file is used as given, whatever its extension (a non-image then fails with a clear reason).
- A folder is searched recursively for files with an image extension Pillow can open (case-insensitive): a
  folder's own files in sorted order, then its subfolders in sorted order; hidden files and folders (names
  starting with ".") are skipped. Symlinked folders are followed, each real folder once: a link back into a
  folder already read (a symlink loop) is skipped with a warning line naming it (runtime/folders.py).
- An argument that does not exist but contains ``*``, ``?`` or ``[`` is a glob pattern (``**`` recurses, with
  the same loop protection); every match is used, folders among the matches are searched as above.
- ``-`` reads one input per line from standard input, each handled like an argument: only the line terminator
  (``\n`` or ``\r\n``) is removed, so names with leading or trailing spaces work; empty lines are skipped.
- The same file reached twice (a folder and a glob inside it, a symlink or hard link to it) is classified once,
  at its first position.
- An input that matches nothing is a Failure in its place; the other inputs still run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import BinaryIO, TextIO

from PIL import Image

from cifar_edge.runtime.folders import Warn, loop_safe_glob, walk_folder, warn_on_stderr
from cifar_edge.runtime.predictions import Failure

STDIN_MARKER = "-"
_GLOB_CHARACTERS = frozenset("*?[")


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case file extensions (".jpg", ...) of every format this Pillow can open."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def expand_inputs(
    arguments: Iterable[str], stdin: TextIO | BinaryIO | None = None, warn: Warn | None = None
) -> Iterator[str | Failure]:
    """Yield each image path to classify (as given, not resolved), or a Failure for an input that matched nothing.

    ``warn`` receives one line per skipped symlinked folder (default: ``warning: ...`` on stderr).
    """
    warn = warn or warn_on_stderr
    seen: set[object] = set()
    for argument in _with_stdin(arguments, stdin):
        for found in _expand_one(argument, warn):
            if isinstance(found, Failure):
                yield found
                continue
            key = _file_key(found)
            if key not in seen:
                seen.add(key)
                yield found


def _file_key(path: str) -> object:
    """The real file behind ``path`` (device, inode); its absolute path when it cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return os.path.normcase(os.path.abspath(path))
    return stat.st_dev, stat.st_ino


def read_input_lines(stream: TextIO | BinaryIO) -> Iterator[str]:
    """One input per line: only the terminator (``\n``, ``\r\n``) is removed, empty lines are skipped.

    A binary stream (``sys.stdin.buffer``) is split on ``\n`` alone and decoded as file names are (``os.fsdecode``),
    so names with spaces, carriage returns or undecodable bytes arrive as they are on disk.
    """
    for line in stream:
        if isinstance(line, bytes):
            line = os.fsdecode(line[:-1] if line.endswith(b"\n") else line)
        elif line.endswith("\n"):
            line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
        if line:
            yield line


def _with_stdin(arguments: Iterable[str], stdin: TextIO | BinaryIO | None) -> Iterator[str]:
    for argument in arguments:
        if argument == STDIN_MARKER:
            stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", sys.stdin)
            yield from read_input_lines(stream)
        else:
            yield argument


def _exists(path: str) -> bool:
    try:
        return os.path.lexists(path)
    except ValueError:  # a NUL byte in the name
        return False


def _expand_one(argument: str, warn: Warn) -> Iterator[str | Failure]:
    if "\0" in argument:
        yield Failure(argument, "file not found (the name holds a NUL character)")
    elif os.path.isdir(argument):
        yield from _walk_folder(argument, warn)
    elif _exists(argument):
        yield argument
    elif _GLOB_CHARACTERS & set(argument):
        matches = loop_safe_glob(argument, warn)
        if not matches:
            yield Failure(argument, "pattern matched no files")
        for match in matches:
            if os.path.isdir(match):
                yield from _walk_folder(match, warn)
            else:
                yield match
    else:
        yield Failure(argument, "file not found")


def _walk_folder(folder: str, warn: Warn) -> Iterator[str | Failure]:
    extensions = image_extensions()
    found_any = False
    for root, names in walk_folder(folder, skip_hidden=True, warn=warn):
        for name in names:
            if os.path.splitext(name)[1].lower() in extensions:
                found_any = True
                yield os.path.join(root, name)
    if not found_any:
        yield Failure(folder, "folder holds no image files")
