#!/bin/sh
# Provisions one VM of vagrant/Vagrantfile from the packages of `cargo xtask dist`.
# Args: NAME ROLE IP FFMPEG, ROLE one of
#   origin  edgefleet-edge; /etc/edgefleet/origin.toml; edgefleet-edge@origin
#   edge    edgefleet-edge; /etc/edgefleet/edge.toml; edgefleet-dr-realserver@172.16.1.200,
#           then edgefleet-edge@edge
#   lb1|lb2 edgefleet-lb; /etc/edgefleet/lb.toml from config/ROLE.toml; edgefleet-lb
#   client  edgefleet-edge (for `edge play` / `edge publish`, no unit started) and, unless
#           FFMPEG is 0, ffmpeg from RPM Fusion
# Idempotent: a package already installed at the version in /edgefleet/dist is left alone (a
# newer one is upgraded: `cargo xtask dist && vagrant rsync && vagrant provision`), configs
# are written again, units already running are reloaded, not restarted (no viewer drops).
set -eu
name=$1 role=$2 ip=$3 ffmpeg=$4
dist=/edgefleet/dist
conf=/edgefleet/vagrant/config
vip=172.16.1.200

say() { echo "provision $name: $*"; }
die() {
  echo "provision $name: FAIL: $*" >&2
  exit 1
}

if command -v dnf >/dev/null 2>&1; then pm=dnf; else pm=yum; fi
el=$(rpm -E %rhel)

# install_rpm NAME: the package from $dist, unless that version is installed already.
install_rpm() {
  set -- "$1" "$dist/$1"-[0-9]*.rpm
  [ -f "$2" ] || die "no $1-*.rpm in $dist: run \`cargo xtask dist\` at the repository's root on the host, then \`vagrant rsync $name && vagrant provision $name\`"
  want=$(rpm -qp --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}' "$2")
  have=$(rpm -q "$1" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then
    say "$want already installed"
  else
    say "installing $(basename "$2") (was: ${have:-none})"
    # dnf/yum resolve the requirements (shadow-utils, iproute, nftables) from the box's repos.
    $pm install -y -q "$2" || die "$pm install $2 failed"
  fi
}

# put_config SRC DEST: as the package lays its configs (0640 root:edgefleet).
put_config() {
  install -m 0640 -o root -g edgefleet "$1" "$2"
}

# start UNIT: enabled, and started, or reloaded if it runs (config rewritten).
start() {
  systemctl enable -q "$1"
  if systemctl is-active -q "$1"; then
    systemctl reload "$1" || die "systemctl reload $1 failed (journalctl -u $1)"
    say "$1 reloaded"
  else
    systemctl start "$1" || die "systemctl start $1 failed (journalctl -u $1)"
    say "$1 started"
  fi
}

# firewalld, where the box runs it: RTMP, and VRRP's protocol 112 (multicast adverts).
if systemctl is-active -q firewalld 2>/dev/null; then
  firewall-cmd -q --permanent --add-port=1935/tcp
  firewall-cmd -q --permanent --add-protocol=vrrp
  firewall-cmd -q --reload
  say "firewalld: 1935/tcp and vrrp open"
fi

case "$role" in
  origin)
    install_rpm edgefleet-edge
    put_config "$conf/origin.toml" /etc/edgefleet/origin.toml
    start edgefleet-edge@origin
    ;;
  edge)
    install_rpm edgefleet-edge
    put_config "$conf/edge.toml" /etc/edgefleet/edge.toml
    # The real-server setup first, so the edge's dr_vip check finds it at start.
    systemctl enable -q --now "edgefleet-dr-realserver@$vip" ||
      die "edgefleet-dr-realserver@$vip failed (journalctl -u edgefleet-dr-realserver@$vip)"
    say "edgefleet-dr-realserver@$vip active: $(ip -o -4 addr show dev lo | awk '{ print $4 }' | tr '\n' ' ')"
    start edgefleet-edge@edge
    ;;
  lb1 | lb2)
    install_rpm edgefleet-lb
    # The interface that holds this VM's private address: eth1 on the EL boxes we know; if
    # the box names it otherwise, that name goes into the config.
    iface=$(ip -o -4 addr show | awk -v ip="$ip" '{ split($4, a, "/"); if (a[1] == ip) print $2 }' | head -n 1)
    [ -n "$iface" ] || die "no interface holds $ip"
    tmp=$(mktemp)
    sed "s/^interface = \"eth1\"/interface = \"$iface\"/" "$conf/$role.toml" >"$tmp"
    put_config "$tmp" /etc/edgefleet/lb.toml
    rm -f "$tmp"
    # As the unit's ExecStartPre will, but here so a failure names the file: with DR this
    # also checks the host (nft installed, both edges on $iface's segment).
    lb --check --config /etc/edgefleet/lb.toml || die "lb --check failed on /etc/edgefleet/lb.toml"
    start edgefleet-lb
    ;;
  client)
    install_rpm edgefleet-edge
    if [ "$ffmpeg" = 0 ]; then
      say "ffmpeg not installed (EDGEFLEET_FFMPEG=0): check.sh publishes with edge publish"
    elif command -v ffmpeg >/dev/null 2>&1; then
      say "ffmpeg already installed: $(ffmpeg -version | head -n 1)"
    else
      # RPM Fusion "free" (EL's own repositories have no ffmpeg), as rpmfusion.org says to
      # set it up on EL: EPEL, and on EL8/EL9 the CodeReady Builder repository
      # (powertools/crb), which RPM Fusion's and EPEL's ffmpeg libraries link against.
      # Chosen over a static build: signed packages the package manager updates.
      if $pm install -y -q epel-release &&
        { [ "$el" -lt 8 ] || { $pm install -y -q dnf-plugins-core &&
          dnf config-manager --set-enabled "$([ "$el" -eq 8 ] && echo powertools || echo crb)"; }; } &&
        { rpm -q rpmfusion-free-release >/dev/null 2>&1 ||
          $pm install -y -q --nogpgcheck "https://mirrors.rpmfusion.org/free/el/rpmfusion-free-release-$el.noarch.rpm"; } &&
        $pm install -y -q ffmpeg; then
        say "ffmpeg installed: $(ffmpeg -version | head -n 1)"
      else
        # Not fatal: check.sh publishes with `edge publish` when the client has no ffmpeg.
        echo "provision $name: WARNING: ffmpeg from RPM Fusion could not be installed (see above); check.sh will publish with edge publish" >&2
      fi
    fi
    ;;
  *) die "unknown role $role" ;;
esac
say "done ($role, $ip)"
