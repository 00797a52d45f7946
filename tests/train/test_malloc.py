"""tune_malloc: glibc keeps freed training memory for reuse (checked on a fresh process's resident memory), the
user's own MALLOC_* settings win, and run.json records whether it took effect."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import replace

import pytest

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.data.load import Splits

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Allocates and frees a 24 MiB tensor (like one activation of a training step) and reports how much resident
# memory the free handed back to the OS. Untuned, glibc serves it with mmap() and unmaps it on free; tuned, it comes
# from the heap and stays there for the next step.
PROBE = """
import json, os, sys
import torch
from cifar_edge.train.environment import tune_malloc
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * page
tuned = tune_malloc() if sys.argv[1] == "tune" else False
block = torch.ones(24 * 2**20, dtype=torch.uint8)
held = resident()
del block
print(json.dumps({"tuned": tuned, "released_mib": (held - resident()) / 2**20}))
"""


def _probe(mode: str, **extra_env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | extra_env
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, env=environment, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_tuned_malloc_keeps_freed_memory_for_reuse() -> None:
    untuned, tuned = _probe("plain"), _probe("tune")
    assert untuned["released_mib"] > 20  # the default: straight back to the OS, page-faulted in again next step
    assert tuned["tuned"] is True and tuned["released_mib"] < 4


def test_the_users_malloc_settings_win() -> None:
    result = _probe("tune", MALLOC_TRIM_THRESHOLD_="0")
    assert result["tuned"] is False and result["released_mib"] > 20


def test_run_json_records_whether_malloc_was_tuned(tiny_splits: Splits, seed_config: TrainConfig) -> None:
    tuned = fit(seed_config, tiny_splits)
    assert json.loads(tuned.run_json.read_text())["environment"]["malloc_tuned"] is True
    plain = fit(replace(seed_config, tune_malloc=False, run_dir=f"{seed_config.run_dir}-plain"), tiny_splits)
    record = json.loads(plain.run_json.read_text())
    assert record["environment"]["malloc_tuned"] is False and record["config"]["tune_malloc"] is False
