"""What ``cifar-serve`` serves: a model file, or a Triton model repository (``<repo>/<model>/config.pbtxt`` and
``<repo>/<model>/<version>/model.onnx``) read with the batching settings of its config, so that one config drives
both Triton and cifar-serve (docs/serving.md).

The config is protobuf text format (Triton's ``ModelConfig``). This module reads it without protobuf or
tritonclient (the runtime stays light): a small, strict tokenizer and parser for the whole syntax (nested blocks,
lists, strings, comments), then the handful of fields the server needs, type-checked. Unknown fields and blocks are
parsed and ignored; anything malformed is a :class:`RepositoryError`: one line naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cifar_edge.runtime.model_file import ModelError

CONFIG_FILE = "config.pbtxt"
DEFAULT_MODEL_FILE = "model.onnx"
# The backends / platforms whose models are ONNX files onnxruntime runs (what cifar-serve can serve).
ONNX_BACKENDS = frozenset({"onnxruntime"})
ONNX_PLATFORMS = frozenset({"onnxruntime_onnx"})
# The batching defaults of cifar-serve and of cifar-export --format triton's config. Measured (2 shared vCPUs, the
# default 2 MB fp32 pixel-form model, closed-loop binary-tensor clients, 4 s each): a 0 ms window answered 1 client
# at 300 req/s (p50 2.4 ms) against 146-207 req/s (p50 4.5-6.3 ms) with 1-2 ms, and 64 clients at 274-405 req/s
# against 310-339 with 1-2 ms and 186 with 5 ms: batches form anyway while the workers are busy, so waiting only adds
# latency (Triton's default is 0 too).
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_QUEUE_DELAY_US = 0

_TOKEN = re.compile(
    r"(?P<space>[ \t\r\f\v]+)|(?P<newline>\n)|(?P<comment>#[^\n]*)"
    r'|(?P<string>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')'
    r"|(?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?)|(?P<name>[A-Za-z_][\w.]*)"
    r"|(?P<punct>[{}\[\]:,;<>])"
)
_CLOSING = {"{": "}", "<": ">"}


class RepositoryError(ModelError):
    """The model repository or its config cannot be served; ``str()`` is one line naming the file (exit code 2)."""


@dataclass(frozen=True)
class ServedModel:
    """One model to serve, with the settings its repository config gives (None: the server's defaults)."""

    name: str
    model_path: Path  # the ONNX file
    max_batch_size: int | None = None  # requests are gathered into batches of up to this many images (1: no batching)
    max_queue_delay_ms: float | None = None  # how long the first request of a batch waits for others
    instances: int | None = None  # model instances (instance_group counts, summed)
    labels_path: Path | None = None  # the classification extension's labels (label_filename), one per line


@dataclass(frozen=True)
class _Value:
    """A parsed field value: a scalar token's text (``kind`` "string", "number" or "name") or a nested block."""

    kind: str
    text: str
    line: int
    block: dict[str, list[_Value]] | None = None


class _Parser:
    """Protobuf text format into {field: [values]} (every occurrence kept, with its line for errors)."""

    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.tokens: list[tuple[str, str, int]] = []
        line, position = 1, 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                self.fail(line, f"unexpected character {text[position]!r}")
            assert match is not None and match.lastgroup is not None
            if match.lastgroup == "newline":
                line += 1
            elif match.lastgroup not in ("space", "comment"):
                self.tokens.append((match.lastgroup, match.group(), line))
            position = match.end()
        self.index = 0
        self.last_line = line

    def fail(self, line: int, message: str) -> None:
        raise RepositoryError(f"{self.path}:{line}: {message}")

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.index] if self.index < len(self.tokens) else ("end", "end of file", self.last_line)

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token[0] == "end" or (expected is not None and token[1] != expected):
            self.fail(token[2], f"expected {expected or 'a value'}, found {token[1]!r}")
        self.index += 1
        return token

    def message(self, closing: str | None) -> dict[str, list[_Value]]:
        fields: dict[str, list[_Value]] = {}
        while True:
            kind, text, line = self.peek()
            if kind == "end" or (closing is not None and text == closing):
                if closing is not None:
                    self.take(closing)
                return fields
            if kind != "name":
                self.fail(line, f"expected a field name, found {text!r}")
            self.take()
            fields.setdefault(text, []).extend(self.field_values())
            if self.peek()[1] in (",", ";"):
                self.take()

    def field_values(self) -> list[_Value]:
        colon = self.peek()[1] == ":"
        if colon:
            self.take(":")
        if self.peek()[1] == "[":
            return self.list_values()
        if self.peek()[1] in _CLOSING:
            return [self.block()]
        if not colon:
            self.fail(self.peek()[2], f"expected ':' or '{{', found {self.peek()[1]!r}")
        return [self.scalar()]

    def list_values(self) -> list[_Value]:
        self.take("[")
        values: list[_Value] = []
        while self.peek()[1] != "]":
            values.append(self.block() if self.peek()[1] in _CLOSING else self.scalar())
            if self.peek()[1] == ",":
                self.take(",")
            elif self.peek()[1] != "]":
                self.fail(self.peek()[2], f"expected ',' or ']', found {self.peek()[1]!r}")
        self.take("]")
        return values

    def block(self) -> _Value:
        opening, line = self.peek()[1], self.peek()[2]
        self.take(opening)
        return _Value("block", opening, line, self.message(_CLOSING[opening]))

    def scalar(self) -> _Value:
        kind, text, line = self.take()
        if kind not in ("string", "number", "name"):
            self.fail(line, f"expected a value, found {text!r}")
        if kind == "string":
            text = _unquote(text)
        return _Value(kind, text, line)


def _unquote(token: str) -> str:
    body = token[1:-1]
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in body else body


def parse_config(path: Path) -> dict[str, list[_Value]]:
    """The whole config at ``path`` as nested {field: [values]}; RepositoryError when it is not text format."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RepositoryError(f"{path}: cannot read the model config ({error})") from None
    return _Parser(text, path).message(None)


class _Fields:
    """Typed access to one parsed block: each known field checked, the file and line named when it is wrong."""

    def __init__(self, fields: dict[str, list[_Value]], path: Path) -> None:
        self.fields, self.path = fields, path

    def one(self, name: str, kind: str) -> _Value | None:
        values = self.fields.get(name, [])
        if len(values) > 1:
            raise RepositoryError(f"{self.path}:{values[1].line}: {name} is given more than once")
        if values and values[0].kind != kind:
            expected = {"block": "a { ... } block", "number": "a number", "string": "a quoted string"}[kind]
            raise RepositoryError(f"{self.path}:{values[0].line}: {name} must be {expected}")
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self.one(name, "string")
        return None if value is None else value.text

    def integer(self, name: str, minimum: int) -> int | None:
        value = self.one(name, "number")
        if value is None:
            return None
        if not re.fullmatch(r"[-+]?\d+", value.text) or int(value.text) < minimum:
            raise RepositoryError(f"{self.path}:{value.line}: {name} must be an integer >= {minimum}, got {value.text}")
        return int(value.text)

    def blocks(self, name: str) -> list[_Fields]:
        values = self.fields.get(name, [])
        for value in values:
            if value.block is None:
                raise RepositoryError(f"{self.path}:{value.line}: {name} must be a {{ ... }} block")
        return [_Fields(value.block or {}, self.path) for value in values]


def read_model_folder(folder: Path) -> ServedModel:
    """The model in ``folder`` (``config.pbtxt`` + numbered version folders): its highest version's ONNX file."""
    config_path = folder / CONFIG_FILE
    config = _Fields(parse_config(config_path), config_path)
    name = config.text("name") or folder.name
    if name != folder.name:
        raise RepositoryError(f"{config_path}: name {name!r} differs from its folder's name {folder.name!r}")
    backend, platform = config.text("backend"), config.text("platform")
    if backend not in (None, *ONNX_BACKENDS) or platform not in (None, *ONNX_PLATFORMS):
        raise RepositoryError(f"{config_path}: backend {backend or platform!r} is not onnxruntime: cannot serve it")
    file_name = _plain_name(config.text("default_model_filename") or DEFAULT_MODEL_FILE, config_path)
    max_batch_size = config.integer("max_batch_size", 1)
    batching = config.blocks("dynamic_batching")
    if len(batching) > 1:
        raise RepositoryError(f"{config_path}: dynamic_batching is given more than once")
    delay_us = (batching[0].integer("max_queue_delay_microseconds", 0) or 0) if batching else None
    if not batching:  # Triton runs each request on its own without dynamic_batching: batching off
        max_batch_size = 1
    counts = [group.integer("count", 1) for group in config.blocks("instance_group")]
    labels = [
        _plain_name(label, config_path)
        for output in config.blocks("output")
        if (label := output.text("label_filename")) is not None
    ]
    labels_path = folder / labels[0] if labels else None
    if labels_path is not None and not labels_path.is_file():
        raise RepositoryError(f"{config_path}: label_filename {labels[0]!r} is not a file in {folder}")
    return ServedModel(
        name=name,
        model_path=_latest_version(folder, file_name),
        max_batch_size=max_batch_size,
        max_queue_delay_ms=None if delay_us is None else delay_us / 1000.0,
        instances=sum(count or 1 for count in counts) if counts else None,
        labels_path=labels_path,
    )


def _plain_name(name: str, config_path: Path) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise RepositoryError(f"{config_path}: {name!r} must be a plain file name inside the model folder")
    return name


def _latest_version(folder: Path, file_name: str) -> Path:
    versions = sorted((int(entry.name), entry) for entry in folder.iterdir() if entry.name.isdigit() and entry.is_dir())
    for _, version in reversed(versions):
        if (version / file_name).is_file():
            return version / file_name
    raise RepositoryError(f"{folder}: no version folder (1/, 2/, ...) holds {file_name}")


def read_repository(path: str | Path, model_name: str | None = None) -> ServedModel:
    """The model of a model folder, or of a repository folder: its one model, or of several the one named
    ``model_name`` (a one-model repository ignores it: cifar-serve serves that model under the name it is given)."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return read_model_folder(path)
    try:
        models = sorted(entry for entry in path.iterdir() if (entry / CONFIG_FILE).is_file())
    except OSError as error:
        raise RepositoryError(f"{path}: cannot read the model repository ({error.strerror or error})") from None
    if not models:
        raise RepositoryError(f"{path}: not a model repository (no <model>/{CONFIG_FILE} inside)")
    if model_name is not None and len(models) > 1:  # one model is served under any name the caller gives
        models = [model for model in models if model.name == model_name]
        if not models:
            raise RepositoryError(f"{path}: the repository has no model {model_name!r}")
    if len(models) > 1:
        names = ", ".join(model.name for model in models)
        raise RepositoryError(f"{path}: the repository holds several models ({names}); cifar-serve serves one")
    return read_model_folder(models[0])


def served_model(path: str | Path, model_name: str | None = None) -> ServedModel:
    """What ``cifar-serve PATH`` serves: a model file (named after its stem, the server's defaults) or a repository
    (or model) folder with its config's settings. ``model_name`` picks among a repository's several models."""
    path = Path(path)
    if path.is_dir():
        return read_repository(path, model_name)
    if not path.is_file():
        raise RepositoryError(f"{path}: no such model file or model repository")
    return ServedModel(name=path.stem, model_path=path)


def find_model_file(path: Path) -> Path:
    """The ONNX file a repository (or model) folder serves: the format table's locator of the triton row."""
    return read_repository(path).model_path
