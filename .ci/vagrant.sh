#!/usr/bin/env bash
# The seeds' cluster in VMs (vagrant/, issue 12), called by .ci/run after the tests; runs alone
# too (as root, after `cargo build` or `cargo test`): bash .ci/vagrant.sh
#   1. `vagrant validate --ignore-provider` on vagrant/Vagrantfile: no provider (VirtualBox,
#      libvirt) exists on CI, and without the flag validate stops at "No usable default
#      provider"; the flag skips the provider blocks only, the rest is checked;
#   2. bash -n / sh -n of check.sh and provision.sh;
#   3. every vagrant/config/*.toml is the importers' output from tests/fixtures/seeds002/ with
#      the edits its header comment lists (a diff: a config edited by hand without saying so
#      fails here);
#   4. `--check` of every vagrant/config/*.toml with the binaries the tests built
#      (TARGET_DIR/debug/{lb,edge}; LB=/EDGE= to use others, e.g. target/dist/). The lb
#      configs forward by DR, whose check also reads the host (real servers on its own L2
#      segment, nft installed): each is checked in a network namespace of its own (unshare)
#      holding a veth with the lb VM's address, so no packet leaves it.
# Bounded (timeout per command); every failure says what was expected and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
# No version check against HashiCorp's checkpoint service: validate needs no network.
export VAGRANT_CHECKPOINT_DISABLE=1

fail() {
  echo "vagrant: FAIL: $*" >&2
  exit 1
}
step() { printf '\n== vagrant: %s ==\n' "$*"; }

target_dir=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
LB=${LB:-$target_dir/debug/lb}
EDGE=${EDGE:-$target_dir/debug/edge}
for tool in vagrant unshare ip nft; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install vagrant util-linux iproute2 nftables)"
done
for b in "$LB" "$EDGE"; do
  [ -x "$b" ] || fail "$b missing: build it first (cargo build --bin lb --bin edge), or set LB=/EDGE="
done
[ "$(id -u)" = 0 ] || fail "not root: the lb configs are checked in a network namespace (unshare --net)"

step "vagrant validate (vagrant $(vagrant --version | awk '{ print $2 }'))"
out=$(cd vagrant && timeout 120 vagrant validate --ignore-provider 2>&1) ||
  fail "vagrant validate --ignore-provider on vagrant/Vagrantfile: $out"
echo "$out"

step "shell syntax"
bash -n vagrant/check.sh || fail "bash -n vagrant/check.sh"
sh -n vagrant/provision.sh || fail "sh -n vagrant/provision.sh"
echo "vagrant: check.sh and provision.sh parse"

step "configs = the importers' output + the edits their headers list"
fixtures=tests/fixtures/seeds002
# lb1/lb2: from the importer's first line to the end; edge/origin: up to the first `# Added:`

from_import() { sed -n '/^# lb config imported from keepalived.conf/,$p' "$1"; }
before_added() { sed -n '/^# edge config imported from srs.conf/,/^# Added:/p' "$1" | sed '$d'; }
imported=$(timeout 30 "$LB" import-keepalived "$fixtures/keepalived.conf") || fail "lb import-keepalived $fixtures/keepalived.conf"
lb1=$(sed -e 's/^interface = "eth2"$/interface = "eth1"/' -e 's/^lb_algo = "rr"$/lb_algo = "sh"/' <<<"$imported")
lb2=$(sed -e 's/^state = "MASTER"$/state = "BACKUP"/' -e 's/^priority = 100$/priority = 90/' <<<"$lb1")
diff -u <(echo "$lb1") <(from_import vagrant/config/lb1.toml) ||
  fail "vagrant/config/lb1.toml is not lb import-keepalived's output with interface eth1 and lb_algo sh (diff above: imported+edits vs file)"
diff -u <(echo "$lb2") <(from_import vagrant/config/lb2.toml) ||
  fail "vagrant/config/lb2.toml is not lb1's with state BACKUP and priority 90 (diff above)"
for pair in origin:origin edge:edge; do
  conf=${pair%%:*} srs=${pair#*:}
  imported=$(timeout 30 "$EDGE" import-srs "$fixtures/$srs.conf") || fail "edge import-srs $fixtures/$srs.conf"
  # $(...) drops the blank lines before `# Added:`, as it drops the importer's last newline.
  # shellcheck disable=SC2005
  diff -u <(echo "$imported") <(echo "$(before_added "vagrant/config/$conf.toml")") ||
    fail "vagrant/config/$conf.toml, up to its first '# Added:', is not edge import-srs $srs.conf's output (diff above)"
done
echo "vagrant: lb1, lb2, origin, edge match the importers' output and their listed edits"

step "--check of every vagrant/config/*.toml"
n=0
for f in vagrant/config/*.toml; do
  case "$(basename "$f")" in
    lb1.toml) addr=172.16.1.208 ;;
    lb2.toml) addr=172.16.1.209 ;;
    lb*) fail "$f: which lb VM's address? (add it to .ci/vagrant.sh)" ;;
    *) addr="" ;;
  esac
  if [ -n "$addr" ]; then
    # The lb VM's network: eth1 with its address on 172.16.1.0/24 (a veth whose peer is up
    # and goes nowhere), sysfs of this namespace so eth1 shows in /sys/class/net.
    out=$(timeout 30 unshare --net --mount sh -c "
      mount --make-rprivate / && mount -t sysfs sysfs /sys &&
      ip link set lo up && ip link add eth1 type veth peer name eth1peer &&
      ip addr add $addr/24 dev eth1 && ip link set eth1peer up && ip link set eth1 up &&
      exec '$LB' --check --config '$f'" 2>&1) || fail "lb --check --config $f (in a namespace with eth1 $addr/24): $out"
  else
    out=$(timeout 30 "$EDGE" --check --config "$f" 2>&1) || fail "edge --check --config $f: $out"
  fi
  echo "$out"
  grep -q '^warning' <<<"$out" && fail "$f: --check warned: $out"
  n=$((n + 1))
done
[ "$n" -ge 4 ] || fail "only $n configs in vagrant/config/, want lb1, lb2, origin, edge"
echo "vagrant: all checks passed ($n configs)"
