"""Every console entry point: a missing optional extra, Ctrl-C and a write failure are one line with their exit code.

The missing-extra cases run the real entry points in fresh interpreters where the [train] extra's modules (torch,
onnx, ...) or onnxruntime cannot be imported, as on a runtime-only install.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import typer
from cli_helpers import ENTRY_POINTS, TRAIN_EXTRA_MODULES, error_lines, run_cli

from cifar_edge.runtime.common.atomic_io import WriteError
from cifar_edge.runtime.common.command import ExitCode, run_command

NEEDS_TRAIN = "needs the [train] extra ({module} is not installed): pip install 'cifar-edge[train,cpu]'"


@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        ("cifar-train", ["--data", "{images}", "--epochs", "1"]),
        ("cifar-export", ["{run}"]),
        ("cifar-bench", ["{run}"]),
        ("cifar-eval", ["{run}", "--data", "{images}"]),
    ],
)
def test_commands_that_need_the_train_extra_say_so(
    command: str, arguments: list[str], tiny_run_dir: Path, tiny_dataset_dir: Path
) -> None:
    args = [arg.format(run=tiny_run_dir, images=tiny_dataset_dir) for arg in arguments]
    done = run_cli(command, *args, block=TRAIN_EXTRA_MODULES, timeout=120)
    assert done.returncode == ExitCode.USAGE, done.stderr
    (line,) = error_lines(done.stderr, command)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert any(NEEDS_TRAIN.format(module=module) in line for module in ("torch", "onnx")), line
    if command == "cifar-eval":  # it also offers the torch-free alternative
        assert line.startswith(f"cifar-eval: error: {tiny_run_dir}: evaluating a PyTorch (run folder) model needs")


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_help_works_without_the_extras(command: str) -> None:
    done = run_cli(command, "--help", block=(*TRAIN_EXTRA_MODULES, "onnxruntime"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Exit codes:" in done.stdout


def test_infer_without_onnxruntime_names_the_extra(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x08\x3a\x00")  # passes the framing check: ir_version + an empty graph
    done = run_cli("cifar-infer", image, "--model", model, block=("onnxruntime",), timeout=120)
    assert done.returncode == ExitCode.PROVIDER_UNAVAILABLE, done.stderr
    assert done.stderr.count("\n") == 1 and "pip install 'cifar-edge[cpu]'" in done.stderr


def _app(error: BaseException) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def command() -> None:
        raise error

    return app


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (KeyboardInterrupt(), 130, "tool: interrupted"),  # typer turns this into a silent Exit(130)
        (WriteError("out/eval.json", 28, "no space left on device"), 5, "tool: error: cannot write out/eval.json: "),
        (ModuleNotFoundError("No module named 'torch'", name="torch"), 2, "tool: error: needs the [train] extra"),
    ],
)
def test_run_command_turns_what_reaches_it_into_one_line(
    error: BaseException, code: int, line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["tool"])
    with pytest.raises(SystemExit) as done:
        run_command(_app(error), "tool: interrupted", command="tool")
    assert done.value.code == code
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith(line), stderr


def test_a_module_no_extra_provides_is_a_real_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["tool"])
    with pytest.raises(ModuleNotFoundError):
        run_command(_app(ModuleNotFoundError("No module named 'typo'", name="typo")), "x", command="tool")


class _FakeStdout(io.StringIO):
    def fileno(self) -> int:
        return 99


def test_closed_stdout_ends_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["tool"])
    dup2_calls: list[int] = []
    monkeypatch.setattr("os.dup2", lambda _fd, target: dup2_calls.append(target))
    monkeypatch.setattr("sys.stdout", _FakeStdout())
    with pytest.raises(SystemExit) as done:  # typer turns a BrokenPipeError into sys.exit(1)
        run_command(_app(BrokenPipeError(32, "Broken pipe")), "x", command="tool")
    assert done.value.code == ExitCode.OK and dup2_calls == [99]
