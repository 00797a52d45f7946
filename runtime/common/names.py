"""Every file and folder name of a run folder and of the artifacts written beside it, defined once."""

from __future__ import annotations

# cifar-train's run folders: runs/<timestamp>/, and runs/latest naming the newest one.
RUNS_DIR = "runs"
LATEST_LINK = "latest"
RUN_JSON = "run.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"

# The model cifar-infer reads by default (runs/latest/model.onnx). Every artifact's name, this one's included, is a
# row of the format table (cifar_edge.export.formats); each passing one gets "<artifact>.parity.json" beside it.
MODEL_ONNX = "model.onnx"
PARITY_SUFFIX = ".parity.json"
# While cifar-export writes an artifact and its parity report, it holds an exclusive lock on "<artifact>.lock".
LOCK_SUFFIX = ".lock"

# cifar-eval writes into "<model file name>.eval/" beside the model (a run folder: inside it).
EVAL_SUFFIX = ".eval"
EVAL_JSON = "eval.json"
CONFUSION_PNG = "confusion.png"
MISCLASSIFIED_PNG = "misclassified.png"

# cifar-bench writes into the run folder (or --output-dir).
BENCH_MD = "bench.md"
BENCH_JSON = "bench.json"

# cifar-bench with several run folders measures them as a menu, written into --output-dir (default: the current
# folder). A run whose record bakes in TTA gets its one-pass ONNX exports in this sub-folder of its run folder, so
# its own (TTA) model.onnx is never replaced.
MENU_MD = "menu.md"
MENU_JSON = "menu.json"
MENU_PNG = "menu.png"
MENU_ONE_PASS_DIR = "one-pass"
