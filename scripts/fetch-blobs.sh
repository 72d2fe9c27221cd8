#!/usr/bin/env bash
# Puts every blob of config/blobs.yml into blobs/, checked against its size
# and sha256: the libpcap source tarball comes from the Debian mirror (or
# LIBPCAP_TARBALL, a local copy; LIBPCAP_URL, another mirror). Used by
# scripts/build-release.sh and by `make test`, whose release tests compile
# libpcap from it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

step() { echo "==> $*" >&2; }
fail() { echo "fetch-blobs: $*" >&2; exit 1; }

# config/blobs.yml, as BOSH writes it: "PATH:" then indented size and sha.
blob_paths=() blob_sizes=() blob_shas=()
while IFS= read -r line; do
	case "${line}" in
	'#'* | '') ;;
	[!\ ]*:) blob_paths+=("${line%:}") blob_sizes+=("") blob_shas+=("") ;;
	*size:*) blob_sizes[${#blob_paths[@]} - 1]="$(echo "${line#*size:}" | tr -d ' ')" ;;
	*sha:*) blob_shas[${#blob_paths[@]} - 1]="$(echo "${line#*sha:}" | tr -d ' "')" ;;
	esac
done <config/blobs.yml

sha256_of() {
	if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

blob_problem() { # FILE SIZE SHA: prints what is wrong and fails, if anything is
	local got_size got_sha
	got_size="$(wc -c <"$1" | tr -d ' ')"
	got_sha="$(sha256_of "$1")"
	if [ "${got_size}" != "$2" ] || [ "sha256:${got_sha}" != "$3" ]; then
		echo "$1 has size ${got_size} and sha256 ${got_sha}; config/blobs.yml wants size $2 and $3"
		return 1
	fi
}

fetch() { # URL FILE
	if command -v curl >/dev/null; then
		curl --fail --silent --show-error --location --output "$2" "$1"
	elif command -v wget >/dev/null; then
		wget --quiet --output-document "$2" "$1"
	else
		fail "neither curl nor wget to download $1"
	fi
}

for i in "${!blob_paths[@]}"; do
	blob="${blob_paths[$i]}" size="${blob_sizes[$i]}" sha="${blob_shas[$i]}"
	dest="blobs/${blob}"
	if [ -f "${dest}" ] && blob_problem "${dest}" "${size}" "${sha}" >/dev/null; then
		step "blob ${blob} is in place"
		continue
	fi
	case "${blob}" in
	libpcap/*)
		mkdir -p "$(dirname "${dest}")"
		tmp="$(mktemp "${dest}.XXXXXX")"
		trap 'rm -f "${tmp}"' EXIT
		if [ -n "${LIBPCAP_TARBALL:-}" ]; then
			step "blob ${blob} from ${LIBPCAP_TARBALL}"
			cp "${LIBPCAP_TARBALL}" "${tmp}"
		else
			url="${LIBPCAP_URL:-https://deb.debian.org/debian/pool/main/libp/libpcap/$(basename "${blob}")}"
			step "downloading blob ${blob} from ${url}"
			fetch "${url}" "${tmp}"
		fi
		problem="$(blob_problem "${tmp}" "${size}" "${sha}")" || fail "refusing the libpcap tarball: ${problem}"
		chmod 0644 "${tmp}"
		mv "${tmp}" "${dest}"
		trap - EXIT
		;;
	*)
		fail "blob ${blob} is missing from blobs/ and this script does not know where to get it"
		;;
	esac
done

