"""The runtime never imports torch: checked in a fresh interpreter running a real classification.

The static side (no runtime module imports torch, train or export) is an import-linter contract in pyproject.toml,
run by the README's test command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FRESH_PROCESS = """
import json, sys
image, model = sys.argv[1], sys.argv[2]
import cifar_edge.runtime
light = "onnxruntime" not in sys.modules  # the package import itself stays light
from cifar_edge.runtime import Classifier
from cifar_edge.runtime.infer.cli import main
sys.argv = ["cifar-infer", image, "--model", model, "--json", "--provider", "auto"]
try:
    main()
except SystemExit as done:
    code = done.code
with Classifier(model) as classifier:
    label = classifier.predict(image).label
sys.argv = ["cifar-infer", "--doctor", "--json", "--model", model]
try:
    main()
except SystemExit as done:
    doctor_code = done.code
banned = ("torch", "torchvision", "onnx", "cifar_edge.train", "cifar_edge.export")
loaded = sorted(m for m in sys.modules if m in banned or m.startswith(tuple(b + "." for b in banned)))
print(json.dumps({"light": light, "code": code, "label": label, "doctor_code": doctor_code, "loaded": loaded}))
"""


def test_fresh_process_classifies_without_importing_torch(colour_model: Path, red_png: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(red_png), str(colour_model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"light": True, "code": 0, "label": "red", "doctor_code": 0, "loaded": []}
    assert json.loads(done.stdout.splitlines()[0])["label"] == "red"  # the CLI's own JSON record
