# $1 = 0: erased; else upgraded (restart running edges on the new binary). The user
# edgefleet stays (Fedora policy; the other package may use it).
if [ "$1" -eq 0 ]; then
    for u in edgefleet-edge@ edgefleet-dr-realserver@; do
        rm -f "/etc/systemd/system/$u.service.d/10-systemd-219.conf"
        rmdir "/etc/systemd/system/$u.service.d" 2>/dev/null || :
    done
fi
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    systemctl try-restart "edgefleet-edge@*.service" >/dev/null 2>&1 || :
fi
exit 0
