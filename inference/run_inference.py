"""AMOS22 task 1 inference entry point: `python run_inference.py`, no arguments.

Reads every *.nii.gz in /workspace/input (or /input, ./input; INPUT_DIR overrides) and writes a
same-named uint8 label map to the partner output folder. See amosseg/settings.py for the knobs.
`python run_inference.py` puts this file's folder first on the import path, so `amosseg` beside it
is the engine that runs, in the image and in a checkout alike.
"""
import sys
from pathlib import Path

from amosseg.runner import run

if __name__ == "__main__":
    sys.exit(run(Path(__file__).resolve().parent))
