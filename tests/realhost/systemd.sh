#!/usr/bin/env bash
# The .deb under a real systemd as PID 1: boots a minimal Debian 12 with
# systemd-nspawn (private network: ports 80/443 are the container's own),
# follows README's "Install from the .deb" section literally inside it, then
# drives the unit through its life: enable --now, HTTP and HTTPS answers,
# reload (applied with the same MainPID; a broken edit refused and reported
# while the old config serves), restart, a config broken at boot (exit 78, no
# restart loop), stop, the journal, `systemd-analyze security`, the sandbox
# tried from inside the service's own mount namespace, and remove/purge.
#
#   tests/realhost/systemd.sh [DEB]     (default: build it with packaging/build-deb.sh)
#
# Needs root. Outside CI, skipped with a reason when it cannot run.
set -euo pipefail
cd "$(dirname "$0")/../.."
test_name=realhost-systemd
. tests/realhost/lib.sh

require_root
require_commands systemd-nspawn:systemd-container debootstrap:debootstrap nsenter:util-linux \
  curl:curl openssl:openssl man:man-db
root_cache=$(cached_root)

if [ $# -ge 1 ]; then
  deb=$1
else
  step "build the .deb (packaging/build-deb.sh, as README says)"
  deb=$(packaging/build-deb.sh | tail -n1)
fi
[ -f "$deb" ] || die "no .deb at '$deb'"
deb_name=$(basename "$deb")
echo "$deb"

step "package contents, checked outside (man pages, completions, doc)"
work=$(mktemp -d /var/tmp/mailconfd-systemd.XXXXXX)
nspawn_pid=
cpid=
cleanup() {
  if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
    nsenter -t "$cpid" -a -- systemctl poweroff >/dev/null 2>&1 || true
    wait_until 20 bash -c "! kill -0 $nspawn_pid" || kill -KILL "$nspawn_pid" 2>/dev/null || true
  elif [ -n "$nspawn_pid" ]; then
    kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  [ -n "${KEEP_REALHOST:-}" ] && { echo "kept $work" >&2; return; }
  rm -rf "$work"
}
trap cleanup EXIT
dpkg-deb -c "$deb" >"$work/contents.txt"
! grep -q fixtures "$work/contents.txt" || die "test fixtures in the package"
dpkg-deb -x "$deb" "$work/extracted"
for page in "$work"/extracted/usr/share/man/man1/mailconfd*.1.gz; do gzip -t "$page"; done
man -l "$work/extracted/usr/share/man/man1/mailconfd.1.gz" 2>/dev/null | sed 's/.\x08//g' | has 'mailconfd-serve(1)' \
  || die "mailconfd(1) does not render"
bash -n "$work/extracted/usr/share/bash-completion/completions/mailconfd"
[ -s "$work/extracted/usr/share/zsh/vendor-completions/_mailconfd" ] || die "zsh completion missing"
[ -s "$work/extracted/usr/share/fish/vendor_completions.d/mailconfd.fish" ] || die "fish completion missing"
head -n1 "$work/extracted/usr/share/doc/mailconfd/copyright" \
  | has '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' || die "copyright is not DEP-5"

step "boot Debian 12 with systemd as PID 1 (systemd-nspawn --private-network)"
cp -a "$root_cache" "$work/root"
rm -f "$work/root/.complete"
# A person with sudo rights, as on a fresh VPS; the built package where
# README's `sudo dpkg -i target/packaging/mailconfd_*.deb` finds it.
echo mailhost >"$work/root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 mailhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$work/root/etc/hosts"
chroot "$work/root" useradd --create-home --shell /bin/bash --groups sudo admin
echo 'admin ALL=(ALL) NOPASSWD:ALL' >"$work/root/etc/sudoers.d/admin"
install -d "$work/root/home/admin/target/packaging"
cp "$deb" "$work/root/home/admin/target/packaging/$deb_name"
chroot "$work/root" chown -R admin:admin /home/admin
systemd-nspawn --register=no --keep-unit --private-network -D "$work/root" -b --console=pipe \
  >"$work/console.log" 2>&1 &
nspawn_pid=$!
# nspawn's child is the container's PID 1.
find_init() { pgrep -P "$nspawn_pid" -x systemd; }
wait_until 30 find_init || { cat "$work/console.log" >&2; die "the container's systemd did not start"; }
cpid=$(find_init)
# Commands inside the container, with its own environment.
inside() { nsenter -t "$cpid" -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
booted() { case $(inside systemctl is-system-running 2>/dev/null) in running | degraded) return 0 ;; *) return 1 ;; esac; }
wait_until 60 booted || { inside systemctl --failed || true; die "the container did not finish booting"; }
echo "container systemd PID $cpid ($(inside systemctl --version | head -n1)), state $(inside systemctl is-system-running || true)"
if [ "$(inside systemctl is-system-running || true)" = degraded ]; then inside systemctl --failed --no-legend || true; fi

# The config a user writes with sudoedit: the local CA (no DNS, no public CA),
# on the container's own ports 80 and 443.
local_ca_config >"$work/root/home/admin/mailconfd.toml"
printf '#!/bin/sh\ncat /home/admin/mailconfd.toml >"$1"\n' >"$work/root/usr/local/bin/write-test-config"
chmod 0755 "$work/root/usr/local/bin/write-test-config"

step "README 'Install from the .deb', literally, as user admin with sudo"
# Every command line of the section's sh blocks; build-deb.sh ran on this host.
awk '/^## Install from the .deb/{on=1; next} /^## /{on=0} on' README.md \
  | awk '/^```sh/{code=1; next} /^```/{code=0} code' \
  | sed 's/[[:space:]]*#.*$//' | grep -v '^[[:space:]]*$' | grep -v '^packaging/build-deb.sh' >"$work/readme-steps.sh"
cat "$work/readme-steps.sh"
grep -q 'systemctl enable --now mailconfd' "$work/readme-steps.sh" || die "README has no 'systemctl enable --now mailconfd' step"
start=$SECONDS
# One line at a time, so the state right after `dpkg -i` can be checked.
while IFS= read -r line; do
  echo "+ $line" >>"$work/readme.log"
  line_start=$SECONDS
  inside runuser -u admin -- env HOME=/home/admin SUDO_EDITOR=/usr/local/bin/write-test-config \
    bash -ec "cd ~ && $line" >>"$work/readme.log" 2>&1 </dev/null \
    || { cat "$work/readme.log" >&2; die "README's install step failed: $line"; }
  [[ $line == *"enable --now"* ]] && enable_secs=$((SECONDS - line_start))
  if [[ $line == *"dpkg -i"* ]]; then
    # Installed, not enabled, not started: the example config would order
    # certificates for example.com.
    [ "$(inside systemctl is-enabled mailconfd || true)" = disabled ] || die "unit enabled by the package"
    ! inside systemctl is-active --quiet mailconfd || die "service started by the package"
    inside dpkg-query -W -f='${Conffiles}\n' mailconfd | has '^ /etc/mailconfd/mailconfd.toml ' \
      || die "/etc/mailconfd/mailconfd.toml is not a conffile"
    inside systemd-analyze verify --man=no /lib/systemd/system/mailconfd.service || die "systemd-analyze verify"
    echo "installed: unit disabled and inactive, config is a conffile, systemd-analyze verify clean"
  fi
done <"$work/readme-steps.sh"
readme_secs=$((SECONDS - start))
cat "$work/readme.log"
grep -q 'systemctl enable --now mailconfd' "$work/readme.log" || die "postinst printed no next steps"
[ "$(inside systemctl is-active mailconfd)" = active ] || die "unit not active after enable --now"
((enable_secs <= 30)) || die "systemctl enable --now took ${enable_secs} s (> 30 s)"
echo "README install steps: ${readme_secs} s, of which enable --now ${enable_secs} s; unit active"
inside systemctl status --no-pager mailconfd | head -n 12
status_line=$(inside systemctl show -p StatusText --value mailconfd)
echo "STATUS= $status_line"
[[ $status_line == "serving 1 domain:"* ]] || die "no STATUS= line from the daemon"
[ "$(inside systemctl is-enabled mailconfd)" = enabled ] || die "not enabled"

step "HTTP and HTTPS answers (local CA)"
ca=/var/lib/mailconfd/local-ca.pem
resolve=(--resolve autoconfig.example.com:443:127.0.0.1 --resolve autodiscover.example.com:443:127.0.0.1
  --resolve autoconfig.example.net:443:127.0.0.1)
http_doc() { inside curl -fsS --max-time 5 -H "Host: autoconfig.$1" "http://127.0.0.1/mail/config-v1.1.xml?emailaddress=alice@$1"; }
https_doc() { inside curl -fsS --max-time 5 --cacert "$ca" "${resolve[@]}" "https://autoconfig.$1/mail/config-v1.1.xml?emailaddress=alice@$1"; }
http_doc example.com | has '<hostname>mail.example.com</hostname>' || die "no document over HTTP"
wait_until 20 https_doc example.com || die "no document over HTTPS within 20 s"
https_doc example.com | has '<incomingServer type="imap">' || die "wrong document over HTTPS"
wait_until 10 bash -c "[[ \"\$(nsenter -t $cpid -a -- systemctl show -p StatusText --value mailconfd)\" == *'1 with a valid certificate'* ]]" \
  || die "STATUS= never showed the certificate"
echo "STATUS= $(inside systemctl show -p StatusText --value mailconfd)"

step "watchdog: pings arrive"
# WatchdogSec=30s: the daemon pings at half of it while its accept loops beat.
watchdog=$(inside systemctl show -p WatchdogUSec --value mailconfd)
[ "$watchdog" = 30s ] || die "WatchdogUSec is '$watchdog', want 30s"
pinged() { [ "$(nsenter -t "$cpid" -a -- systemctl show -p WatchdogTimestampMonotonic --value mailconfd)" != 0 ]; }
wait_until 20 pinged || die "no watchdog ping within 20 s"
echo "watchdog 30 s; last ping at $(inside systemctl show -p WatchdogTimestamp --value mailconfd)"

step "reload: an edited config applies, same MainPID"
pid_before=$(inside systemctl show -p MainPID --value mailconfd)
sed -i 's/domains = \["example.com"\]/domains = ["example.com", "example.net"]/' "$work/root/etc/mailconfd/mailconfd.toml"
! http_doc example.net >/dev/null 2>&1 || die "example.net served before the reload"
inside systemctl reload mailconfd || die "systemctl reload failed on a valid edit"
[ "$(inside systemctl show -p MainPID --value mailconfd)" = "$pid_before" ] || die "MainPID changed on reload"
http_doc example.net | has 'mail.example.com' || die "example.net not served right after systemctl reload returned"
wait_until 20 https_doc example.net || die "example.net got no certificate after the reload"
echo "reload applied; MainPID $pid_before unchanged; example.net served over HTTP and HTTPS"

step "reload: a broken edit is refused, reported, and the old config keeps serving"
cp "$work/root/etc/mailconfd/mailconfd.toml" "$work/good.toml"
sed -i 's/^mode = "local"/mode = "sometimes"/' "$work/root/etc/mailconfd/mailconfd.toml"
if inside systemctl reload mailconfd 2>"$work/reload-err.txt"; then die "systemctl reload succeeded on a broken config"; fi
cat "$work/reload-err.txt"
[ "$(inside systemctl is-active mailconfd)" = active ] || die "unit not active after a refused reload"
[ "$(inside systemctl show -p MainPID --value mailconfd)" = "$pid_before" ] || die "MainPID changed on a refused reload"
http_doc example.net | has 'mail.example.com' || die "the old config stopped serving after a refused reload"
# systemctl itself only says "Job ... failed"; the reason is in the status's log lines.
inside systemctl status --no-pager -n 5 mailconfd | tee "$work/status-after-refusal.txt" | tail -n 3
grep -q 'reload refused' "$work/status-after-refusal.txt" || die "systemctl status does not say the reload was refused"
# A bare SIGHUP (kill -HUP, docker kill -s HUP) skips the command's check: the
# daemon itself must refuse the file and keep serving.
inside systemctl kill -s HUP mailconfd
wait_until 10 bash -c "nsenter -t $cpid -a -- journalctl -u mailconfd --no-pager -o cat | grep -q 'reload failed; keeping the old config'" \
  || die "the daemon did not log a refused SIGHUP reload"
[ "$(inside systemctl show -p MainPID --value mailconfd)" = "$pid_before" ] || die "MainPID changed on a refused SIGHUP"
http_doc example.net | has 'mail.example.com' || die "the old config stopped serving after a refused SIGHUP"
inside journalctl -u mailconfd --no-pager -o cat | has 'tls.mode' || die "the refused reload's reason is not in the journal"
inside journalctl -u mailconfd --no-pager -o cat | grep 'tls.mode' | tail -n 2

step "restart"
cp "$work/good.toml" "$work/root/etc/mailconfd/mailconfd.toml"
inside systemctl restart mailconfd || die "restart failed"
pid_after=$(inside systemctl show -p MainPID --value mailconfd)
[ "$pid_after" != "$pid_before" ] || die "restart kept the MainPID"
wait_until 10 https_doc example.net || die "no HTTPS after restart"
echo "restart: MainPID $pid_before -> $pid_after; serving"

step "a config broken at boot: failed unit, exit 78, no restart loop"
sed -i 's/^mode = "local"/mode = "sometimes"/' "$work/root/etc/mailconfd/mailconfd.toml"
if inside systemctl restart mailconfd 2>/dev/null; then die "restart succeeded with a broken config"; fi
sleep 7 # longer than RestartSec=5s: a restart loop would have started by now
props=$(inside systemctl show -p ActiveState,Result,ExecMainStatus,NRestarts mailconfd | tr '\n' ' ')
echo "$props"
[[ $props == *"ActiveState=failed"* ]] || die "unit not failed: $props"
[[ $props == *"ExecMainStatus=78"* ]] || die "exit status not 78: $props"
[[ $props == *"NRestarts=0"* ]] || die "restarted: $props"
inside journalctl -u mailconfd --no-pager -o cat | has 'tls.mode' || die "the boot failure's reason is not in the journal"

step "stop ends with Result=success"
cp "$work/good.toml" "$work/root/etc/mailconfd/mailconfd.toml"
inside systemctl reset-failed mailconfd
inside systemctl start mailconfd || die "start failed after fixing the config"
http_doc example.com >/dev/null || die "not serving after start"
start=$SECONDS
inside systemctl stop mailconfd
stop_secs=$((SECONDS - start))
props=$(inside systemctl show -p ActiveState,Result,ExecMainStatus mailconfd | tr '\n' ' ')
echo "$props (stop took ${stop_secs} s)"
[[ $props == *"Result=success"* ]] || die "stop: $props"

step "the journal: lifecycle lines, no addresses"
inside journalctl -u mailconfd --no-pager -o cat >"$work/journal.txt"
for line in listening ready 'systemd watchdog enabled' 'config reloaded' 'reload refused' 'reload failed' 'shutting down' stopped; do
  grep -q "$line" "$work/journal.txt" || die "journal lacks '$line'"
done
if grep -n 'alice' "$work/journal.txt"; then die "an address in the journal"; fi
if grep -n -i 'watchdog timeout' "$work/journal.txt"; then die "the watchdog fired"; fi
echo "journal: $(wc -l <"$work/journal.txt") lines, lifecycle present, no address"

step "systemd-analyze security inside the booted system (must be <= 2.0)"
inside systemctl start mailconfd
inside systemd-analyze security --no-pager mailconfd >"$work/security.txt" 2>&1 || true
score_line=$(grep 'Overall exposure level' "$work/security.txt") || { cat "$work/security.txt"; die "no security score"; }
echo "$score_line"
score=$(sed -E 's/.*: ([0-9.]+).*/\1/' <<<"$score_line")
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || die "exposure level $score > 2.0"

step "the sandbox holds: writes outside the state directory fail from inside the service"
main=$(inside systemctl show -p MainPID --value mailconfd)
# The service's MainPID as seen from the host (nsenter -t needs a host PID).
host_main=$(pgrep -P "$cpid" -x mailconfd || true)
[ -n "$host_main" ] || die "cannot find the service's process from the host"
uid=$(awk '/^Uid:/ {print $2}' "/proc/$host_main/status")
gid=$(awk '/^Gid:/ {print $2}' "/proc/$host_main/status")
echo "service PID $main (host $host_main), dynamic uid $uid"
[ "$uid" != 0 ] || die "the service runs as root"
# Inside the service's own mount namespace, as its user and as root.
as_service() { nsenter -t "$host_main" -m -- setpriv --reuid="$uid" --regid="$gid" --clear-groups "$@"; }
as_root_in_sandbox() { nsenter -t "$host_main" -m -- "$@"; }
for target in /etc/mailconfd/probe /usr/bin/probe /var/lib/probe /root/probe /home/admin/probe /var/log/probe /run/probe; do
  if as_service sh -c "echo x >$target" 2>/dev/null; then die "the service user can write $target"; fi
  # Read-only mounts hold even against root (the service has no capability
  # but CAP_NET_BIND_SERVICE anyway); /run is the container's tmpfs, which
  # only file permissions guard.
  if [ "$target" != /run/probe ] && as_root_in_sandbox sh -c "echo x >$target" 2>/dev/null; then
    die "root inside the service's mounts can write $target"
  fi
  [ ! -e "$work/root$target" ] || die "$target exists on the system"
done
as_service sh -c 'echo x >/var/lib/mailconfd/probe && rm /var/lib/mailconfd/probe' || die "the service cannot write its state directory"
as_service ls /home/admin >/dev/null 2>&1 && die "the service can list /home (ProtectHome)"
# PrivateTmp=yes: /tmp and /var/tmp are the service's own, gone with it.
for target in /tmp/probe /var/tmp/probe; do
  as_service sh -c "echo x >$target" || die "the service cannot write its private $target"
  [ ! -e "$work/root$target" ] || die "the service's $target is the system's"
done
echo "writes to /etc, /usr, /var/lib (outside the state dir), /var/log, /run, /root, /home refused (as the service user and as root in its mounts); state dir writable; /tmp, /var/tmp private"
caps=$(awk '/^CapEff:/ {print $2}' "/proc/$host_main/status")
echo "effective capabilities: $caps (0x400 = CAP_NET_BIND_SERVICE only)"
[ "$caps" = 0000000000000400 ] || die "unexpected capabilities $caps"

step "remove keeps config and state; purge leaves nothing"
inside systemctl stop mailconfd
echo "# edited" >>"$work/root/etc/mailconfd/mailconfd.toml"
inside dpkg -i "/home/admin/target/packaging/$deb_name" >/dev/null
grep -q '^# edited$' "$work/root/etc/mailconfd/mailconfd.toml" || die "reinstall overwrote the edited config"
inside dpkg -r mailconfd >/dev/null
[ ! -e "$work/root/usr/bin/mailconfd" ] || die "binary left after remove"
[ -f "$work/root/etc/mailconfd/mailconfd.toml" ] || die "config gone after remove"
[ -f "$work/root/var/lib/private/mailconfd/local-ca.pem" ] || die "state gone after remove"
inside dpkg -P mailconfd >/dev/null
inside systemctl daemon-reload
left=$(inside find / -xdev \( -path /proc -o -path /sys -o -path /var/log/journal -o -path /home/admin \) -prune -o -name '*mailconfd*' -print || true)
echo "left with 'mailconfd' in the name: ${left:-(nothing)}"
[ -z "$left" ] || die "files left after purge"
inside systemctl list-unit-files --no-legend 'mailconfd*' | has . && die "unit file still known after purge"

step "passed: install + enable --now ${enable_secs} s, stop ${stop_secs} s, $score_line"
