"""bench/decode.py: Pillow's decoding path against the runtime's, on real files, with a pixel check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parents[2] / "bench" / "decode.py"


def test_reports_both_paths_and_their_ratio_on_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(6):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.{'jpg' if index % 2 else 'png'}")
    out = tmp_path / "decode.json"
    command = [sys.executable, str(BENCH), "--folder", str(tmp_path / "images"), "--rounds", "1", "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    record = json.loads(out.read_text())
    assert record["images"] == 6 and record["pixel_mismatches"] == 0
    assert set(record["cpu_us_per_image"]) == {"pillow", "runtime"}
    assert record["speedup"] > 0 and "faster than Pillow's" in completed.stdout


def test_an_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, str(BENCH), "--folder", str(tmp_path)], capture_output=True, text=True)
    assert completed.returncode == 2 and "no files" in completed.stderr
