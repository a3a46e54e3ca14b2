#!/usr/bin/env bash
# Builds the image from packaging/docker/Dockerfile with a local Docker
# engine that cannot reach Docker Hub or crates.io, and prints its tag last.
#
#   packaging/docker/build-image.sh [TAG]        (default mailconfd:latest)
#
# - The binary is built here (cargo build --release --locked) and handed to
#   the Dockerfile's "prebuilt" stage (--build-arg BINARY=prebuilt); with
#   internet, a plain `docker build` compiles it in rust:1-bookworm instead.
# - The base image debian:bookworm-slim is used if the engine has it. If not,
#   it is made from Debian's own packages (debootstrap --variant=minbase from
#   the apt mirror this host uses, then `docker import`), because the Hub is
#   unreachable.
# - The Dockerfile's apt-get step reaches the Debian mirror through the host's
#   network (--network host); nothing else in the build uses the network.
# Uses $DOCKER (default /usr/bin/docker, Debian's client) and $DOCKER_HOST.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-mailconfd:latest}
docker=${DOCKER:-/usr/bin/docker}
[ -x "$docker" ] || docker=$(command -v docker)

"$docker" info >/dev/null 2>&1 || { echo "build-image: no Docker engine answers ($docker info failed)" >&2; exit 1; }

if ! "$docker" image inspect debian:bookworm-slim >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "build-image: debian:bookworm-slim is missing and debootstrap is not installed" >&2; exit 1; }
  # The first Debian mirror in apt's active (uncommented) sources.
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | awk '/^(deb|URIs:)[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\// && $i !~ /security/) { print $i; exit } }' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  base=$(mktemp -d)
  trap 'rm -rf "$base"' EXIT
  echo "build-image: making debian:bookworm-slim with debootstrap --variant=minbase from $mirror" >&2
  debootstrap --variant=minbase bookworm "$base/root" "$mirror" >"$base/debootstrap.log" 2>&1 \
    || { tail -n 20 "$base/debootstrap.log" >&2; exit 1; }
  # As in the official slim image: no package lists, no docs, no caches.
  chroot "$base/root" apt-get clean
  rm -rf "$base"/root/var/lib/apt/lists/* "$base"/root/usr/share/doc/* "$base"/root/usr/share/man/*
  tar -C "$base/root" -c . | "$docker" import \
    --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - debian:bookworm-slim >&2
fi

echo "build-image: building the release binary on this host" >&2
cargo build --release --locked >&2
target_dir=${CARGO_TARGET_DIR:-target}
install -D -m 0755 "$target_dir/release/mailconfd" packaging/docker/prebuilt/mailconfd

DOCKER_BUILDKIT=1 "$docker" build --network host --build-arg BINARY=prebuilt \
  -f packaging/docker/Dockerfile -t "$tag" . >&2
echo "$tag"
