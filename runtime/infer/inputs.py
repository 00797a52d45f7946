"""Turn command-line inputs into image paths: files, folders (recursive), glob patterns, and ``-`` for stdin.

Rules (docs/runtime.md, "Inputs"):

- A file is used as given, whatever its extension (a non-image then fails with a clear reason).
- A folder is searched recursively for files with an image extension Pillow can open (case-insensitive): a
  folder's own files in sorted order, then its subfolders in sorted order; hidden files and folders (names
  starting with ".") are skipped, symlinked folders are not followed.
- An argument that does not exist but contains ``*``, ``?`` or ``[`` is a glob pattern (``**`` recurses); every
  match is used, folders among the matches are searched as above.
- ``-`` reads one input per line from standard input (each line is handled like an argument).
- The same file reached twice (e.g. a folder and a glob inside it) is classified once, at its first position.
- An input that matches nothing is a Failure in its place; the other inputs still run.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TextIO

from PIL import Image

from cifar_edge.runtime.predictions import Failure

STDIN_MARKER = "-"
_GLOB_CHARACTERS = frozenset("*?[")


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case file extensions (".jpg", ...) of every format this Pillow can open."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def expand_inputs(arguments: Iterable[str], stdin: TextIO | None = None) -> Iterator[str | Failure]:
    """Yield each image path to classify (as given, not resolved), or a Failure for an input that matched nothing."""
    seen: set[str] = set()
    for argument in _with_stdin(arguments, stdin):
        for found in _expand_one(argument):
            if isinstance(found, Failure):
                yield found
                continue
            key = os.path.normcase(os.path.abspath(found))
            if key not in seen:
                seen.add(key)
                yield found


def _with_stdin(arguments: Iterable[str], stdin: TextIO | None) -> Iterator[str]:
    for argument in arguments:
        if argument == STDIN_MARKER:
            for line in stdin if stdin is not None else sys.stdin:
                line = line.strip()
                if line:
                    yield line
        else:
            yield argument


def _expand_one(argument: str) -> Iterator[str | Failure]:
    if os.path.isdir(argument):
        yield from _walk_folder(argument)
    elif os.path.lexists(argument):
        yield argument
    elif _GLOB_CHARACTERS & set(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        if not matches:
            yield Failure(argument, "pattern matched no files")
        for match in matches:
            if os.path.isdir(match):
                yield from _walk_folder(match)
            else:
                yield match
    else:
        yield Failure(argument, "file not found")


def _walk_folder(folder: str) -> Iterator[str | Failure]:
    extensions = image_extensions()
    found_any = False
    for root, directories, files in os.walk(folder, onerror=None):
        directories[:] = sorted(d for d in directories if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in extensions:
                found_any = True
                yield os.path.join(root, name)
    if not found_any:
        yield Failure(folder, "folder holds no image files")
