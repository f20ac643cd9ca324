#!/usr/bin/env bash
# Unpack Debian's nginx (the version a Debian 12 host runs) into .cache/nginx for the tests
# that run the role's real nginx.conf on loopback (tests/unit/test_nginx_*.py), and print the
# binary's path. `apt-get download` + `dpkg -x`: nothing is installed, no service starts, and
# no root is needed. Idempotent: an unpacked binary that runs is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=$here/.cache/nginx
bin=$dest/usr/sbin/nginx
if [ -x "$bin" ] && "$bin" -v >/dev/null 2>&1; then
    echo "$bin"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 ||
    { echo "test_nginx: needs apt-get and dpkg (Debian) to fetch nginx" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# An empty package list (a fresh machine before any apt-get update) finds nothing.
if ! (cd "$work" && apt-get download -q nginx nginx-common >/dev/null 2>&1); then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -q >/dev/null
        (cd "$work" && apt-get download -q nginx nginx-common >/dev/null)
    else
        echo "test_nginx: apt-get download nginx failed; run \`sudo apt-get update\` and try again" >&2
        exit 1
    fi
fi
rm -rf "$dest.partial"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$dest.partial"; done
"$dest.partial/usr/sbin/nginx" -v >/dev/null 2>&1 ||
    { echo "test_nginx: the unpacked nginx does not run (missing libraries?)" >&2; exit 1; }
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$bin"
