#!/usr/bin/env bash
# The Dockerfile's steps as plain shell, for machines without a Docker engine
# (CI): build the release binary, stage it into a root directory with the
# image's layout, user and file capability, then run it from there the way
# `docker run` would (uid 10001, no inherited capabilities, only
# NET_BIND_SERVICE in the bounding set) and check it binds 80/443, passes the
# HEALTHCHECK command and stops cleanly on STOPSIGNAL.
#
#   packaging/docker/build-rootfs.sh [ROOT]     (default target/packaging/rootfs)
#
# Needs root (setcap, chown, setpriv). Leaves ROOT behind for inspection;
# running it again starts from an empty ROOT.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=${1:-target/packaging/rootfs}
uid=10001

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi
if ! command -v setcap >/dev/null; then
  apt-get install -y --no-install-recommends libcap2-bin
fi

# Stage "build" (rust:1-bookworm).
cargo build --release --locked
target_dir=${CARGO_TARGET_DIR:-target}

# Stage "runtime" (debian:bookworm-slim).
rm -rf "$root"
install -d -m 0755 "$root" "$root/usr/local/bin" "$root/usr/share/doc/mailconfd" "$root/etc" "$root/etc/mailconfd" "$root/var/lib"
install -m 0755 "$target_dir/release/mailconfd" "$root/usr/local/bin/mailconfd"
install -m 0644 etc/mailconfd.toml "$root/usr/share/doc/mailconfd/mailconfd.toml.example"
setcap cap_net_bind_service=+ep "$root/usr/local/bin/mailconfd"
# useradd --system --uid 10001 ... (only our own lines: the base image has the rest)
echo "mailconfd:x:$uid:$uid::/var/lib/mailconfd:/usr/sbin/nologin" >"$root/etc/passwd"
echo "mailconfd:x:$uid:" >"$root/etc/group"
install -d -m 0700 -o "$uid" -g "$uid" "$root/var/lib/mailconfd"
# The image's metadata, for the record.
cat >"$root/IMAGE" <<META
USER $uid:$uid
VOLUME /var/lib/mailconfd
EXPOSE 80 443
HEALTHCHECK CMD ["mailconfd","health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mailconfd"]
CMD ["serve"]
META

# Checks.
caps=$(getcap "$root/usr/local/bin/mailconfd")
echo "build-rootfs: $caps"
case $caps in
  *cap_net_bind_service?ep*) ;;
  *) echo "build-rootfs: file capability missing" >&2; exit 1 ;;
esac
[ "$(stat -c '%a %u:%g' "$root/var/lib/mailconfd")" = "700 $uid:$uid" ]
"$root/usr/local/bin/mailconfd" --version
# `docker run`: the staged state volume, as uid 10001 with nothing inherited.
chmod 0755 "$root" "$root/var" "$root/var/lib"
packaging/lib/smoke-serve.sh filecap "$(realpath "$root/usr/local/bin/mailconfd")" "$(realpath "$root/var/lib/mailconfd")" "$uid"
# Drop what the smoke run wrote to the "volume".
find "$root/var/lib/mailconfd" -mindepth 1 -delete
echo "build-rootfs: OK, staged image root in $root"
