"""Finding image files: ``cifar-infer``'s command-line inputs, and folder walks that survive symlink loops.

Walking: symlinked folders are followed, but each real folder is entered once. ``os.walk(followlinks=True)`` (what
torchvision's ImageFolder uses) and recursive ``glob`` follow a symlink that points back to one of its parents again
and again, until the path is too long: a tree of 20 real files became 420 training samples. Here every folder is
identified by its ``(st_dev, st_ino)``; a folder already entered (a symlink loop, or a second path to the same
folder) is skipped, with a one-line warning naming the skipped link. Real folders win over links to them: a link is
only followed when its target is not reached without it. Training's ImageFolder discovery, ``cifar-infer``'s folder
and ``**`` pattern expansion and the labelled folders of ``cifar-eval`` all walk this way, so they read a tree alike.

Command-line inputs (docs/runtime.md, "Inputs"):

- A file is used as given, whatever its extension (a non-image then fails with a clear reason).
- A folder is searched recursively for files with an image extension Pillow can open (case-insensitive): a
  folder's own files in sorted order, then its subfolders in sorted order; hidden files and folders (names
  starting with ".") are skipped. Symlinked folders are followed, each real folder once (above).
- An argument that does not exist but contains ``*``, ``?`` or ``[`` is a glob pattern (``**`` recurses, with
  the same loop protection); every match is used, folders among the matches are searched as above.
- ``-`` reads one input per line from standard input, each handled like an argument: only the line terminator
  (``\n`` or ``\r\n``) is removed, so names with leading or trailing spaces work; empty lines are skipped.
- The same file reached twice (a folder and a glob inside it, a symlink or hard link to it) is classified once,
  at its first position.
- An input that matches nothing is a Failure in its place; the other inputs still run.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import BinaryIO, NamedTuple, TextIO

from PIL import Image

from cifar_edge.runtime.predictions import Failure

Warn = Callable[[str], None]
STDIN_MARKER = "-"
_GLOB_CHARACTERS = frozenset("*?[")


class FolderFiles(NamedTuple):
    """One folder of a walk: which of the walked tops it is under, its path, its sorted non-folder names."""

    top: int
    folder: str
    names: list[str]


def warn_on_stderr(message: str) -> None:
    """The default for ``warn``: ``warning: <message>`` on stderr."""
    sys.stderr.write(f"warning: {message}\n")


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return stat.st_dev, stat.st_ino


def _is_within(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or below it (both real paths)."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives (Windows)
        return False


def _describe_skip(link: str, first: str) -> str:
    parent = os.path.realpath(os.path.dirname(link) or ".")
    why = "a symlink loop back to" if _is_within(parent, os.path.realpath(first)) else "the same folder as"
    link, first = os.path.normpath(link), os.path.normpath(first)
    return f"skipped {link}: {why} {first}, already read (each real folder is read once)"


def walk_folders(
    tops: Sequence[str | os.PathLike[str]], *, skip_hidden: bool = False, warn: Warn | None = None
) -> Iterator[FolderFiles]:
    """A :class:`FolderFiles` for every folder under each of ``tops``.

    Depth first, a folder's own entries before its sub-folders, sub-folders in sorted order (``os.walk`` order).
    Symlinked folders are followed; a folder already entered anywhere in this walk is skipped with ``warn``
    (default: a line on stderr). The tops themselves are claimed first (real folders before symlinks), so a top
    that leads into another top is skipped rather than read twice. ``skip_hidden`` leaves out names starting
    with ".". Unreadable folders are passed over silently, as ``os.walk`` does.
    """
    warn = warn or warn_on_stderr
    entered: dict[tuple[int, int], str] = {}
    claimed: list[bool] = []
    paths = [os.fspath(top) for top in tops]
    order = sorted(range(len(paths)), key=lambda index: os.path.islink(paths[index]))  # real folders claim first
    allowed = [False] * len(paths)
    for index in order:
        key = _identity(paths[index])
        if key is None:
            continue
        if key in entered:
            warn(_describe_skip(paths[index], entered[key]))
            continue
        entered[key] = paths[index]
        allowed[index] = True
    claimed.extend(allowed)
    for index, top in enumerate(paths):
        if claimed[index]:
            for folder, names in _walk_claimed(top, entered, skip_hidden, warn):
                yield FolderFiles(index, folder, names)


def walk_folder(
    top: str | os.PathLike[str], *, skip_hidden: bool = False, warn: Warn | None = None
) -> Iterator[tuple[str, list[str]]]:
    """``(folder, sorted non-folder names)`` for ``top`` and every folder below it (see :func:`walk_folders`)."""
    for _, folder, names in walk_folders([top], skip_hidden=skip_hidden, warn=warn):
        yield folder, names


def _walk_claimed(
    top: str, entered: dict[tuple[int, int], str], skip_hidden: bool, warn: Warn
) -> Iterator[tuple[str, list[str]]]:
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as scanner:
                entries = list(scanner)
        except OSError:
            continue
        names: list[os.DirEntry[str]] = []
        sub_folders: list[os.DirEntry[str]] = []
        for entry in entries:
            if skip_hidden and entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir()  # follows symlinks
            except OSError:
                is_folder = False
            (sub_folders if is_folder else names).append(entry)
        yield folder, sorted(entry.name for entry in names)
        sub_folders.sort(key=lambda entry: entry.name)
        # Claim the real sub-folders before the symlinked ones: a link to a sibling is the one that is skipped.
        keep: set[str] = set()
        here = os.path.realpath(folder)
        for entry in sorted(sub_folders, key=lambda entry: entry.is_symlink()):
            key = _identity(entry.path)
            if key is None:
                continue
            if entry.is_symlink() and _is_within(here, os.path.realpath(entry.path)):
                shown = os.path.normpath(entry.path)
                warn(f"skipped {shown}: a symlink loop (it leads back to {os.path.realpath(entry.path)})")
                continue
            if key in entered:
                warn(_describe_skip(entry.path, entered[key]))
                continue
            entered[key] = entry.path
            keep.add(entry.path)
        stack.extend(entry.path for entry in reversed(sub_folders) if entry.path in keep)


def loop_safe_glob(pattern: str, warn: Warn | None = None) -> list[str]:
    """``sorted(glob.glob(pattern, recursive=True))``, except that ``**`` walks with :func:`walk_folder`.

    Recursive glob follows symlinked folders without end (and, with two loops, exponentially); here ``**`` matches
    each real folder once, under the first path that reaches it, hidden folders excluded as glob excludes them.
    """
    return sorted(dict.fromkeys(_glob(pattern, warn or warn_on_stderr)))


def _glob(pattern: str, warn: Warn) -> Iterator[str]:
    parts = pattern.split("/") if os.sep == "/" else pattern.replace(os.sep, "/").split("/")
    if "**" not in parts:
        yield from glob.glob(pattern)
        return
    at = parts.index("**")
    head, tail = "/".join(parts[:at]), parts[at + 1 :]
    if at > 0 and head == "":
        head = "/"  # an absolute pattern: "/**/..."
    if head and glob.has_magic(head):
        bases = sorted(path for path in glob.glob(head) if os.path.isdir(path))
    elif head:
        bases = [head] if os.path.isdir(head) else []
    else:
        bases = [""]
    for base in bases:
        for folder, names in walk_folder(base or os.curdir, skip_hidden=True, warn=warn):
            shown = _relative(folder, base)
            if tail:
                rest = "/".join(tail)
                prefix = glob.escape(shown) + "/" if shown else ""
                yield from _glob(prefix + rest, warn)
            else:  # "**" last: every folder and file below, as glob returns them ("a/**": "a/", "a/b", ...)
                if folder == (base or os.curdir):
                    if base:
                        yield base.rstrip("/") + "/"
                else:
                    yield shown
                for name in names:
                    yield os.path.join(shown, name) if shown else name


def _relative(folder: str, base: str) -> str:
    """``folder`` as glob would print it: under ``base`` as given (no "./" when the pattern had no folder)."""
    if base:
        return folder
    return (
        folder[len(os.curdir) + 1 :]
        if folder.startswith(os.curdir + os.sep)
        else ("" if folder == os.curdir else folder)
    )


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
        yield from _images_in_folder(argument, warn)
    elif _exists(argument):
        yield argument
    elif _GLOB_CHARACTERS & set(argument):
        matches = loop_safe_glob(argument, warn)
        if not matches:
            yield Failure(argument, "pattern matched no files")
        for match in matches:
            if os.path.isdir(match):
                yield from _images_in_folder(match, warn)
            else:
                yield match
    else:
        yield Failure(argument, "file not found")


def _images_in_folder(folder: str, warn: Warn) -> Iterator[str | Failure]:
    extensions = image_extensions()
    found_any = False
    for root, names in walk_folder(folder, skip_hidden=True, warn=warn):
        for name in names:
            if os.path.splitext(name)[1].lower() in extensions:
                found_any = True
                yield os.path.join(root, name)
    if not found_any:
        yield Failure(folder, "folder holds no image files")
