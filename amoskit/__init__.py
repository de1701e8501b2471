"""amoskit: the host tools that turn a trained model into an AMOS22 task-1 submission and check it.

Layout (each folder one job):
- contract.py   the organisers' rules, stated once (TEAMNAME, file names, labels, limits, docker run)
- verbs/        what a user runs through make: build, run, package, verify_load, validate
- daemon/       Docker access: connecting, a throwaway empty daemon, logged container runs
- image/        the image build: build contexts, the post-build report
- tarball/      the saved image file: gzip streams, layouts, layers, compression
- verify/       judging a submission: image content checks, output checks, verdict report, previews
- data/         synthetic phantoms, sample cases, demo-model training and evaluation
- bench/        benchmarks (baseline measured in the same run), nnU-Net's predictor as reference
- devtools/     developer-only helpers (GPU-device check inputs)
"""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]   # the checkout: weights/, inference/, docker/
