"""ImageFolder trees with symlinks: each real folder is read once, a loop is skipped with a warning naming it.

The issue's case: a directory symlink pointing at its parent made 20 real files train as 420 samples (os.walk with
followlinks goes round the loop until the path is too long).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from data_test_support import write_image_folder
from typer.testing import CliRunner

from cifar_edge.train.cli import app
from cifar_edge.train.data.folder import find_image_folder_files


def _looped_tree(root: Path) -> Path:
    write_image_folder(root / "train", per_class=7, seed=3)  # 21 real files
    os.symlink("..", root / "train" / "red" / "parent")  # red/parent -> train/: every class, forever
    os.symlink("../green", root / "train" / "blue" / "also_green")  # a second path to green/
    return root


def test_discovery_reads_each_real_file_once(tmp_path: Path, capsys) -> None:
    root = _looped_tree(tmp_path / "data")
    files = find_image_folder_files(root)
    assert len(files.train_files) == 21 and len(set(map(os.path.realpath, files.train_files))) == 21
    assert files.train_labels.tolist() == [0] * 7 + [1] * 7 + [2] * 7
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        f"warning: skipped {root / 'train' / 'blue' / 'also_green'}: the same folder as "
        f"{root / 'train' / 'green'}, already read (each real folder is read once)",
        f"warning: skipped {root / 'train' / 'red' / 'parent'}: a symlink loop (it leads back to {root / 'train'})",
    ]


def test_cifar_train_trains_on_the_real_files_only(tmp_path: Path) -> None:
    root = _looped_tree(tmp_path / "data")
    run_dir = tmp_path / "run"
    arguments = ["--data", str(root), "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir)]
    fast = ["--recipe", "seed", "--batch-size", "16", "--threads", "1", "--epochs", "1", "--json"]
    result = CliRunner().invoke(app, [*arguments, *fast])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "run.json").read_text())["metrics"]
    assert metrics["train_images"] + metrics["val_images"] == 21
    assert f"warning: skipped {root / 'train' / 'red' / 'parent'}: a symlink loop" in result.stderr
