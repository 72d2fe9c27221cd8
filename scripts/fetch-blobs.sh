#!/usr/bin/env bash
# Puts every blob of config/blobs.yml into blobs/, each checked against its
# size and sha256 there; a blob already in place and intact is kept.
#   golang/toolchain-VERSION.zip  the Go module proxy's zip of module
#                                 golang.org/toolchain@VERSION, through
#                                 `go mod download`, which checks it against
#                                 the Go checksum database
#   libpcap/*                     Debian's source tarball, from the Debian archive
# Needs curl or wget, and a Go toolchain (go on PATH or /usr/local/go).
#
# Environment:
#   BLOBS_FROM   a directory to take blobs from instead of downloading them,
#                as DIR/PATH (another checkout's blobs/) or DIR/FILENAME;
#                checked all the same
#   LIBPCAP_URL  where the libpcap tarball lies (default: the Debian archive's
#                pool directory); GOPROXY, as for go, for the toolchain (the
#                caller's other Go settings, GOSUMDB and GOFLAGS among them,
#                do not reach that download: nothing skips the check)
#
# Used by scripts/build-release.sh and by `make deps` (so by `make test`).
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

download() { # URL FILE
	if command -v curl >/dev/null; then
		curl --fail --silent --show-error --location --output "$2" "$1"
	elif command -v wget >/dev/null; then
		wget --quiet --output-document "$2" "$1"
	else
		fail "neither curl nor wget to download $1"
	fi
}

go_tool() {
	if command -v go >/dev/null; then
		command -v go
	elif [ -x /usr/local/go/bin/go ]; then
		echo /usr/local/go/bin/go
	else
		fail "no Go toolchain (go on PATH or /usr/local/go/bin/go) to download $1 from the Go module proxy"
	fi
}

# toolchain_zip VERSION FILE: the module zip of golang.org/toolchain@VERSION.
# go mod download verifies it against the Go checksum database before it
# hands out the path, whatever the caller's environment or go env file say:
# GOENV=off drops the file (where an empty variable would not override it),
# and every setting that could skip or redirect the check is set here. Only
# the proxy is the caller's, as go would use it.
toolchain_zip() {
	local gobin goproxy modcache zip
	gobin="$(go_tool "golang.org/toolchain@$1")"
	modcache="$(mktemp -d)"
	# Outside the repository, whose go.mod could ask for another toolchain.
	goproxy="$(cd "${modcache}" && GOTOOLCHAIN=local "${gobin}" env GOPROXY)" || {
		rm -rf "${modcache}"
		fail "go env GOPROXY failed"
	}
	# A module cache is read-only; -modcacherw lets rm -rf empty it.
	zip="$(cd "${modcache}" &&
		env GOENV=off GOPROXY="${goproxy}" GOSUMDB=sum.golang.org GONOSUMDB= GOPRIVATE= GONOPROXY= GOINSECURE= \
			GOFLAGS=-modcacherw GO111MODULE=on GOWORK=off GOTOOLCHAIN=local GOMODCACHE="${modcache}" \
			"${gobin}" mod download -json "golang.org/toolchain@$1" |
		sed -n 's/^[[:space:]]*"Zip": "\(.*\)",$/\1/p')" || true
	if [ -n "${zip}" ] && [ -f "${zip}" ]; then
		cp "${zip}" "$2"
	fi
	rm -rf "${modcache}"
	[ -s "$2" ] || fail "go mod download golang.org/toolchain@$1 gave no zip"
}

tmp=""
trap '[ -z "${tmp}" ] || rm -f "${tmp}"' EXIT
for i in "${!blob_paths[@]}"; do
	blob="${blob_paths[$i]}" size="${blob_sizes[$i]}" sha="${blob_shas[$i]}"
	dest="blobs/${blob}"
	if [ -f "${dest}" ] && blob_problem "${dest}" "${size}" "${sha}" >/dev/null; then
		step "blob ${blob} is in place"
		continue
	fi
	mkdir -p "$(dirname "${dest}")"
	tmp="$(mktemp "${dest}.XXXXXX")"
	if [ -n "${BLOBS_FROM:-}" ]; then
		from="${BLOBS_FROM}/${blob}"
		[ -f "${from}" ] || from="${BLOBS_FROM}/$(basename "${blob}")"
		[ -f "${from}" ] || fail "BLOBS_FROM=${BLOBS_FROM} holds neither ${blob} nor $(basename "${blob}")"
		step "blob ${blob} from ${from}"
		cp "${from}" "${tmp}"
	else
		case "${blob}" in
		golang/toolchain-*.zip)
			version="$(basename "${blob}" .zip)"
			version="${version#toolchain-}"
			step "downloading blob ${blob}: golang.org/toolchain@${version} from the Go module proxy"
			toolchain_zip "${version}" "${tmp}"
			;;
		libpcap/*)
			url="${LIBPCAP_URL:-https://deb.debian.org/debian/pool/main/libp/libpcap}/$(basename "${blob}")"
			step "downloading blob ${blob} from ${url}"
			download "${url}" "${tmp}"
			;;
		*)
			fail "blob ${blob} is missing from blobs/ and this script does not know where to get it"
			;;
		esac
	fi
	problem="$(blob_problem "${tmp}" "${size}" "${sha}")" || fail "refusing blob ${blob}: ${problem}"
	chmod 0644 "${tmp}"
	mv "${tmp}" "${dest}"
	tmp=""
done
