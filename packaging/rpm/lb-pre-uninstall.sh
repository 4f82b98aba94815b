# $1 = 0: erase (not an upgrade).
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now edgefleet-lb.service >/dev/null 2>&1 || :
fi
exit 0
