# tickring %preun ($1: 0 = erase, >0 = upgrade): stop and disable on erase only.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop tickring.target tickring-gateway.socket tickring-gateway.service \
            'tickring-collector@*.service' >/dev/null 2>&1 || :
    fi
    systemctl --no-reload disable tickring.target tickring-gateway.socket \
        tickring-gateway.service >/dev/null 2>&1 || :
fi
