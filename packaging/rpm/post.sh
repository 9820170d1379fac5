# tickring %post ($1: 1 = install, >1 = upgrade). Same choices as the .deb:
# the user and the state directory; on a first install tickring.target and
# the gateway's socket (loopback only) are enabled and the socket started;
# no collector is enabled; on upgrade what runs is restarted.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers tickring.conf
else
    getent group tickring >/dev/null || groupadd --system tickring
    getent passwd tickring >/dev/null || useradd --system --gid tickring \
        --home-dir /var/lib/tickring --no-create-home \
        --shell /sbin/nologin --comment "tickring market data" tickring
fi
if [ ! -d /var/lib/tickring ]; then
    install -d -m 0750 -o tickring -g tickring /var/lib/tickring
fi
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable tickring.target tickring-gateway.socket >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemd-tmpfiles --create tickring.conf >/dev/null 2>&1 || :
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -gt 1 ]; then
        systemctl try-restart 'tickring-collector@*.service' tickring-gateway.service >/dev/null 2>&1 || :
    fi
    systemctl start tickring-gateway.socket >/dev/null 2>&1 || :
fi
