#!/usr/bin/env bash
# The image under a real Docker engine (Debian's docker.io): starts a private
# dockerd (vfs storage, no bridge, no iptables; its own socket and data root,
# so a Docker engine already on this machine is not touched), builds the image
# from packaging/docker/Dockerfile with packaging/docker/build-image.sh (no
# Docker Hub), runs README's `docker run ... check` line, then the container
# with compose.yaml's settings: uid 10001, ports 80/443 bound through the file
# capability, HTTP and HTTPS answers, HEALTHCHECK healthy, SIGHUP reload,
# `docker stop` exit 0 within the grace period, and the state volume
# surviving a replaced container (same certificate, no new order).
#
# Containers run with --network none: their own loopback, reached from here
# with nsenter, so nothing binds this host's ports 80/443.
#
#   tests/realhost/docker.sh
#
# Needs root. Outside CI, skipped with a reason when it cannot run.
set -euo pipefail
cd "$(dirname "$0")/../.."
test_name=realhost-docker
. tests/realhost/lib.sh

require_root
require_commands dockerd:docker.io debootstrap:debootstrap nsenter:util-linux curl:curl openssl:openssl

docker=/usr/bin/docker
[ -x "$docker" ] || die "$docker (Debian's docker client) missing"
engine="$realhost_cache/docker"
mkdir -p "$engine"
export DOCKER_HOST="unix://$engine/docker.sock"
work=$(mktemp -d /var/tmp/mailconfd-docker.XXXXXX)
chmod 0755 "$work"
dockerd_pid=
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    "$docker" rm -f mailconfd mailconfd-2 >/dev/null 2>&1 || true
    "$docker" volume rm -f mailconfd-state >/dev/null 2>&1 || true
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    wait_until 20 bash -c "! kill -0 $dockerd_pid" || kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "start a private Docker engine"
dockerd --host "$DOCKER_HOST" --data-root "$engine/data" --exec-root /run/mailconfd-test-docker \
  --pidfile /run/mailconfd-test-docker.pid --storage-driver=vfs --bridge=none --iptables=false \
  --ip6tables=false >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
wait_until 60 "$docker" info || { tail -n 30 "$work/dockerd.log" >&2; die "dockerd did not answer"; }
"$docker" version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'
"$docker" rm -f mailconfd mailconfd-2 >/dev/null 2>&1 || true
"$docker" volume rm -f mailconfd-state >/dev/null 2>&1 || true

step "build the image: packaging/docker/build-image.sh (no Docker Hub)"
start=$SECONDS
tag=$(packaging/docker/build-image.sh mailconfd:latest | tail -n1)
build_secs=$((SECONDS - start))
[ "$tag" = mailconfd:latest ] || die "build-image.sh printed '$tag', want the tag last"
echo "built $tag in ${build_secs} s; $("$docker" image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')"
meta=$("$docker" image inspect -f 'user={{.Config.User}} health={{json .Config.Healthcheck.Test}} volumes={{json .Config.Volumes}} stop={{.Config.StopSignal}} entry={{json .Config.Entrypoint}}' "$tag")
echo "$meta"
[[ $meta == *'user=10001:10001'* ]] || die "image user is not 10001"
[[ $meta == *'health=["CMD","mailconfd","health"]'* ]] || die "no HEALTHCHECK"
[[ $meta == *'"/var/lib/mailconfd":{}'* ]] || die "no state volume"

mkdir -p "$work/config"
local_ca_config >"$work/config/mailconfd.toml"
chmod 0755 "$work/config"
chmod 0644 "$work/config/mailconfd.toml"

step "README: docker run --rm -v \"\$PWD/config:/etc/mailconfd:ro\" mailconfd check"
check_line=$(grep -E '^docker run --rm .* mailconfd check$' README.md) || die "README has no 'docker run ... check' line"
(cd "$work" && eval "$docker${check_line#docker}") || die "the README's check line failed"

step "compose.yaml's settings"
# Debian 12's docker.io has no compose plugin; the settings are checked in the
# file and passed as the equivalent `docker run` flags below. Publishing
# ports needs a bridge network, which this engine has none of (--network none).
compose=packaging/docker/compose.yaml
for want in 'read_only: true' 'stop_grace_period: 15s' '- ALL' '- NET_BIND_SERVICE' \
  'mailconfd-state:/var/lib/mailconfd' './config:/etc/mailconfd:ro' 'restart: unless-stopped' 'max-size: "10m"'; do
  grep -qF -- "$want" "$compose" || die "compose.yaml lacks '$want' (update this test and the flags below together)"
done
run_flags=(--network none --restart unless-stopped --cap-drop ALL --cap-add NET_BIND_SERVICE --read-only
  --stop-timeout 15 --log-driver json-file --log-opt max-size=10m --log-opt max-file=3
  -v "$work/config:/etc/mailconfd:ro" -v mailconfd-state:/var/lib/mailconfd
  # The image's HEALTHCHECK command, probed every second instead of every 30 s.
  --health-interval 1s --health-start-period 15s)

step "run: uid 10001, ports 80/443 through the file capability"
start=$SECONDS
"$docker" run -d --name mailconfd "${run_flags[@]}" "$tag" >/dev/null
pid=$("$docker" inspect -f '{{.State.Pid}}' mailconfd)
in_net() { nsenter -t "$pid" -n -- "$@"; }
ca="$work/local-ca.pem"
http_doc() { in_net curl -fsS --max-time 5 -H "Host: autoconfig.$1" "http://127.0.0.1/mail/config-v1.1.xml"; }
https_doc() {
  in_net curl -fsS --max-time 5 --cacert "$ca" --resolve "autoconfig.$1:443:127.0.0.1" \
    "https://autoconfig.$1/mail/config-v1.1.xml"
}
wait_until 20 http_doc example.com || { "$docker" logs mailconfd >&2; die "no HTTP answer on the container's port 80"; }
echo "serving HTTP $((SECONDS - start)) s after docker run"
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
caps=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
echo "uid $uid, effective capabilities $caps"
[ "$uid" = 10001 ] || die "runs as uid $uid"
[ "$caps" = 0000000000000400 ] || die "effective capabilities $caps, want CAP_NET_BIND_SERVICE only"
in_net ss -ltn | has -E '127\.0\.0\.1:443 ' || die "port 443 not bound"
"$docker" cp mailconfd:/var/lib/mailconfd/local-ca.pem "$ca"
wait_until 20 https_doc example.com || die "no HTTPS answer"
https_doc example.com | has '<hostname>mail.example.com</hostname>' || die "wrong document over HTTPS"
fingerprint() {
  in_net openssl s_client -connect 127.0.0.1:443 -servername autoconfig.example.com </dev/null 2>/dev/null \
    | openssl x509 -noout -fingerprint -sha256
}
fp1=$(fingerprint)
echo "certificate $fp1"

step "HEALTHCHECK turns healthy"
healthy() { [ "$("$docker" inspect -f '{{.State.Health.Status}}' mailconfd)" = healthy ]; }
wait_until 30 healthy || die "never healthy: $("$docker" inspect -f '{{json .State.Health}}' mailconfd)"
echo "healthy $((SECONDS - start)) s after docker run"

step "reload with docker kill -s HUP (the config mount is read-only; the host edits it)"
sed -i 's/domains = \["example.com"\]/domains = ["example.com", "example.net"]/' "$work/config/mailconfd.toml"
"$docker" kill -s HUP mailconfd >/dev/null
wait_until 10 http_doc example.net || die "example.net not served after SIGHUP"
echo "example.net served after SIGHUP"

step "docker stop: exit 0 within the grace period"
start=$SECONDS
"$docker" stop mailconfd >/dev/null
stop_secs=$((SECONDS - start))
code=$("$docker" inspect -f '{{.State.ExitCode}}' mailconfd)
echo "docker stop took ${stop_secs} s, exit code $code"
[ "$code" = 0 ] || die "exit code $code after docker stop"
((stop_secs < 15)) || die "docker stop took ${stop_secs} s (grace period 15 s)"
"$docker" logs mailconfd 2>&1 | has 'stopped' || die "no 'stopped' line in the log"

step "the state volume survives a replaced container: same certificate, no new order"
"$docker" rm mailconfd >/dev/null
"$docker" run -d --name mailconfd-2 "${run_flags[@]}" "$tag" >/dev/null
pid=$("$docker" inspect -f '{{.State.Pid}}' mailconfd-2)
wait_until 20 https_doc example.com || die "no HTTPS from the new container"
fp2=$(fingerprint)
[ "$fp1" = "$fp2" ] || die "certificate changed: $fp1 -> $fp2"
"$docker" logs mailconfd-2 2>&1 | grep 'ordering certificate' | has 'domain=example.com' \
  && die "the new container ordered a certificate for example.com again"
"$docker" logs mailconfd-2 2>&1 | has 'created a local CA' && die "the new container made a new local CA"
echo "same certificate ($fp2); no new order for example.com"
start=$SECONDS
"$docker" stop mailconfd-2 >/dev/null
stop2_secs=$((SECONDS - start))
echo "second docker stop took ${stop2_secs} s"
"$docker" logs mailconfd-2 2>&1 | tail -n 5
[ "$("$docker" inspect -f '{{.State.ExitCode}}' mailconfd-2)" = 0 ] || die "second container did not exit 0"
((stop2_secs < 15)) || die "second docker stop took ${stop2_secs} s (grace period 15 s)"

step "passed: image build ${build_secs} s, docker stop ${stop_secs} s"
