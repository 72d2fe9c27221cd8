#!/usr/bin/env bash
# Installs the Debian packages that building and testing need, if missing.
# Used by `make demo`, `make test` and .ci/run; needs root for apt-get.
set -euo pipefail

packages=(libpcap-dev tcpdump tshark iproute2 prometheus ruby gcc make flex bison curl ca-certificates unzip xz-utils iptables busybox-static)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "missing Debian packages: ${missing[*]}; run as root (or install them) and try again" >&2
	exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the prometheus service on install; the tests run their own.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
	if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
	pkill -x prometheus 2>/dev/null || true
fi
