#!/usr/bin/env bash
# Builds a dev release tarball of pcap-server from a checkout, with nothing
# but this repository, the Go module proxy and the Debian archive:
#   1. stages the Go module under src/pcap-server-release/, where the package
#      specs look for it, with every dependency vendored, and checks that it
#      builds without network (BOSH compile VMs have none);
#   2. puts every blob of config/blobs.yml into blobs/, each checked against
#      its size and sha256 (scripts/fetch-blobs.sh);
#   3. runs bosh create-release --force --tarball.
#
# Environment:
#   VERSION          version built into the binaries (default: git describe)
#   RELEASE_TARBALL  where the tarball goes (default: dev_releases/pcap-server-VERSION.tgz)
#   BLOBS_FROM, LIBPCAP_URL, GOPROXY: see scripts/fetch-blobs.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

step() { echo "==> $*" >&2; }
fail() { echo "build-release: $*" >&2; exit 1; }

go_bin="$(command -v go || true)"
[ -n "${go_bin}" ] || go_bin=/usr/local/go/bin/go
[ -x "${go_bin}" ] || fail "no Go toolchain (go on PATH or /usr/local/go/bin/go)"
command -v tar >/dev/null || fail "tar is missing"
command -v bosh >/dev/null || fail "the bosh CLI (v7) is not on PATH: https://bosh.io/docs/cli-v2-install/"

# ---- 1. the Go module under src/ -------------------------------------------
module_dirs=(wire internal proxy cellagent cli)
stage="${root}/src/pcap-server-release"
step "staging the Go module in ${stage#"${root}"/}"
rm -rf "${stage}"
mkdir -p "${stage}"

list_sources() {
	if git -C "${root}" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		# tracked files and new ones that are not ignored: what a commit would hold
		git -C "${root}" ls-files -z --cached --others --exclude-standard -- go.mod go.sum "${module_dirs[@]}"
	else
		find go.mod go.sum "${module_dirs[@]}" -type f -print0
	fi
}
# Tests and their data stay out: they are not compiled on the VMs and would
# only make every package blob larger.
list_sources | while IFS= read -r -d '' f; do
	case "${f}" in
	*_test.go | */testdata/*) continue ;;
	esac
	[ -f "${f}" ] && printf '%s\0' "${f}"
done | tar -C "${root}" --null -T - -cf - | tar -C "${stage}" -xf -

version="${VERSION:-$(git -C "${root}" describe --tags --always --dirty 2>/dev/null || echo dev)}"
printf '%s\n' "${version}" >"${stage}/VERSION"

step "vendoring Go modules (go mod vendor)"
(cd "${stage}" && GOFLAGS=-mod=mod "${go_bin}" mod vendor)

step "checking that the staged module builds without network"
(
	cd "${stage}"
	export GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local
	"${go_bin}" list -deps ./proxy/cmd/pcap-server-api ./cellagent/cmd/pcap-server ./cli/cmd/pcap-server-cli >/dev/null
	CGO_ENABLED=0 "${go_bin}" build -o /dev/null ./proxy/cmd/pcap-server-api ./cli/cmd/pcap-server-cli
)

# ---- 2. blobs ---------------------------------------------------------------
"${root}/scripts/fetch-blobs.sh"

# ---- 3. the release ---------------------------------------------------------
tarball="${RELEASE_TARBALL:-dev_releases/pcap-server-${version}.tgz}"
mkdir -p "$(dirname "${tarball}")"
step "bosh create-release --force --tarball ${tarball}"
bosh create-release --force --tarball "${tarball}"
