"""What every command's console entry point does around its typer app: Ctrl-C, closed pipes, Pillow's chatter."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

from cifar_edge.runtime.errors import ExitCode


def run_command(app: Callable[[], object], interrupted: str) -> None:
    """Run ``app``; Ctrl-C prints ``interrupted`` (one line) and exits 130, a closed stdout ends quietly."""
    # Pillow's advisory warnings about odd metadata (corrupt EXIF, palette transparency) would only clutter stderr:
    # every real problem is reported per input, and decompression bombs are errors in the decoder itself.
    warnings.filterwarnings("ignore", module=r"PIL(\..*)?$")
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write(f"{interrupted}\n")
        sys.exit(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `cifar-infer ... --json | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(ExitCode.OK)
