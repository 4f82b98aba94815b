#!/usr/bin/env bash
# The seeds' cluster, end to end, after `vagrant up` (run on the host, in vagrant/):
#   1. every VM's units are active, lb1 holds the VIP and lb2 does not;
#   2. the client publishes rtmp://172.16.1.228/live/livestream to the origin (ffmpeg -re
#      of tests/media/clip.flv, looped; `edge publish --loop` if the client has no ffmpeg);
#   3. the client plays rtmp://172.16.1.200/live/livestream (the VIP) with `edge play`: media
#      must arrive (exit 0 = every client got a keyframe and no error);
#   4. a viewer starts playing through the VIP for the length of the failover;
#   5. lb1 fails: its service is stopped (default) or, with EDGEFLEET_FAILOVER=link, its link
#      to 172.16.1.0/24 is cut (`ip link set IFACE down`; vagrant ssh goes over eth0);
#   6. lb2 holds the VIP, lb1 no longer;
#   7. a new play through the VIP works;
#   8. the viewer of 4. played on through the failover (DR + sh: the flow stays on its edge);
#   9. lb1 is restored (service started or link up) and takes the VIP back (priority 100 > 90).
# Every wait is bounded; each step prints what it saw; the first failure exits 1 (cleanup:
# the publisher and the viewer stopped, lb1 restored). Tunables: STREAM, EDGEFLEET_FAILOVER,
# VIEWER_SECONDS (default 40), TAKEOVER_SECONDS (default 20).
set -euo pipefail
cd "$(dirname "$0")"
export VAGRANT_CHECKPOINT_DISABLE=1 # no version check against HashiCorp's service

VIP=172.16.1.200
ORIGIN=172.16.1.228
STREAM=${STREAM:-live/livestream}
FAILOVER=${EDGEFLEET_FAILOVER:-service}
VIEWER_SECONDS=${VIEWER_SECONDS:-40}
TAKEOVER_SECONDS=${TAKEOVER_SECONDS:-20}
failed_over=""

step() { printf '\n== check: %s ==\n' "$*"; }
ok() { echo "check: ok: $*"; }
fail() {
  echo "check: FAIL: $*" >&2
  exit 1
}
# on VM CMD: run the shell command CMD as root on VM (quoted for the login shell with %q, so
# CMD may hold any quotes; bounded: a VM that hangs fails the step).
on() {
  local vm=$1
  shift
  timeout 120 vagrant ssh "$vm" -c "sudo sh -c $(printf %q "$*")" -- -q -o ConnectTimeout=10
}
# wait_for SECONDS WHAT CMD...: retries CMD every second until it succeeds or time runs out.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then
      ok "$what (after ${i} s)"
      return 0
    fi
    sleep 1
  done
  return 1
}
holds_vip() { on "$1" "ip -o -4 addr show | grep -q \" $VIP/\""; }
lb1_iface() { on lb1 "ip -o -4 addr show | awk '\$4 ~ /^172[.]16[.]1[.]208[/]/ { print \$2 }'" | tr -d '\r'; }

cleanup() {
  set +e
  on client "systemctl stop check-publish check-viewer; systemctl reset-failed check-publish check-viewer" >/dev/null 2>&1
  if [ "$failed_over" = service ]; then
    on lb1 "systemctl start edgefleet-lb" >/dev/null 2>&1
  elif [ -n "$failed_over" ]; then
    on lb1 "ip link set $failed_over up" >/dev/null 2>&1
  fi
}
trap cleanup EXIT

command -v vagrant >/dev/null || fail "vagrant is not installed on this host"

step "1. VMs and units"
for pair in origin:edgefleet-edge@origin edge1:edgefleet-edge@edge edge2:edgefleet-edge@edge \
  edge1:edgefleet-dr-realserver@$VIP edge2:edgefleet-dr-realserver@$VIP \
  lb1:edgefleet-lb lb2:edgefleet-lb; do
  vm=${pair%%:*} unit=${pair#*:}
  state=$(on "$vm" "systemctl is-active $unit" | tr -d '\r' || true)
  [ "$state" = active ] || fail "$vm: $unit is ${state:-unreachable} (vagrant up? then: vagrant ssh $vm -c \"sudo journalctl -u $unit\")"
  ok "$vm: $unit active"
done
on client "command -v edge" >/dev/null || fail "client: no edge binary (vagrant provision client)"
holds_vip lb1 || fail "lb1 does not hold $VIP (vagrant ssh lb1 -c \"sudo lb status --config /etc/edgefleet/lb.toml\")"
ok "lb1 holds $VIP"
if holds_vip lb2; then fail "lb2 holds $VIP too: the pair does not hear each other's adverts (VRRP, protocol 112)"; fi
ok "lb2 does not hold $VIP"
on lb1 "lb status --config /etc/edgefleet/lb.toml" || fail "lb1: lb status failed"

step "2. publish rtmp://$ORIGIN/$STREAM from the client"
if on client "command -v ffmpeg" >/dev/null; then
  publisher="ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i /edgefleet/media/clip.flv -c copy -f flv rtmp://$ORIGIN/$STREAM"
else
  publisher="edge publish --loop /edgefleet/media/clip.flv rtmp://$ORIGIN/$STREAM"
fi
echo "check: publisher: $publisher"
on client "systemctl stop check-publish 2>/dev/null; systemctl reset-failed check-publish 2>/dev/null; systemd-run --unit=check-publish $publisher" ||
  fail "client: systemd-run of the publisher failed"
wait_for 20 "the origin has $STREAM" on origin "edge status --config /etc/edgefleet/origin.toml | grep -q \"^$STREAM \"" ||
  fail "the origin has no $STREAM after 20 s (vagrant ssh client -c \"sudo journalctl -u check-publish\"; the origin's [publish] allow)"
on origin "edge status --config /etc/edgefleet/origin.toml"

step "3. play rtmp://$VIP/$STREAM from the client"
out=$(on client "timeout 30 edge play --duration 5 rtmp://$VIP/$STREAM 2>&1") ||
  fail "edge play through the VIP failed: $out"
echo "$out"
ok "media arrived through the VIP"

step "4. a viewer through the VIP for ${VIEWER_SECONDS} s, across the failover"
# A script, so that neither systemd-run nor systemd expands its `$?`.
on client "systemctl stop check-viewer 2>/dev/null; systemctl reset-failed check-viewer 2>/dev/null; rm -f /tmp/check-viewer.*
printf '%s\n' '#!/bin/sh' 'edge play --duration $VIEWER_SECONDS --json rtmp://$VIP/$STREAM >/tmp/check-viewer.json 2>/tmp/check-viewer.log' 'echo \$? >/tmp/check-viewer.rc' >/tmp/check-viewer.sh
chmod 0755 /tmp/check-viewer.sh && systemd-run --unit=check-viewer /tmp/check-viewer.sh" ||
  fail "client: systemd-run of the viewer failed"
started=$(date +%s)
sleep 5
for e in edge1 edge2; do
  echo "-- $e"
  on "$e" "edge status --config /etc/edgefleet/edge.toml" || true
done

step "5. fail lb1 over ($FAILOVER)"
case "$FAILOVER" in
  service)
    on lb1 "systemctl stop edgefleet-lb" || fail "lb1: systemctl stop edgefleet-lb failed"
    failed_over=service
    ok "lb1: edgefleet-lb stopped"
    ;;
  link)
    iface=$(lb1_iface)
    [ -n "$iface" ] || fail "lb1: no interface holds 172.16.1.208"
    on lb1 "ip link set $iface down" || fail "lb1: ip link set $iface down failed"
    failed_over=$iface
    ok "lb1: $iface down"
    ;;
  *) fail "EDGEFLEET_FAILOVER=$FAILOVER: want service or link" ;;
esac

step "6. the VIP moves to lb2"
wait_for "$TAKEOVER_SECONDS" "lb2 holds $VIP" holds_vip lb2 ||
  fail "lb2 does not hold $VIP ${TAKEOVER_SECONDS} s after lb1 failed (vagrant ssh lb2 -c \"sudo journalctl -u edgefleet-lb\")"
if [ "$FAILOVER" = service ] && holds_vip lb1; then fail "lb1 still holds $VIP after its lb stopped"; fi
on lb2 "lb status --config /etc/edgefleet/lb.toml" || fail "lb2: lb status failed"

step "7. a new play through the VIP, on lb2"
out=$(on client "timeout 30 edge play --duration 5 rtmp://$VIP/$STREAM 2>&1") ||
  fail "edge play through the VIP after the failover failed: $out"
echo "$out"
ok "media arrived through the VIP after the failover"

step "8. the viewer connected before the failover"
left=$((started + VIEWER_SECONDS + 15 - $(date +%s)))
[ "$left" -gt 0 ] || left=1
wait_for "$left" "the viewer finished" on client "test -s /tmp/check-viewer.rc" ||
  fail "the viewer did not finish within $((VIEWER_SECONDS + 15)) s"
rc=$(on client "cat /tmp/check-viewer.rc" | tr -d '\r')
summary=$(on client "cat /tmp/check-viewer.json" | tr -d '\r')
echo "check: viewer: exit $rc, $summary"
failed=$(grep -o '"failed":[0-9]*' <<<"$summary" | cut -d: -f2 || true)
stopped=$(grep -o '"media_stopped":[0-9]*' <<<"$summary" | cut -d: -f2 || true)
gap=$(grep -o '"max_gap_ms":[0-9.]*' <<<"$summary" | cut -d: -f2 || true)
if [ "$rc" != 0 ] || [ "${failed:-1}" != 0 ] || [ "${stopped:-1}" != 0 ]; then
  fail "the viewer did not survive the failover (exit $rc, failed ${failed:-?}, media stopped ${stopped:-?}; client: /tmp/check-viewer.log)"
fi
ok "the viewer played through the failover (longest media gap ${gap} ms)"

step "9. restore lb1"
if [ "$failed_over" = service ]; then
  on lb1 "systemctl start edgefleet-lb" || fail "lb1: systemctl start edgefleet-lb failed"
else
  on lb1 "ip link set $failed_over up" || fail "lb1: ip link set $failed_over up failed"
fi
failed_over=""
wait_for "$TAKEOVER_SECONDS" "lb1 holds $VIP again" holds_vip lb1 ||
  fail "lb1 did not take $VIP back within ${TAKEOVER_SECONDS} s (priority 100 over lb2's 90, preempting)"

echo
echo "check: all steps passed"
