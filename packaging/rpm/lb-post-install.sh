# systemd before 239 (EL7 has 219) knows neither AmbientCapabilities nor the system call
# groups (@system-service): there a drop-in runs lb as root, with the unit's capability
# bounding set (CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE) still in force, and without
# the system call filter that 219 would otherwise read as an empty allow list.
v=$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')
if [ -n "$v" ] && [ "$v" -lt 239 ] 2>/dev/null; then
    mkdir -p /etc/systemd/system/edgefleet-lb.service.d
    cat >/etc/systemd/system/edgefleet-lb.service.d/10-systemd-219.conf <<'UNIT'
# Written by the edgefleet-lb package for systemd < 239 (EL7); removed with the package.
[Service]
User=root
Group=root
SystemCallFilter=
UNIT
fi
systemctl daemon-reload >/dev/null 2>&1 || :
# Not enabled nor started: the example config needs the site's addresses first.
exit 0
