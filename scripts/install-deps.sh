#!/usr/bin/env bash
# Installs what the build, the tests and the demo need from Debian's packages, when missing.
# (systemd: for systemd-socket-activate in the socket-activation tests; no systemd runs.
# prometheus: for promtool, which checks the alert rules in deploy/. redis-server: the real
# Redis the resumable-stream and channel tests start privately; php-redis: the PHP examples.)
# As root it installs them; otherwise it names them and stops.
set -euo pipefail

packages=(apache2 apache2-dev libapache2-mod-php php-fpm php-cli curl cppcheck chromium chromium-driver systemd prometheus redis-server php-redis)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done

if ! command -v swift >/dev/null 2>&1; then
    echo "swift is not on PATH: install the Swift 6 toolchain first (https://swift.org/install)." >&2
    exit 1
fi

for module in pytest selenium; do
    if ! python3 -c "import $module" >/dev/null 2>&1; then
        python3 -m pip install --quiet --root-user-action=ignore "$module"
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "Installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services; we only use private instances on loopback.
for service in apache2 "php*-fpm" prometheus "prometheus-node-exporter" redis-server; do
    systemctl disable --now "$service" >/dev/null 2>&1 || true
done
# Without systemd, Debian's scripts start it through init.d: stop that one (by its pid file).
if [ -f /run/redis/redis-server.pid ]; then
    kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
fi
