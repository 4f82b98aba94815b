# systemd before 239 (EL7 has 219) knows no system call groups (@system-service): there a
# drop-in removes the units' filter, which 219 would otherwise read as an empty allow list.
v=$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')
if [ -n "$v" ] && [ "$v" -lt 239 ] 2>/dev/null; then
    for u in edgefleet-edge@ edgefleet-dr-realserver@; do
        mkdir -p "/etc/systemd/system/$u.service.d"
        cat >"/etc/systemd/system/$u.service.d/10-systemd-219.conf" <<'UNIT'
# Written by the edgefleet-edge package for systemd < 239 (EL7); removed with the package.
[Service]
SystemCallFilter=
UNIT
    done
fi
systemctl daemon-reload >/dev/null 2>&1 || :
# Not enabled nor started: the example configs need the site's addresses first.
exit 0
