# Older systemd (EL7 has 219) gets a drop-in for what it lacks and would otherwise fail on:
# - no system call group @system-service (219 would read the unit's list as an empty allow
#   list): told by asking systemd-analyze for the group; the drop-in clears the filter;
# - no AmbientCapabilities (before 229): lb runs as root, held to the unit's capability
#   bounding set (CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE).
d=/etc/systemd/system/edgefleet-lb.service.d
v=$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')
conf=""
if ! systemd-analyze syscall-filter @system-service >/dev/null 2>&1; then
    conf="${conf}SystemCallFilter=
"
fi
if [ -n "$v" ] && [ "$v" -lt 229 ] 2>/dev/null; then
    conf="${conf}User=root
Group=root
"
fi
if [ -n "$conf" ]; then
    mkdir -p "$d"
    printf '# Written by the edgefleet-lb package for systemd %s; removed with the package.\n[Service]\n%s' "$v" "$conf" >"$d/10-systemd-219.conf"
fi
systemctl daemon-reload >/dev/null 2>&1 || :
# Not enabled nor started: the example config needs the site's addresses first.
exit 0
