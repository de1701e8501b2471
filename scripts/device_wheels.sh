#!/usr/bin/env bash
# Download, for the lent GPU machine (Python 3.12, torch already there, no network), the wheels that
# the engine and nnU-Net's predictor need there, into .whl/ (ignored by git; carried by the device
# tool, 64 MiB at most). Why a script: nnU-Net pulls packages that machine lacks, one of them is an
# sdist only (acvl-utils) and SimpleITK's wheel alone is 53 MB; re-packed with LZMA it is ~29 MB and
# pip installs it unchanged. Usage: scripts/device_wheels.sh [DIR]   (default .whl)
set -euo pipefail
dest="${1:-.whl}"
py="${PY:-python3}"
mkdir -p "$dest"
grep -qx "/$dest/" .git/info/exclude 2>/dev/null || echo "/$dest/" >>.git/info/exclude

# pinned like requirements-dev*.txt; the rest (torch, numpy, scipy, scikit-image, pandas, rich,
# einops, msgpack, ...) is already installed there
wheels=(nnunetv2==2.8.1 dynamic-network-architectures==0.4.4 batchgenerators==0.25.5
        SimpleITK==2.5.7 nibabel==5.4.2 blosc2==4.0.0 numexpr ndindex)
target=(--only-binary=:all: --no-deps --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet "$py" -m pip download -q -d "$dest" "${target[@]}" "${wheels[@]}"
# acvl-utils has no wheel on PyPI: build one (pure Python) from its sdist
ls "$dest"/acvl_utils-*.whl >/dev/null 2>&1 || quiet "$py" -m pip wheel -q --no-deps -w "$dest" acvl-utils==0.2.6

for whl in "$dest"/simpleitk-*.whl "$dest"/SimpleITK-*.whl; do
    [[ -f "$whl" ]] || continue
    "$py" - "$whl" <<'EOF'
import os, sys, zipfile
src = sys.argv[1]
tmp = src + ".lzma"
if os.path.exists(tmp):
    os.remove(tmp)
with zipfile.ZipFile(src) as zin:
    if all(i.compress_type == zipfile.ZIP_LZMA for i in zin.infolist()):
        sys.exit(0)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            info.compress_type = zipfile.ZIP_LZMA
            zout.writestr(info, data)
os.replace(tmp, src)
EOF
done
total=$(du -cm "$dest"/*.whl | tail -1 | cut -f1)
echo "$dest: $(ls "$dest"/*.whl | wc -l) wheels, ${total} MB (limit 64 MiB with the working tree)"
