#!/usr/bin/env bash
# `make install` / `make uninstall`: what a Debian admin expects, into DESTDIR when given.
#
#   $PREFIX/bin/handoffd, handoff-exec                       the binaries (BUILD=release|debug)
#   $APACHE_MODDIR/mod_socket_handoff.so                     the module (apxs -q LIBEXECDIR)
#   $APACHE_CONFDIR/mods-available/socket_handoff.{load,conf} so `a2enmod socket_handoff` works
#   $PREFIX/lib/systemd/system/handoffd.{service,socket}, handoff-exec.service
#   $SYSCONFDIR/handoffd/handoffd.yaml (every key, commented), handoffd.env (never overwritten)
#   the `handoffd` system user (a real install only; a package does that in its postinst)
#
# /run/handoffd comes from the units (the socket's directory, RuntimeDirectory=). Uninstall
# keeps the files in $SYSCONFDIR/handoffd (an admin's configuration) unless PURGE=1.
set -euo pipefail

action=${1:?usage: install.sh install|uninstall}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
BUILD=${BUILD:-release}
APXS=${APXS:-apxs}
APACHE_MODDIR=${APACHE_MODDIR:-$($APXS -q LIBEXECDIR)}
APACHE_CONFDIR=${APACHE_CONFDIR:-/etc/apache2}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN_SRC=$REPO/.build/$BUILD

bin=$DESTDIR$PREFIX/bin
units=$DESTDIR$UNITDIR
conf=$DESTDIR$SYSCONFDIR/handoffd
mods=$DESTDIR$APACHE_CONFDIR/mods-available
moddir=$DESTDIR$APACHE_MODDIR

case "$action" in
install)
    for product in handoffd handoff-exec; do
        [ -x "$BIN_SRC/$product" ] || { echo "missing $BIN_SRC/$product: run 'swift build -c $BUILD' first (make install does)" >&2; exit 1; }
    done
    [ -f "$REPO/apache/.libs/mod_socket_handoff.so" ] || { echo "missing the module: run 'make module' first" >&2; exit 1; }
    install -d -m 0755 "$bin" "$units" "$mods" "$moddir"
    install -m 0755 "$BIN_SRC/handoffd" "$BIN_SRC/handoff-exec" "$bin/"
    install -m 0644 "$REPO/apache/.libs/mod_socket_handoff.so" "$moddir/mod_socket_handoff.so"
    sed "s|/usr/lib/apache2/modules/mod_socket_handoff.so|$APACHE_MODDIR/mod_socket_handoff.so|" \
        "$REPO/apache/socket_handoff.load" > "$mods/socket_handoff.load"
    install -m 0644 "$REPO/apache/socket_handoff.conf" "$mods/socket_handoff.conf"
    chmod 0644 "$mods/socket_handoff.load"
    for unit in handoffd.service handoffd.socket handoff-exec.service; do
        sed -e "s|/usr/local/bin/|$PREFIX/bin/|g" -e "s|/etc/handoffd/|$SYSCONFDIR/handoffd/|g" \
            "$REPO/deploy/$unit" > "$units/$unit"
        chmod 0644 "$units/$unit"
    done
    install -d -m 0755 "$conf"
    # The admin's files are theirs: written once, never overwritten (a new example is left beside).
    if [ -e "$conf/handoffd.yaml" ]; then
        "$BIN_SRC/handoffd" --example-config > "$conf/handoffd.yaml.example"
        echo "kept $conf/handoffd.yaml; the current example is handoffd.yaml.example"
    else
        "$BIN_SRC/handoffd" --example-config > "$conf/handoffd.yaml"
    fi
    chmod 0644 "$conf/handoffd.yaml"*
    if [ ! -e "$conf/handoffd.env" ]; then
        install -m 0600 "$REPO/deploy/handoffd.env.example" "$conf/handoffd.env"
    fi
    if [ -z "$DESTDIR" ]; then
        if ! getent passwd handoffd >/dev/null; then
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin handoffd
            echo "created the system user handoffd"
        fi
        command -v systemctl >/dev/null && systemctl daemon-reload 2>/dev/null || true
        echo "installed. Next: a2enmod socket_handoff && systemctl enable --now handoffd.socket handoffd.service"
    else
        echo "installed into $DESTDIR (the handoffd user is created by a real install or the package)"
    fi
    ;;
uninstall)
    rm -f "$bin/handoffd" "$bin/handoff-exec" "$moddir/mod_socket_handoff.so" \
        "$mods/socket_handoff.load" "$mods/socket_handoff.conf" \
        "$units/handoffd.service" "$units/handoffd.socket" "$units/handoff-exec.service" \
        "$conf/handoffd.yaml.example"
    if [ "${PURGE:-0}" = 1 ]; then
        rm -f "$conf/handoffd.yaml" "$conf/handoffd.env"
        rmdir "$conf" 2>/dev/null || true
    fi
    if [ -z "$DESTDIR" ]; then
        command -v systemctl >/dev/null && systemctl daemon-reload 2>/dev/null || true
    fi
    echo "uninstalled$( [ "${PURGE:-0}" = 1 ] || echo "; $conf kept (PURGE=1 removes it)")"
    ;;
*)
    echo "usage: install.sh install|uninstall" >&2
    exit 2
    ;;
esac
