# $1 = 0: erase (not an upgrade).
if [ "$1" -eq 0 ]; then
    systemctl stop "edgefleet-edge@*.service" "edgefleet-dr-realserver@*.service" >/dev/null 2>&1 || :
fi
exit 0
