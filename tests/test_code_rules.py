"""The habits that keep the code a house a newcomer can live in (docs/architecture.md), checked on the source.

Each rule reads the packages' syntax trees, so a violation names the file and line to fix.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("train", "export", "runtime")
MAX_LINES = 350  # a module past this has stopped owning one concept
MAX_TUPLE = 3  # more items than this want a record with named fields
MAX_POSITIONAL = 5  # more than this want keywords
# Variadic APIs whose items are positional by design: rich's columns and table cells, torch's layer lists, logging's
# format arguments.
VARIADIC = {"Progress", "Sequential", "add_row", "debug", "info", "warning", "error"}


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _trees() -> Iterator[tuple[Path, ast.Module]]:
    for path in _modules():
        yield path.relative_to(ROOT), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _tuple_width(node: ast.expr | None) -> int:
    """Items of a ``tuple[a, b, ...]`` annotation or a tuple literal; 0 for anything else (``tuple[int, ...]`` too)."""
    if isinstance(node, ast.Tuple):
        return len(node.elts)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("tuple", "Tuple"):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if any(isinstance(item, ast.Constant) and item.value is Ellipsis for item in items):
            return 0
        return len(items)
    return 0


def test_no_function_returns_a_tuple_of_more_than_three_items() -> None:
    offenders = []
    for path, tree in _trees():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            widths = [_tuple_width(function.returns)]
            widths += [
                _tuple_width(node.value)
                for node in ast.walk(function)
                if isinstance(node, ast.Return) and _owner(function, node)
            ]
            if max(widths) > MAX_TUPLE:
                offenders.append(f"{path}:{function.lineno} {function.name} returns {max(widths)} items")
    assert not offenders, "use a dataclass or NamedTuple:\n" + "\n".join(offenders)


def _owner(function: ast.AST, node: ast.AST) -> bool:
    """Whether ``node`` belongs to ``function`` itself rather than to a function nested in it."""
    for inner in ast.walk(function):
        nested = inner is not function and isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if nested and any(child is node for child in ast.walk(inner)):
            return False
    return True


def test_no_call_passes_more_than_five_positional_arguments() -> None:
    offenders = [
        f"{path}:{node.lineno} {ast.unparse(node.func)}(...) with {len(node.args)} positional arguments"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and len(node.args) > MAX_POSITIONAL and _callee(node) not in VARIADIC
    ]
    assert not offenders, "pass keywords:\n" + "\n".join(offenders)


def _callee(call: ast.Call) -> str:
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else ""


def test_no_module_assigns_another_objects_private_fields() -> None:
    """``self._x = ...`` is a class minding its own state; ``other._x = ...`` or a scheduler's ``lr_lambdas``
    rewritten from outside is one module reaching into another's internals."""
    offenders = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AugAssign | ast.AnnAssign)
                else []
            )
            for target in targets:
                for attribute in ast.walk(target):
                    if not isinstance(attribute, ast.Attribute):
                        continue
                    owner = attribute.value
                    own = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
                    private = attribute.attr.startswith("_") and not attribute.attr.startswith("__")
                    if private and not own:
                        offenders.append(f"{path}:{node.lineno} assigns {ast.unparse(attribute)}")
            # A scheduler's lambdas are its internals: whoever owns the schedule changes it through its own method.
            if isinstance(node, ast.Attribute) and node.attr == "lr_lambdas":
                offenders.append(f"{path}:{node.lineno} reaches into {ast.unparse(node)}")
    assert not offenders, "ask the owner through a public method:\n" + "\n".join(offenders)


def test_no_module_is_longer_than_350_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {count} lines"
        for path in _modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert not long, "split by concept:\n" + "\n".join(long)


# A path in backticks under one of the repository's top-level folders (file names alone, like `run.json`, are the
# names a command writes, not paths of the repository).
_PATH = re.compile(r"`((?:train|export|runtime|tests|bench|docs|examples|\.ci|\.typecheck)/[\w./-]*|pyproject\.toml)`")


def test_every_path_the_architecture_map_names_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = sorted({match.group(1) for match in _PATH.finditer(text)})
    assert len(named) > 20, "the map should name the packages' modules"
    missing = [name for name in named if not (ROOT / name).exists()]
    assert not missing, "docs/architecture.md names paths that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_on_the_map(package: str) -> None:
    """A new module gets a line in docs/architecture.md, so the map never falls behind the code."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    unnamed = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py" and str(path.relative_to(ROOT)) not in text
    ]
    assert not unnamed, "add these to docs/architecture.md:\n" + "\n".join(unnamed)
