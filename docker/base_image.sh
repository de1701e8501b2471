#!/usr/bin/env bash
# Build a local Debian bookworm base image with debootstrap, for machines where BASE_IMAGE cannot
# be pulled (no registry, air-gapped). It has python3 (3.11), venv and CA certificates, nothing else.
# Usage: docker/base_image.sh IMAGE_NAME [MIRROR]
set -euo pipefail
name="${1:?usage: docker/base_image.sh IMAGE_NAME [MIRROR]}"
mirror="${2:-${DEBIAN_MIRROR:-http://deb.debian.org/debian}}"

if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name already exists (docker rmi $name to rebuild it)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap not found: install it (sudo apt-get install -y debootstrap)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "error: debootstrap needs root: run sudo make base-image" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "error: cannot reach the Docker engine: start it (sudo systemctl start docker, or sudo dockerd &) and check with docker info" >&2; exit 2; }

root="$(mktemp -d /tmp/amos-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm (minbase + python3) into $root from $mirror ..."
debootstrap --arch=amd64 --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; echo "error: debootstrap failed (full log: $root.log)" >&2; exit 1; }
# Nothing a container needs: apt lists and caches, docs, man pages.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
       "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
echo "importing as $name ..."
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --platform linux/amd64 - "$name" >/dev/null
rm -f "$root.log"
docker run --rm --network none "$name" python3 --version
echo "base image $name ready"
