# tickring %postun: rpm has no purge, so an erase keeps the user, the group,
# /var/lib/tickring and changed configs (saved as .rpmsave), as Fedora's
# packaging guidelines ask.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
