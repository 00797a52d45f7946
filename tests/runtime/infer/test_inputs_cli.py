"""cifar-infer's input lists through the real entry point: stdin names are kept byte for byte (only the line
terminator goes), and a folder with a symlink loop is classified once per real file, with a warning line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cli_helpers import run_cli
from PIL import Image


def test_stdin_keeps_spaces_in_names(colour_model: Path, tmp_path: Path) -> None:
    spaced = tmp_path / "red cat .png"  # a real file whose name ends in a space before the extension... and one
    trailing = tmp_path / "red dog.png "  # whose name ends in a space
    for path in (spaced, trailing):
        Image.new("RGB", (32, 32), (220, 20, 20)).save(path, format="PNG")
    listing = f"{spaced}\r\n\n{trailing}\n{tmp_path / 'red dog.png'}\n".encode()
    done = run_cli("cifar-infer", "-", "--model", colour_model, "--json", "--quiet", input=listing.decode())
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [record["path"] for record in records] == [str(spaced), str(trailing), str(tmp_path / "red dog.png")]
    assert [record.get("label") for record in records] == ["red", "red", None]
    assert records[2]["error"] == "file not found" and done.returncode == 1


def test_symlink_loop_is_read_once_with_a_warning(colour_model: Path, colour_images: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    os.symlink(colour_images, tree, target_is_directory=True)
    os.symlink("..", colour_images / "red" / "loop")
    try:
        done = run_cli("cifar-infer", tree, "--model", colour_model, "--json", "--quiet")
    finally:
        os.unlink(colour_images / "red" / "loop")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 12  # 12 real files, not 12 per pass around the loop
    assert done.stderr.splitlines() == [
        f"warning: skipped {tree / 'red' / 'loop'}: a symlink loop (it leads back to {colour_images})"
    ]
