# The system user the units run as; its group may read /etc/edgefleet/ (the configs are
# 0640 root:edgefleet in the package, so the group must exist before the files are laid).
# Idempotent: both edgefleet packages carry it.
getent group edgefleet >/dev/null || groupadd -r edgefleet
getent passwd edgefleet >/dev/null || useradd -r -g edgefleet -d / -s /sbin/nologin \
    -c "EdgeFleet services" edgefleet
exit 0
