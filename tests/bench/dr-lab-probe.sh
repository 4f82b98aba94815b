#!/usr/bin/env bash
# tests/bench/dr-lab-probe.sh — research probe for issue 9 (LVS-DR style dispatch): which kernel
# datapath forwards VIP:port frames by MAC rewrite on these machines, and how fast.
#
# Needs root, iproute2, nftables (nft), python3, curl, iperf3; for the XDP part clang + libbpf-dev
# (Debian: apt-get install nftables clang libbpf-dev bpftool iperf3). Builds nothing with cargo.
#
# Lab (all addresses in 198.18.0.0/24, nothing routed anywhere else):
#   drp-br : bridge br0 with one port per host                (own namespace)
#   drp-c  : client      198.18.0.10
#   drp-lb : balancer    198.18.0.2, holds the VIP 198.18.0.100 on eth0 (as VRRP master would)
#   drp-r1 : real server 198.18.0.11, VIP /32 on lo, arp_ignore=1, arp_announce=2
#   drp-r2 : real server 198.18.0.12, same
#
# Usage: dr-lab-probe.sh [nft|nftmaps|nftct|bad|xdp|bench|all] (default all). Every loop is bounded
# (counts and `timeout`); namespaces and links are removed on exit, also on failure or Ctrl-C.
set -uo pipefail

VIP=198.18.0.100
PORT=1935
NS=(drp-br drp-c drp-lb drp-r1 drp-r2)
WORK=$(mktemp -d /tmp/drp.XXXXXX)
HERE=$(cd "$(dirname "$0")" && pwd)
PASS=0; FAIL=0
say()  { printf '%s\n' "$*"; }
ok()   { PASS=$((PASS+1)); say "  ok: $*"; }
bad()  { FAIL=$((FAIL+1)); say "  FAILED: $*"; }
nsx()  { local n=$1; shift; ip netns exec "$n" "$@"; }

# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    for n in "${NS[@]}"; do
        ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null
    done
    sleep 0.2
    for n in "${NS[@]}"; do
        ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$n" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" = 0 ] || { echo "dr-lab-probe: needs root" >&2; exit 2; }
for t in nft python3 curl; do command -v $t >/dev/null || { echo "dr-lab-probe: $t missing" >&2; exit 2; }; done

setup() {
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done   # stale lab of an earlier run
    for n in "${NS[@]}"; do ip netns add "$n"; nsx "$n" ip link set lo up; done
    nsx drp-br ip link add br0 type bridge
    nsx drp-br ip link set br0 up
    local i=0 h
    for h in c lb r1 r2; do
        i=$((i+1))
        ip link add "drp-$h" netns "drp-$h" type veth peer name "p-$h" netns drp-br
        nsx "drp-$h" ip link set "drp-$h" name eth0
        nsx drp-br ip link set "p-$h" master br0 up
        # fixed MACs make the rules and the capture readable
        nsx "drp-$h" ip link set eth0 address "02:00:00:00:00:0$i" up
    done
    nsx drp-c  ip addr add 198.18.0.10/24 dev eth0
    nsx drp-lb ip addr add 198.18.0.2/24 dev eth0
    nsx drp-lb ip addr add $VIP/32 dev eth0
    nsx drp-r1 ip addr add 198.18.0.11/24 dev eth0
    nsx drp-r2 ip addr add 198.18.0.12/24 dev eth0
    for r in r1 r2; do
        nsx "drp-$r" ip addr add $VIP/32 dev lo
        for k in all eth0; do
            nsx "drp-$r" sysctl -qw net.ipv4.conf.$k.arp_ignore=1 net.ipv4.conf.$k.arp_announce=2
        done
    done
    # the lb resolves its real servers' MACs (what lb would do through the neighbour table)
    # (no ping here: one UDP datagram to the discard port makes the kernel ARP for it; a TCP
    # health check does the same in lb)
    nsx drp-lb python3 -c 'import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
for a in ("198.18.0.11","198.18.0.12"): s.sendto(b"",(a,9))
time.sleep(0.3)'
    LB_MAC=$(nsx drp-lb cat /sys/class/net/eth0/address)
    R1_MAC=$(nsx drp-lb ip -j neigh show 198.18.0.11 | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["lladdr"])')
    R2_MAC=$(nsx drp-lb ip -j neigh show 198.18.0.12 | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["lladdr"])')
    say "lab up: lb $LB_MAC r1 $R1_MAC r2 $R2_MAC"
}

# One HTTP server per real server on VIP:PORT that names itself, bounded by timeout.
start_servers() {
    local r
    for r in r1 r2; do
        mkdir -p "$WORK/$r"; echo "$r" > "$WORK/$r/who"
        head -c 2000000 /dev/urandom > "$WORK/$r/big"
        (cd "$WORK/$r" && timeout 300 ip netns exec "drp-$r" python3 -m http.server $PORT --bind $VIP \
            >/dev/null 2>&1 &)
    done
    local k
    for k in $(seq 50); do
        nsx drp-r1 bash -c "exec 3<>/dev/tcp/$VIP/$PORT" 2>/dev/null &&
        nsx drp-r2 bash -c "exec 3<>/dev/tcp/$VIP/$PORT" 2>/dev/null && return 0
        sleep 0.1
    done
    bad "http servers did not start"
}

# N fetches of /who from distinct source ports; prints "r1=A r2=B fail=C"
fetch_who() {
    local n=$1 i a=0 b=0 f=0 out
    for i in $(seq "$n"); do
        out=$(nsx drp-c curl -s -m 2 "http://$VIP:$PORT/who") || out=
        case $out in r1) a=$((a+1));; r2) b=$((b+1));; *) f=$((f+1));; esac
    done
    echo "r1=$a r2=$b fail=$f"
}

lb_nft() { nsx drp-lb nft "$@"; }

# --- 1. stateless: anonymous jhash map, rewrite both MACs, fwd back out of eth0 ------------------
probe_nft_static() {
    say "== nft netdev ingress, anonymous jhash map"
    lb_nft -f - <<EOF || { bad "static ruleset rejected"; return; }
table netdev edgefleet-probe {
    chain ingress {
        type filter hook ingress device "eth0" priority -500; policy accept;
        ip daddr $VIP tcp dport $PORT ether saddr set $LB_MAC ether daddr set jhash ip saddr . tcp sport mod 2 seed 0xedf1 map { 0 : $R1_MAC, 1 : $R2_MAC } counter fwd to "eth0"
    }
}
EOF
    local res; res=$(fetch_who 20); say "  20 fetches: $res"
    case $res in *fail=0) ok "TCP client->VIP completes through DR (static map)";; *) bad "fetches failed: $res";; esac
    case $res in *r1=0*|*r2=0*) bad "one server got nothing";; *) ok "both servers chosen";; esac
    lb_nft list chain netdev edgefleet-probe ingress | grep -o 'counter packets [0-9]* bytes [0-9]*' | sed 's/^/  lb rule: /'
    lb_nft delete table netdev edgefleet-probe
}

# --- 1b. named maps, Maglev-size table, atomic replace, per-server counters ----------------------
maglev_file() {  # $1 = M, $2.. = MACs; writes a complete table (round robin fill: stand-in for Maglev)
    local m=$1; shift
    python3 - "$m" "$@" <<'PY'
import sys
m = int(sys.argv[1]); macs = sys.argv[2:]
print("flush map netdev edgefleet-probe maglev")
els = ", ".join(f"{i} : {macs[i % len(macs)]}" for i in range(m))
print(f"add element netdev edgefleet-probe maglev {{ {els} }}")
PY
}
probe_nft_maps() {
    say "== nft named maps: Maglev table keyed by a jhash slot in meta mark"
    local M=${M:-65537}
    lb_nft -f - <<EOF || { bad "named-map ruleset rejected"; return; }
table netdev edgefleet-probe {
    map maglev { type mark : ether_addr; }
    counter rs1 { }
    counter rs2 { }
    map rsctr { type ether_addr : counter; elements = { $R1_MAC : "rs1", $R2_MAC : "rs2" } }
    chain ingress {
        type filter hook ingress device "eth0" priority -500; policy accept;
        ip daddr $VIP tcp dport $PORT jump vs
    }
    chain vs {
        meta mark set jhash ip saddr . tcp sport mod $M seed 0xedf1
        ether daddr set meta mark map @maglev
        ether saddr set $LB_MAC
        counter name ether daddr map @rsctr
        fwd to "eth0"
    }
}
EOF
    maglev_file "$M" "$R1_MAC" "$R2_MAC" > "$WORK/mg.nft"
    local t0 t1
    t0=$(date +%s%N); lb_nft -f "$WORK/mg.nft" || bad "loading $M elements failed"; t1=$(date +%s%N)
    say "  load of $M-entry map (flush+add, one transaction): $(( (t1-t0)/1000000 )) ms"
    local n; n=$(lb_nft -j list map netdev edgefleet-probe maglev | python3 -c 'import json,sys
d=json.load(sys.stdin)["nftables"]; print(sum(len(x["map"].get("elem",[])) for x in d if "map" in x))')
    [ "$n" = "$M" ] && ok "map holds $n elements" || bad "map holds $n elements, want $M"
    local res; res=$(fetch_who 20); say "  20 fetches: $res"
    case $res in *fail=0) ok "DR through $M-slot named map";; *) bad "$res";; esac
    # atomic replace while traffic flows: every slot -> r2, in one transaction
    maglev_file "$M" "$R2_MAC" > "$WORK/mg2.nft"
    ( for i in $(seq 30); do nsx drp-c curl -s -m 2 "http://$VIP:$PORT/who" || echo FAIL; done > "$WORK/during" ) &
    local bg=$!
    t0=$(date +%s%N); lb_nft -f "$WORK/mg2.nft"; t1=$(date +%s%N)
    wait $bg
    say "  replace under traffic: $(( (t1-t0)/1000000 )) ms; fetches during: $(sort "$WORK/during" | uniq -c | tr '\n' ' ')"
    grep -q FAIL "$WORK/during" && bad "a fetch failed during the replace" || ok "no fetch failed during the replace"
    res=$(fetch_who 10); say "  after replace: $res"
    case $res in "r1=0 r2=10 fail=0") ok "replace took effect";; *) bad "$res";; esac
    lb_nft -j list counters table netdev edgefleet-probe > "$WORK/ctr.json" && ok "counters readable as JSON"
    python3 -c 'import json,sys
for o in json.load(open(sys.argv[1]))["nftables"]:
    if "counter" in o: c=o["counter"]; print("  counter", c["name"], c["packets"], "pkts", c["bytes"], "bytes")' "$WORK/ctr.json"
    # a malformed element in the transaction must leave the old table in place
    printf 'flush map netdev edgefleet-probe maglev\nadd element netdev edgefleet-probe maglev { 0 : zz:zz }\n' > "$WORK/broken.nft"
    lb_nft -f "$WORK/broken.nft" 2>"$WORK/broken.err" && bad "broken transaction accepted" || {
        n=$(lb_nft -j list map netdev edgefleet-probe maglev | python3 -c 'import json,sys
d=json.load(sys.stdin)["nftables"]; print(sum(len(x["map"].get("elem",[])) for x in d if "map" in x))')
        [ "$n" = "$M" ] && ok "rejected transaction left all $n slots" || bad "after rejected transaction: $n slots"; }
    lb_nft delete table netdev edgefleet-probe
}

# --- 1c. connection table from the packet path -------------------------------------------------
probe_nft_ct() {
    say "== nft dynamic map as connection table (created on SYN, refreshed, shortened on FIN/RST)"
    lb_nft -f - <<EOF || { bad "ct ruleset rejected"; return; }
table netdev edgefleet-probe {
    map maglev { type mark : ether_addr; elements = { 0 : $R1_MAC, 1 : $R2_MAC, 2 : $R1_MAC, 3 : $R2_MAC, 4 : $R1_MAC, 5 : $R2_MAC, 6 : $R1_MAC } }
    map conn {
        type ipv4_addr . inet_service : ether_addr
        size ${CT_SIZE:-65536}; flags dynamic, timeout; timeout 900s;
    }
    set closing {
        type ipv4_addr . inet_service
        size ${CT_SIZE:-65536}; flags dynamic, timeout; timeout 120s;
    }
    counter new_conn { }
    counter hit_conn { }
    counter fin_rst { }
    counter miss_nosyn { }
    counter ct_full { }
    chain ingress {
        type filter hook ingress device "eth0" priority -500; policy accept;
        ip daddr $VIP tcp dport $PORT jump vs
    }
    chain vs {
        ether saddr set $LB_MAC
        # the lookup comes first in every rule: a missing entry ends the rule before 'update',
        # which would otherwise create an entry holding the frame's current (lb's) MAC
        ip saddr . tcp sport @closing tcp flags & (syn|ack) != syn ether daddr set ip saddr . tcp sport map @conn update @conn { ip saddr . tcp sport timeout 120s : ether daddr } counter name "fin_rst" fwd to "eth0"
        tcp flags & (fin|rst) != 0 ether daddr set ip saddr . tcp sport map @conn update @conn { ip saddr . tcp sport timeout 120s : ether daddr } add @closing { ip saddr . tcp sport } counter name "fin_rst" fwd to "eth0"
        tcp flags & (syn|ack) != syn ether daddr set ip saddr . tcp sport map @conn update @conn { ip saddr . tcp sport timeout 900s : ether daddr } counter name "hit_conn" fwd to "eth0"
        # new flow: a SYN picks through the Maglev table and is recorded (a reused tuple leaves @closing)
        tcp flags & (syn|ack) == syn meta mark set jhash ip saddr . tcp sport mod 7 seed 0xedf1 ether daddr set meta mark map @maglev delete @closing { ip saddr . tcp sport } add @conn { ip saddr . tcp sport : ether daddr } counter name "new_conn" fwd to "eth0"
        # mid-flow without an entry (a standby that just took the VIP, an expired entry): Maglev, adopted
        meta mark set jhash ip saddr . tcp sport mod 7 seed 0xedf1 ether daddr set meta mark map @maglev add @conn { ip saddr . tcp sport : ether daddr } counter name "miss_nosyn" fwd to "eth0"
        # the table is full (add failed): still forwarded, statelessly, and counted
        meta mark set jhash ip saddr . tcp sport mod 7 seed 0xedf1 ether daddr set meta mark map @maglev counter name "ct_full" fwd to "eth0"
    }
}
EOF
    ok "dynamic map with timeout + update/add from the packet path accepted (netdev family)"
    local res; res=$(fetch_who 10); say "  10 fetches: $res"
    case $res in *fail=0) ok "DR with connection table";; *) bad "$res";; esac
    lb_nft -j list map netdev edgefleet-probe conn > "$WORK/conn.json"
    python3 - "$WORK/conn.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["nftables"]
for o in d:
    if "map" in o:
        el = o["map"].get("elem", [])
        print(f"  conn entries: {len(el)}")
        for e in el[:3]:
            print("   ", json.dumps(e)[:220])
PY
    lb_nft list counters table netdev edgefleet-probe | grep -B1 packets | paste - - | sed 's/^/  /'
    # a long-lived connection must stay on its server after the Maglev table changes:
    # every slot -> r1, connect, every slot -> r2, then the request: it must still reach r1
    lb_nft -f - <<EOF
flush map netdev edgefleet-probe maglev
add element netdev edgefleet-probe maglev { 0 : $R1_MAC, 1 : $R1_MAC, 2 : $R1_MAC, 3 : $R1_MAC, 4 : $R1_MAC, 5 : $R1_MAC, 6 : $R1_MAC }
EOF
    nsx drp-c python3 - "$VIP" "$PORT" > "$WORK/keep.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
time.sleep(1.0)   # meanwhile the table flips
s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = s.recv(4096)
    if not b: break
    data += b
print(data.split(b"\r\n\r\n", 1)[-1].decode().strip())
PY
    local kp=$!
    sleep 0.4
    lb_nft -f - <<EOF
flush map netdev edgefleet-probe maglev
add element netdev edgefleet-probe maglev { 0 : $R2_MAC, 1 : $R2_MAC, 2 : $R2_MAC, 3 : $R2_MAC, 4 : $R2_MAC, 5 : $R2_MAC, 6 : $R2_MAC }
EOF
    wait $kp
    say "  long connection (SYN when all slots = r1, request after all slots = r2) answered by: $(tr '\n' ' ' < "$WORK/keep.out")"
    if [ "$(cat "$WORK/keep.out")" = r1 ]; then ok "established flow kept its server across a table change"
    elif [ -n "${CT_SIZE:-}" ]; then say "  (expected with a full table: the flow moved)"; else bad "long connection moved or broke"; fi
    local nr2; nr2=$(fetch_who 3); say "  new connections after the change: $nr2"
    [ "$nr2" = "r1=0 r2=3 fail=0" ] && ok "new flows follow the new table" || bad "new flows: $nr2"
    # client closes first: its last ACK must not bring the entry back to the established timeout
    lb_nft flush map netdev edgefleet-probe conn; lb_nft flush set netdev edgefleet-probe closing
    nsx drp-c python3 - "$VIP" "$PORT" <<'PY'
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n"); time.sleep(0.3); s.recv(4096)
s.shutdown(socket.SHUT_WR); time.sleep(0.3); s.recv(4096); s.close()
PY
    sleep 0.3
    local exp; exp=$(lb_nft -j list map netdev edgefleet-probe conn | python3 -c 'import json,sys
d=json.load(sys.stdin)["nftables"]
print(" ".join(str(e[0]["elem"].get("expires")) for o in d if "map" in o for e in o["map"].get("elem",[])))')
    say "  client-first close: conn entry expires in ${exp}s; closing set: $(lb_nft list set netdev edgefleet-probe closing | grep -c 'expires') entries"
    case $exp in 11[0-9]|120) ok "closed flow keeps the short (FIN) timeout";; *) bad "closed flow timeout $exp";; esac
    lb_nft list counters table netdev edgefleet-probe | grep -B1 packets | paste - - | sed 's/^/  /'
    # deleting an element from the control plane (edge removed: its flows move)
    lb_nft flush map netdev edgefleet-probe conn && ok "control plane can flush/delete conn entries"
    # packet-path delete (kernel >= 5.18 / nft >= 1.0.? ) -- checked separately
    if lb_nft add rule netdev edgefleet-probe vs tcp flags rst delete @conn { ip saddr . tcp sport } 2>"$WORK/del.err"; then
        ok "packet-path 'delete @conn' accepted"
    else
        say "  packet-path delete rejected: $(head -2 "$WORK/del.err" | tr '\n' ' ')"
    fi
    lb_nft delete table netdev edgefleet-probe
}

# --- 1d. bad input: fragments, non-TCP, truncated, through the chain ----------------------------
probe_bad() {
    say "== malformed / fragments / non-TCP to the VIP"
    lb_nft -f - <<EOF || { bad "bad-input ruleset rejected"; return; }
table netdev edgefleet-probe {
    counter drop_frag { }
    counter pass_nontcp { }
    counter fwd_ok { }
    chain ingress {
        type filter hook ingress device "eth0" priority -500; policy accept;
        ip daddr $VIP ip frag-off & 0x3fff != 0 counter name "drop_frag" drop
        ip daddr $VIP meta l4proto != tcp counter name "pass_nontcp" accept
        ip daddr $VIP tcp dport $PORT ether saddr set $LB_MAC ether daddr set jhash ip saddr . tcp sport mod 2 seed 0xedf1 map { 0 : $R1_MAC, 1 : $R2_MAC } counter name "fwd_ok" fwd to "eth0"
    }
}
EOF
    nsx drp-c python3 -c 'import socket,sys
s=socket.socket(); s.settimeout(2)
try: s.connect((sys.argv[1],9)); print("connected?!")
except ConnectionRefusedError: print("refused")' $VIP | grep -q refused && ok "TCP to VIP:9 (not the VS port) reaches the lb stack (RST)" || bad "VIP:9 not answered by lb"
    # crafted frames from the client: first fragment of TCP to VIP:PORT, a later fragment,
    # a truncated TCP header, a UDP datagram, a runt IPv4 header
    nsx drp-c python3 - "$VIP" "$PORT" "$LB_MAC" <<'PY'
import socket, struct, sys
vip, port, lbmac = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
src = open("/sys/class/net/eth0/address").read().strip()
eth = lbmac + bytes.fromhex(src.replace(":", "")) + b"\x08\x00"
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def ip(proto, payload, frag=0, ihl=5, tot=None):
    tot = tot if tot is not None else 20 + len(payload)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, 1234, frag, 64, proto, 0,
                    socket.inet_aton("198.18.0.10"), socket.inet_aton(vip))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload
tcp = struct.pack("!HHIIBBHHH", 40000, port, 1, 0, 0x50, 0x02, 1024, 0, 0)
sent = 0
for _ in range(5):
    s.send(eth + ip(6, tcp + b"x" * 16, frag=0x2000)); sent += 1     # first fragment, MF
    s.send(eth + ip(6, b"y" * 24, frag=0x0003)); sent += 1           # later fragment
    s.send(eth + ip(6, tcp[:8])); sent += 1                          # truncated TCP header
    s.send(eth + ip(17, struct.pack("!HHHH", 40000, port, 12, 0) + b"abcd")); sent += 1  # UDP
    s.send(eth + ip(6, b"", tot=20)[:14]); sent += 1                 # runt IPv4 header
print(f"  sent {sent} crafted frames")
PY
    sleep 0.3
    lb_nft list counters table netdev edgefleet-probe | grep -B1 packets | paste - - | sed 's/^/  /'
    local res; res=$(fetch_who 4)
    case $res in *fail=0) ok "still forwarding after bad input ($res)";; *) bad "$res";; esac
    nsx drp-lb dmesg 2>/dev/null | tail -3 | sed 's/^/  dmesg: /'
    lb_nft delete table netdev edgefleet-probe
}

# --- 2. XDP: C program, MAC rewrite + XDP_TX, generic and native mode on veth -------------------
probe_xdp() {
    say "== XDP (clang -target bpf, attached by ip link)"
    command -v clang >/dev/null || { bad "clang missing"; return; }
    clang -O2 -g -target bpf -I/usr/include/$(gcc -dumpmachine) -c "$HERE/dr-xdp-probe.c" -o "$WORK/dr.o" 2>"$WORK/clang.err" ||
        { bad "clang: $(head -3 "$WORK/clang.err")"; return; }
    ok "compiled $(stat -c %s "$WORK/dr.o") byte object"
    local mode
    for mode in ${MODES:-xdpgeneric xdpdrv}; do
        nsx drp-lb ip link set dev eth0 $mode obj "$WORK/dr.o" program dr 2>"$WORK/xdp.err" ||
            { bad "$mode attach: $(head -3 "$WORK/xdp.err")"; continue; }
        ok "$mode attached: $(nsx drp-lb ip -d link show eth0 | grep -o 'prog/xdp[a-z]* id [0-9]*')"
        xdp_peer_napi $mode
        xdp_program_maps
        local res; res=$(fetch_who ${NFETCH:-20}); say "  $mode ${NFETCH:-20} fetches: $res"
        xdp_stats
        case $res in *fail=0) ok "DR through XDP ($mode)";; *) bad "$mode: $res";; esac
        nsx drp-lb ip link set dev eth0 $mode off
        nsx drp-br ip link set dev p-lb xdpdrv off 2>/dev/null
        nsx drp-c ethtool -K eth0 tx on >/dev/null 2>&1
    done
}
# native XDP_TX on veth needs NAPI on the peer: a pass-only XDP program there provides it
xdp_peer_napi() {
    [ "$1" = xdpdrv ] || return 0
    if [ "${NO_PEER_XDP:-}" = 1 ]; then say "  (no XDP program on the peer p-lb)"; return 0; fi
    nsx drp-br ip link set dev p-lb xdpdrv obj "$WORK/dr.o" program pass && say "  pass-only XDP on the peer p-lb (bridge side)"
    # native veth XDP turns the skb into an xdp_frame: a CHECKSUM_PARTIAL segment from the
    # client's veth (checksum left to "hardware") arrives at the real server with no valid
    # checksum and is dropped. A real NIC puts valid checksums on the wire; in the lab the
    # client must compute them itself.
    if [ "${CLIENT_CSUM_OFFLOAD:-}" != 1 ] && command -v ethtool >/dev/null; then
        nsx drp-c ethtool -K eth0 tx off >/dev/null && say "  client eth0: tx checksum offload off"
    fi
}
xdp_program_maps() {   # fill the Maglev array and the config from the shell, as lb would via aya
    command -v bpftool >/dev/null || { bad "bpftool missing"; return; }
    local id; id=$(nsx drp-lb ip -j -d link show eth0 | python3 -c 'import json,sys
d=json.load(sys.stdin)[0]; x=d.get("xdp",{}); print(x.get("prog",{}).get("id") or x["attached"][0]["prog"]["id"])')
    local mid; mid=$(bpftool prog show id "$id" -j | python3 -c 'import json,sys;print(" ".join(map(str,json.load(sys.stdin)["map_ids"])))')
    local m name
    for m in $mid; do
        name=$(bpftool map show id "$m" -j | python3 -c 'import json,sys;print(json.load(sys.stdin)["name"])')
        case $name in
        maglev)   # 7 slots alternating r1/r2, then the count of slots in cfg
            local i mac
            for i in 0 1 2 3 4 5 6; do
                if [ $((i % 2)) = 0 ]; then mac=$R1_MAC; else mac=$R2_MAC; fi
                bpftool map update id "$m" key $i 0 0 0 value hex $(echo "$mac" | tr ':' ' ') 00 00
            done;;
        cfg)      # struct cfg { u32 vip; u16 port (net order); u16 slots (host order); u8 lbmac[6]; u8 pad[2] }
            bpftool map update id "$m" key 0 0 0 0 value hex $(python3 -c 'import socket,struct,sys
b = socket.inet_aton(sys.argv[1]) + struct.pack("!H", int(sys.argv[2])) + struct.pack("<H", 7) + bytes.fromhex(sys.argv[3].replace(":", "")) + b"\0\0"
print(" ".join("%02x" % x for x in b))' $VIP "$PORT" "$LB_MAC");;
        esac
    done
}

# --- 3. rough throughput/CPU: direct vs nft vs XDP ----------------------------------------------
cpu_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
rxp() { nsx "$1" cat /sys/class/net/eth0/statistics/rx_packets; }
run_iperf() {  # $1 label, $2 target addr, $3.. extra client args
    local label=$1 dst=$2; shift 2
    local b0 t0 b1 t1 l0 l1 s0 s1
    read -r b0 t0 < <(cpu_busy); l0=$(rxp drp-lb); s0=$(rxp drp-r1)
    nsx drp-c timeout 20 iperf3 -c "$dst" -p 5201 -t 5 -J "$@" > "$WORK/ip.json" 2>/dev/null
    read -r b1 t1 < <(cpu_busy); l1=$(rxp drp-lb); s1=$(rxp drp-r1)
    python3 - "$WORK/ip.json" "$label" "$((b1-b0))" "$((t1-t0))" "$((l1-l0))" "$((s1-s0))" <<'PY'
import json, sys
label, busy, tot, lbp, rsp = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
try:
    j = json.load(open(sys.argv[1]))
    s = j["end"]["sum_sent"]; secs = s["seconds"]
    print(f"  {label:30s} {s['bits_per_second']/1e9:6.2f} Gbit/s  r1 rx {rsp/secs/1e3:7.1f} kpkt/s  "
          f"lb rx {lbp/secs/1e3:7.1f} kpkt/s  machine CPU {100*busy/tot:5.1f}% of 2 cores")
except Exception as ex:
    print(f"  {label}: iperf failed ({ex})")
PY
}
# Per-packet cost of the XDP program alone: BPF_PROG_TEST_RUN on a crafted ACK to VIP:5201.
xdp_test_run() {
    local id; id=$(nsx drp-lb ip -j -d link show eth0 | python3 -c 'import json,sys
d=json.load(sys.stdin)[0]; x=d.get("xdp",{}); print(x.get("prog",{}).get("id") or x["attached"][0]["prog"]["id"])')
    python3 - "$LB_MAC" "$VIP" > "$WORK/pkt.bin" <<'PY'
import socket, struct, sys
lb = bytes.fromhex(sys.argv[1].replace(":", "")); vip = socket.inet_aton(sys.argv[2])
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + 32, 1, 0x4000, 64, 6, 0, socket.inet_aton("198.18.0.10"), vip)
tcp = struct.pack("!HHIIBBHHH", 40001, 5201, 1, 1, 0x50, 0x10, 1024, 0, 0) + b"\0" * 32
sys.stdout.buffer.write(lb + bytes.fromhex("020000000001") + b"\x08\x00" + ip + tcp)
PY
    local out; out=$(bpftool prog run id "$id" data_in "$WORK/pkt.bin" repeat 5000000 2>&1)
    say "  XDP program alone (BPF_PROG_TEST_RUN, 5e6 runs, established-flow ACK): $(echo "$out" | tr '\n' ' ')"
}
# the lab's veth default is TSO/GSO/GRO (64 KB "packets"): count real frames instead
frames_on() {
    local h
    for h in c lb r1 r2; do nsx "drp-$h" ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1; done
    for h in p-c p-lb p-r1 p-r2; do nsx drp-br ethtool -K "$h" tso off gso off gro off >/dev/null 2>&1; done
}
frames_off() {
    local h
    for h in c lb r1 r2; do nsx "drp-$h" ethtool -K eth0 tso on gso on gro on >/dev/null 2>&1; done
    for h in p-c p-lb p-r1 p-r2; do nsx drp-br ethtool -K "$h" tso on gso on gro on >/dev/null 2>&1; done
}
nft_bench_rules() {
    lb_nft -f - <<EOF
table netdev edgefleet-probe {
    map maglev { type mark : ether_addr; elements = { 0 : $R1_MAC, 1 : $R1_MAC } }
    chain ingress {
        type filter hook ingress device "eth0" priority -500; policy accept;
        ip daddr $VIP tcp dport 5201 meta mark set jhash ip saddr . tcp sport mod 2 seed 0xedf1 ether daddr set meta mark map @maglev ether saddr set $LB_MAC counter fwd to "eth0"
    }
}
EOF
}
probe_bench() {
    say "== rough throughput (iperf3, 5 s each, one stream; the machine's other load is not ours)"
    command -v iperf3 >/dev/null || { bad "iperf3 missing"; return; }
    command -v ethtool >/dev/null || say "  (no ethtool: frame-sized runs will still use GSO)"
    local r mode pass
    for r in r1 r2; do timeout 250 ip netns exec "drp-$r" iperf3 -s -p 5201 >/dev/null 2>&1 & done
    sleep 0.5
    for pass in gso frames; do
        if [ $pass = frames ]; then frames_on; say "  -- TSO/GSO/GRO off on every veth: one packet = one frame"
        else say "  -- veth defaults (TSO/GSO/GRO on: up to 64 KB per packet)"; fi
        run_iperf "direct client->r1" 198.18.0.11
        run_iperf "direct client->r1 -R" 198.18.0.11 -R
        nft_bench_rules
        run_iperf "nft DR client->VIP" $VIP
        run_iperf "nft DR client->VIP -R" $VIP -R
        lb_nft delete table netdev edgefleet-probe
        if [ -f "$HERE/dr-xdp-probe.c" ] && command -v clang >/dev/null; then
            clang -O2 -g -target bpf -I/usr/include/$(gcc -dumpmachine) -c "$HERE/dr-xdp-probe.c" -o "$WORK/dr.o"
            for mode in xdpgeneric xdpdrv; do
                nsx drp-lb ip link set dev eth0 $mode obj "$WORK/dr.o" program dr || continue
                xdp_peer_napi $mode
                PORT=5201 xdp_program_maps_single
                run_iperf "XDP $mode client->VIP" $VIP
                run_iperf "XDP $mode client->VIP -R" $VIP -R
                [ $pass = frames ] && [ $mode = xdpgeneric ] && xdp_test_run
                nsx drp-lb ip link set dev eth0 $mode off
                nsx drp-br ip link set dev p-lb xdpdrv off 2>/dev/null
                nsx drp-c ethtool -K eth0 tx on >/dev/null 2>&1
            done
        fi
    done
    frames_off
}
xdp_stats() {
    local id m; id=$(nsx drp-lb ip -j -d link show eth0 | python3 -c 'import json,sys
d=json.load(sys.stdin)[0]; x=d.get("xdp",{}); print(x.get("prog",{}).get("id") or x["attached"][0]["prog"]["id"])')
    for m in $(bpftool prog show id "$id" -j | python3 -c 'import json,sys;print(" ".join(map(str,json.load(sys.stdin)["map_ids"])))'); do
        bpftool map show id "$m" -j | grep -q '"name":"stats"' || continue
        bpftool map dump id "$m" -j | python3 -c 'import json,sys
names = ["fwd_new", "fwd_est", "frag", "malformed", "noslot", "pass"]
def k(e):
    x = e["key"]
    return x if isinstance(x, int) else int.from_bytes(bytes(int(b, 16) for b in x), "little")
def v(x):
    return x if isinstance(x, int) else int.from_bytes(bytes(int(b, 16) for b in x), "little")
print("  xdp stats:", " ".join("%s=%d" % (names[k(e)], sum(v(c["value"]) for c in e["values"])) for e in json.load(sys.stdin)))'
    done
    if command -v ethtool >/dev/null; then
        say "  lb eth0: $(nsx drp-lb ethtool -S eth0 | grep -E 'xdp|drop' | grep -v ': 0$' | tr -s ' ' | tr '\n' ' ')"
        say "  br p-lb: $(nsx drp-br ethtool -S p-lb | grep -E 'xdp|drop' | grep -v ': 0$' | tr -s ' ' | tr '\n' ' ')"
    fi
}
xdp_program_maps_single() { local R2_MAC=$R1_MAC; xdp_program_maps; }

case ${1:-all} in
    nft) setup; start_servers; probe_nft_static;;
    nftmaps) setup; start_servers; probe_nft_maps;;
    nftct) setup; start_servers; probe_nft_ct;;
    bad) setup; start_servers; probe_bad;;
    xdp) setup; start_servers; probe_xdp;;
    xdpdbg) setup; start_servers
        MODES=xdpdrv; for r in r1 r2; do nsx drp-$r timeout 8 tcpdump -ni eth0 -c 12 -e tcp port $PORT > "$WORK/td-$r" 2>&1 & done
        nsx drp-c timeout 8 tcpdump -ni eth0 -c 12 -e tcp port $PORT > "$WORK/td-c" 2>&1 &
        sleep 1; probe_xdp; sleep 1; head -12 "$WORK"/td-*;;
    bench) setup; probe_bench;;
    all) setup; start_servers; probe_nft_static; probe_nft_maps; probe_nft_ct; probe_bad; probe_xdp; probe_bench;;
    *) echo "usage: $0 [nft|nftmaps|nftct|bad|xdp|bench|all]" >&2; exit 2;;
esac
say "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
