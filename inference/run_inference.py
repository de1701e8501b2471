"""AMOS22 task 1 inference entry point: `python run_inference.py`, no arguments.

Reads every *.nii.gz in /workspace/input (or /input, ./input; INPUT_DIR overrides) and writes a
same-named uint8 label map to the partner output folder. See amosseg/runner.py for the knobs.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from amosseg.runner import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(Path(__file__).resolve().parent))
