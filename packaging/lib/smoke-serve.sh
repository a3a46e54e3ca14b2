#!/usr/bin/env bash
# Starts a mailconfd binary the way the packaged unit or the container would,
# as a non-root uid on 127.0.0.1:80 and :443 (tls.mode = "local", no network
# needed), waits for `mailconfd health`, sends SIGTERM and requires exit 0
# within 10 s.
#
#   smoke-serve.sh ambient|filecap BINARY STATE_DIR UID
#
# ambient: CAP_NET_BIND_SERVICE as an ambient capability, as systemd's
#          AmbientCapabilities= gives it (the .deb's unit).
# filecap: no inherited capabilities at all; the binary's own file capability
#          must do it (the Docker image).
# Runs in a private network namespace when it can (root and `ip` present), so
# ports 80/443 of the machine are never touched.
set -euo pipefail
mode=$1 bin=$2 state=$3 uid=$4

if [ -z "${SMOKE_IN_NETNS:-}" ] && command -v ip >/dev/null && unshare --net true 2>/dev/null; then
  exec env SMOKE_IN_NETNS=1 unshare --net -- "$0" "$@"
fi
if [ -n "${SMOKE_IN_NETNS:-}" ]; then
  ip link set lo up
fi

cfgdir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$cfgdir"
}
trap cleanup EXIT
chmod 0755 "$cfgdir"
cat >"$cfgdir/mailconfd.toml" <<TOML
[server]
http_listen = ["127.0.0.1:80"]
https_listen = ["127.0.0.1:443"]
state_dir = "$state"
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
chmod 0644 "$cfgdir/mailconfd.toml"

case $mode in
  ambient) caps=(--inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service --bounding-set=-all,+net_bind_service) ;;
  filecap) caps=(--inh-caps=-all --bounding-set=-all,+net_bind_service) ;;
  *) echo "smoke-serve: unknown mode $mode" >&2; exit 2 ;;
esac
as_user=(setpriv --reuid="$uid" --regid="$uid" --clear-groups)

"${as_user[@]}" "${caps[@]}" "$bin" serve -c "$cfgdir/mailconfd.toml" &
pid=$!
healthy=
for _ in $(seq 100); do
  if "${as_user[@]}" --inh-caps=-all "$bin" health -c "$cfgdir/mailconfd.toml" 2>/dev/null; then
    healthy=1
    break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$healthy" ]; then
  echo "smoke-serve: $bin ($mode, uid $uid) never became healthy on 127.0.0.1:80" >&2
  exit 1
fi
echo "smoke-serve: $mode: uid $uid serves on 127.0.0.1:80 and :443; health OK"
if command -v openssl >/dev/null; then
  openssl s_client -connect 127.0.0.1:443 -servername autoconfig.example.com </dev/null 2>/dev/null \
    | grep -q 'BEGIN CERTIFICATE' || { echo "smoke-serve: no certificate on :443" >&2; exit 1; }
  echo "smoke-serve: TLS on :443 answers for autoconfig.example.com"
fi

kill -TERM "$pid"
start=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
  if (( SECONDS - start > 10 )); then
    echo "smoke-serve: still running 10 s after SIGTERM" >&2
    exit 1
  fi
  sleep 0.1
done
rc=0
wait "$pid" || rc=$?
pid=
if [ "$rc" -ne 0 ]; then
  echo "smoke-serve: exit status $rc after SIGTERM (want 0)" >&2
  exit 1
fi
echo "smoke-serve: SIGTERM: exit 0 after $(( SECONDS - start )) s"
