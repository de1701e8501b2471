#!/usr/bin/env bash
# Download every wheel the image's /opt/venv needs into a folder, with the host's pip, so the image
# builds offline (`pip install --no-index`), for either engine: ENGINE=nnunet adds nnU-Net's predictor
# (inference/requirements-nnunet*.txt; its pure-Python sdists are built into wheels here), and for a
# Primus network timm and the torchvision built for TORCH_VERSION (inference/requirements-timm.txt). Wheels are
# picked for the image's Python (cp311, glibc-based x86_64 Linux), not for the host. Quick when the
# folder already matches the request.
# Usage: docker/make_wheelhouse.sh DIR TORCH_VERSION [TORCH_INDEX_URL] [PYTHON]
set -euo pipefail
dest="${1:?usage: docker/make_wheelhouse.sh DIR TORCH_VERSION [TORCH_INDEX_URL] [PYTHON]}"
torch_version="${2:?TORCH_VERSION is required}"
index_url="${3:-}"
py="${4:-${PY:-python3}}"
req=inference/requirements.txt
nodeps=inference/requirements-nodeps.txt
nnunet=inference/requirements-nnunet.txt
nnunet_nodeps=inference/requirements-nnunet-nodeps.txt
timm=inference/requirements-timm.txt
# the torchvision of this torch (one rule, in amoskit/image/torchvision_pair.py); none for torch < 2.1
torchvision="$("$py" -m amoskit.image.torchvision_pair "$torch_version" 2>/dev/null || true)"

want="torch==$torch_version index=$index_url $(cat "$req" "$nodeps" "$nnunet" "$nnunet_nodeps" "$timm" | sha256sum | cut -c1-16)"
if [[ -f "$dest/.wheelhouse" && "$(cat "$dest/.wheelhouse")" == "$want" ]]; then
    echo "wheelhouse $dest is up to date ($(ls "$dest"/*.whl | wc -l) wheels, torch==$torch_version)"
    exit 0
fi

tmp="$(mktemp -d "${dest%/}.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
target=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311)
# every glibc the image's base (bookworm: 2.36) runs, down to the oldest tag (CUDA wheels use 2_18, 2_27, ...)
for minor in $(seq 28 -1 5); do target+=(--platform "manylinux_2_${minor}_x86_64"); done
target+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
extra=()
[[ -n "$index_url" ]] && extra=(--extra-index-url "$index_url")
echo "downloading wheels for torch==$torch_version + $req + $nodeps into $dest ..."
# (grep drops pip's per-package notes about local index folders that lack a package)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet "$py" -m pip download --dest "$tmp" "${target[@]}" "${extra[@]}" -r "$req" "torch==$torch_version"
quiet "$py" -m pip download --dest "$tmp" "${target[@]}" --no-deps -r "$nodeps"
echo "... and nnU-Net's predictor for ENGINE=nnunet ($nnunet, $nnunet_nodeps)"
quiet "$py" -m pip download --dest "$tmp" "${target[@]}" -r "$nnunet" "numpy==$(sed -n 's/^numpy==//p' "$req")"
quiet "$py" -m pip wheel --wheel-dir "$tmp" --no-deps -r "$nnunet_nodeps"
if [[ -n "$torchvision" ]]; then
    echo "... and timm + torchvision==$torchvision for Primus networks ($timm)"
    quiet "$py" -m pip download --dest "$tmp" "${target[@]}" "${extra[@]}" -r "$timm" \
        "torch==$torch_version" "torchvision==$torchvision" "numpy==$(sed -n 's/^numpy==//p' "$req")"
else
    echo "note: no torchvision pairs with torch==$torch_version: this wheelhouse cannot build a Primus image"
fi
echo "$want" >"$tmp/.wheelhouse"
chmod -R a+rX "$tmp"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "wheelhouse $dest ready: $(ls "$dest"/*.whl | wc -l) wheels, $(du -sh "$dest" | cut -f1)"
