#!/bin/sh
# deps.sh - install the Debian 12 packages IMS needs to build and test, only those missing.
set -eu
PKGS="make gcc clang pkg-config liblmdb-dev lmdb-utils libevent-dev libssl-dev libc-ares-dev
libcmocka-dev libhivex-dev libhivex-bin python3-hivex python3-pytest swaks wine wine64 clang-format"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages:$missing (run 'make deps' as root)" >&2
    exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
