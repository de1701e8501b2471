"""AMOS22 task 1 inference entry point: `python run_inference.py`, no arguments.

Reads every *.nii.gz in /workspace/input (or /input, ./input; INPUT_DIR overrides) and writes a
same-named uint8 label map to the partner output folder. `--help` lists the folders and every
environment variable (amosseg/settings.py).
`python run_inference.py` puts this file's folder first on the import path, so `amosseg` beside it
is the engine that runs, in the image and in a checkout alike.
"""
import sys
from pathlib import Path

if __name__ == "__main__":
    if sys.argv[1:]:  # before torch is imported: help is instant
        from amosseg.settings import usage
        if sys.argv[1:] in (["-h"], ["--help"]):
            print(usage())
            sys.exit(0)
        print(f"error: run_inference.py takes no arguments (got {' '.join(sys.argv[1:])}); settings come from "
              "the environment: python run_inference.py --help", file=sys.stderr)
        sys.exit(2)
    from amosseg.runner import run
    sys.exit(run(Path(__file__).resolve().parent))
