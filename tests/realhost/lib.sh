# Shared by the real-host tests (systemd.sh, docker.sh): skipping, steps,
# and the cached Debian 12 root they start from. Source it; do not run it.
#
# The cached root is a `debootstrap --variant=minbase` of bookworm from the
# Debian mirror apt uses here (about a minute the first time), kept in
# $MAILCONFD_REALHOST_CACHE (default /var/cache/mailconfd-realhost) and
# copied for each run, so every run starts from the same clean system.

realhost_cache=${MAILCONFD_REALHOST_CACHE:-/var/cache/mailconfd-realhost}
# Bump the suffix when the package list changes: old caches are then ignored.
realhost_root_name=bookworm-systemd-v1
realhost_root_packages=systemd,systemd-sysv,dbus,curl,ca-certificates,sudo,openssl

t0=$SECONDS
step() { printf '\n=== %s [%3d s] %s\n' "$test_name" $((SECONDS - t0)) "$*"; }
die() {
  echo "$test_name: FAIL: $*" >&2
  exit 1
}
# A test that cannot run here: skipped with the reason, but a failure in CI.
skip() {
  if [ -n "${CI:-}" ]; then die "cannot run in CI: $*"; fi
  echo "$test_name: SKIPPED: $*" >&2
  exit 0
}

require_root() {
  [ "$(id -u)" -eq 0 ] || skip "needs root (it boots a container / starts a Docker engine)"
}

# Installs Debian packages that provide the given commands (pairs cmd:package).
require_commands() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    apt-get update -qq || skip "apt-get update failed; cannot install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || skip "cannot install ${missing[*]}"
  fi
}

# Prints the path of the cached minimal Debian 12 root, making it if needed.
cached_root() {
  local dir="$realhost_cache/$realhost_root_name"
  if [ ! -f "$dir/.complete" ]; then
    local mirror
    # The first Debian mirror in apt's active (uncommented) sources.
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | awk '/^(deb|URIs:)[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\// && $i !~ /security/) { print $i; exit } }' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    step "debootstrap bookworm (minbase + $realhost_root_packages) from $mirror into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$realhost_cache"
    debootstrap --variant=minbase --include="$realhost_root_packages" bookworm "$dir" "$mirror" >"$realhost_cache/debootstrap.log" 2>&1 \
      || { tail -n 20 "$realhost_cache/debootstrap.log" >&2; die "debootstrap failed"; }
    chroot "$dir" apt-get clean
    touch "$dir/.complete"
  fi
  echo "$dir"
}

# Waits up to $1 seconds for "$2..." to succeed; returns 1 if it never did.
wait_until() {
  local limit=$1
  shift
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start < limit)) || return 1
    sleep 0.2
  done
}

# `grep -q` for the end of a pipeline: reads all of its input first, so the
# writer never dies of SIGPIPE (which pipefail would turn into a failure).
has() {
  local input
  input=$(cat)
  grep -q "$@" <<<"$input"
}

# The config both tests serve: the local CA (no DNS, no public CA) on ports
# 80 and 443 of the container's own network, one domain.
local_ca_config() {
  cat <<'TOML'
[server]
http_listen = ["127.0.0.1:80"]
https_listen = ["127.0.0.1:443"]

[tls]
mode = "local"

[[provider]]
id = "example.com"
name = "Example Mail"
domains = ["example.com"]
  [[provider.server]]
  type = "imap"
  host = "mail.example.com"
  [[provider.server]]
  type = "smtp"
  host = "mail.example.com"
TOML
}
