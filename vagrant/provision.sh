#!/bin/sh
# Provisions one EdgeFleet VM: binaries, config, systemd units. Args: NAME LB_CONFIG BIN UNIT...
set -eu
name=$1 lbconf=$2 bin=$3
shift 3
for b in edge lb; do
  if [ ! -x "$bin/$b" ]; then
    echo "missing $bin/$b: build static binaries on the host first (see vagrant/Vagrantfile)" >&2
    exit 1
  fi
  install -m 0755 "$bin/$b" /usr/bin/$b
done
# As the packages do (packaging/rpm/): the user edgefleet the units run as, configs it may
# read, and on systemd 219 (EL7) the drop-ins of packaging/rpm/*-post-install.sh.
sh /vagrant/packaging/rpm/pre-install.sh
install -d /etc/edgefleet
case "$name" in
  origin) install -m 0640 -g edgefleet /vagrant/vagrant/config/origin.toml /etc/edgefleet/origin.toml ;;
  edge*)  install -m 0640 -g edgefleet /vagrant/vagrant/config/edge.toml /etc/edgefleet/edge.toml ;;
  lb*)    install -m 0640 -g edgefleet "/vagrant/vagrant/config/$lbconf.toml" /etc/edgefleet/lb.toml ;;
esac
install -m 0644 /vagrant/systemd/edgefleet-edge@.service /vagrant/systemd/edgefleet-lb.service \
  /vagrant/systemd/edgefleet-dr-realserver@.service /etc/systemd/system/
sh /vagrant/packaging/rpm/lb-post-install.sh
sh /vagrant/packaging/rpm/edge-post-install.sh
if [ -f /etc/edgefleet/lb.toml ]; then /usr/bin/lb --check --config /etc/edgefleet/lb.toml; fi
for f in /etc/edgefleet/origin.toml /etc/edgefleet/edge.toml; do
  [ -f "$f" ] && /usr/bin/edge --check --config "$f"
done
systemctl daemon-reload
for unit in "$@"; do
  systemctl enable --now "$unit"
done
echo "$name provisioned: $*"
