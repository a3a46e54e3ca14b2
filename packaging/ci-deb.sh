#!/usr/bin/env bash
# Packaging checks (.ci/run calls this): build the .deb, install it, verify
# the unit and its hardening score, run the installed binary, then remove and
# purge, and finally stage the Docker image root (packaging/docker/build-rootfs.sh).
# Needs root (it installs the package); leaves the machine as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi

step() { printf '\n=== ci-deb: %s\n' "$*"; }
die() { echo "ci-deb: FAIL: $*" >&2; exit 1; }

unit=/lib/systemd/system/mailconfd.service
conf=/etc/mailconfd/mailconfd.toml
smoke_uid=61999      # in systemd's DynamicUser range, like the real service

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' mailconfd 2>/dev/null || true)" != "" ] \
  && [ "$(dpkg-query -W -f='${db:Status-Status}' mailconfd 2>/dev/null)" != "not-installed" ]; }

workdir=$(mktemp -d)
chmod 0755 "$workdir"
cleanup() {
  if installed; then dpkg -P mailconfd >/dev/null 2>&1 || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT

if installed; then
  if [ -z "${CI:-}" ]; then
    die "a mailconfd package is already installed here; this script installs and purges it (set CI=1 to allow that)"
  fi
  step "purging a mailconfd package left by an earlier run"
  dpkg -P mailconfd
fi

step "tools"
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v man >/dev/null || missing+=(man-db)
command -v setcap >/dev/null || missing+=(libcap2-bin)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
systemd-analyze --version | head -n1
cargo deb --version 2>/dev/null || echo "cargo-deb not installed yet (build-deb.sh installs it)"

step "build"
deb=$(packaging/build-deb.sh | tail -n1)
[ -f "$deb" ] || die "build-deb.sh did not produce a .deb"
echo "$deb"
dpkg-deb -I "$deb"
dpkg-deb -c "$deb"
# The test fixtures (some MPL-2.0) must not be shipped.
if dpkg-deb -c "$deb" | grep -q fixtures; then die "test fixtures in the package"; fi

step "install"
dpkg -i "$deb" | tee "$workdir/install.log"
grep -q 'systemctl enable --now mailconfd' "$workdir/install.log" || die "postinst printed no next steps"
/usr/bin/mailconfd --version
dpkg-query -W -f='${Conffiles}\n' mailconfd | grep -q "^ $conf " || die "$conf is not a conffile"
cmp "$conf" etc/mailconfd.toml || die "$conf is not the example config"

step "unit: systemd-analyze verify"
[ -f "$unit" ] || die "$unit missing"
systemd-analyze verify "$unit"

step "unit: systemd-analyze security (must be 2.0 or lower)"
systemd-analyze security --offline=true "$unit" | tee "$workdir/security.txt" | grep -v '^✓' || true
score_line=$(grep 'Overall exposure level' "$workdir/security.txt")
# systemd 252's --threshold takes the exposure level times ten (2.0 -> 20).
systemd-analyze security --offline=true --threshold=20 "$unit" >/dev/null \
  || die "exposure level above 2.0: $score_line"

step "installed binary checks the installed conffile"
/usr/bin/mailconfd check -c "$conf"

step "not enabled, not started"
state=$(systemctl is-enabled mailconfd.service 2>/dev/null || true)
echo "is-enabled: $state"
[ "$state" = disabled ] || die "unit is '$state' after install, want disabled"
if ls /etc/systemd/system/*.wants/mailconfd.service >/dev/null 2>&1; then die "unit enabled by a symlink"; fi
if [ -d /run/systemd/system ]; then
  ! systemctl is-active --quiet mailconfd.service || die "service is running after install"
else
  echo "(no systemd as PID 1 here: checking for a process instead)"
fi
for exe in /proc/[0-9]*/exe; do
  if [ "$(readlink "$exe" 2>/dev/null)" = /usr/bin/mailconfd ]; then die "a mailconfd process runs after install"; fi
done

step "man pages, completions, doc"
for page in /usr/share/man/man1/mailconfd*.1.gz; do gzip -t "$page"; done
man -l /usr/share/man/man1/mailconfd.1.gz | sed 's/.\x08//g' | grep -q 'mailconfd-serve(1)' || die "man page does not render"
man -l /usr/share/man/man1/mailconfd-check.1.gz | sed 's/.\x08//g' | grep -q 'Config file' || die "mailconfd-check(1) does not render"
bash -n /usr/share/bash-completion/completions/mailconfd
[ -s /usr/share/zsh/vendor-completions/_mailconfd ] || die "zsh completion missing"
[ -s /usr/share/fish/vendor_completions.d/mailconfd.fish ] || die "fish completion missing"
if grep -q 'manpage\|completions' /usr/share/bash-completion/completions/mailconfd; then die "hidden commands in completions"; fi
gzip -t /usr/share/doc/mailconfd/changelog.Debian.gz
zcat /usr/share/doc/mailconfd/changelog.Debian.gz | head -n1 | grep -q "^mailconfd ($(dpkg-query -W -f='${Version}' mailconfd))" \
  || die "changelog's first entry is not the package version"
head -n1 /usr/share/doc/mailconfd/copyright | grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' \
  || die "copyright is not DEP-5"

step "run the installed binary as the unit would (non-root, ambient CAP_NET_BIND_SERVICE)"
install -d -m 0700 -o "$smoke_uid" -g "$smoke_uid" "$workdir/state"
packaging/lib/smoke-serve.sh ambient /usr/bin/mailconfd "$workdir/state" "$smoke_uid"

step "reinstall keeps an edited conffile"
echo "# edited by ci-deb.sh" >>"$conf"
dpkg -i "$deb" >/dev/null
grep -q '^# edited by ci-deb.sh$' "$conf" || die "reinstall overwrote the edited config"

step "remove: config and state stay"
# What systemd's StateDirectory= with DynamicUser=yes leaves behind.
install -d -m 0700 /var/lib/private/mailconfd
echo state >/var/lib/private/mailconfd/marker
ln -sfn private/mailconfd /var/lib/mailconfd
dpkg -r mailconfd
[ ! -e /usr/bin/mailconfd ] || die "binary left after remove"
[ ! -e "$unit" ] || die "unit left after remove"
grep -q '^# edited by ci-deb.sh$' "$conf" || die "config gone after remove"
[ -f /var/lib/mailconfd/marker ] || die "state gone after remove"
dpkg-query -W -f='${db:Status-Abbrev}\n' mailconfd

step "purge: config and state gone"
dpkg -P mailconfd
for p in /etc/mailconfd /var/lib/mailconfd /var/lib/private/mailconfd; do
  [ ! -e "$p" ] && [ ! -L "$p" ] || die "$p left after purge"
done
echo "left on the system with 'mailconfd' in the name (expected: nothing):"
left=$(find /etc /usr /lib /var /run -xdev \( -path /var/cache -o -path /var/log \) -prune -o -name '*mailconfd*' -print 2>/dev/null || true)
echo "${left:-(nothing)}"
[ -z "$left" ] || die "files left after purge"

step "Docker image steps without Docker"
packaging/docker/build-rootfs.sh "$workdir/rootfs"

step "all packaging checks passed ($score_line)"
