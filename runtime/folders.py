"""Walking image folders safely: symlinked folders are followed, but each real folder is entered once.

``os.walk(followlinks=True)`` (what torchvision's ImageFolder uses) and recursive ``glob`` follow a symlink that
points back to one of its parents again and again, until the path is too long: a tree of 20 real files became 420
training samples. Here every folder is identified by its ``(st_dev, st_ino)``; a folder already entered (a symlink
loop, or a second path to the same folder) is skipped, with a one-line warning naming the skipped link. Real
folders win over links to them: a link is only followed when its target is not reached without it.

Used by training's ImageFolder discovery, ``cifar-infer``'s folder and ``**`` pattern expansion and the runtime's
labelled folders for ``cifar-eval``, so the three read a tree the same way.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Iterator, Sequence

Warn = Callable[[str], None]


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
) -> Iterator[tuple[int, str, list[str]]]:
    """``(index of the top, folder, sorted non-folder names in it)`` for every folder under each of ``tops``.

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
                yield index, folder, names


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
        names, sub_folders = [], []
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
