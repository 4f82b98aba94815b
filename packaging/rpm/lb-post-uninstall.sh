# $1 = 0: erased; else upgraded (restart a running lb on the new binary). The user
# edgefleet stays (Fedora policy; the other package may use it).
if [ "$1" -eq 0 ]; then
    rm -f /etc/systemd/system/edgefleet-lb.service.d/10-systemd-219.conf
    rmdir /etc/systemd/system/edgefleet-lb.service.d 2>/dev/null || :
fi
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    systemctl try-restart edgefleet-lb.service >/dev/null 2>&1 || :
fi
exit 0
