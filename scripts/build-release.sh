#!/usr/bin/env bash
# Builds a dev release of pcap-server from a checkout:
#   1. stages the Go module under src/pcap-server-release/, where the package
#      specs look for it, with every dependency vendored, and checks that it
#      builds without network (BOSH compile VMs have none);
#   2. puts the libpcap source tarball into blobs/, checked against the size
#      and sha256 in config/blobs.yml;
#   3. checks that golang-1-linux is vendored (bosh vendor-package);
#   4. runs bosh create-release --force --tarball, when the bosh CLI is here.
# Without the bosh CLI it does 1-3 and says what is left.
#
# Environment:
#   VERSION             version built into the binaries (default: git describe)
#   LIBPCAP_TARBALL     a local copy of the libpcap tarball, instead of downloading it
#   LIBPCAP_URL         where to download it (default: the Debian mirror)
#   GOLANG_RELEASE_DIR  a checkout of bosh-package-golang-release; golang-1-linux is
#                       vendored from it when missing (needs the bosh CLI)
#   RELEASE_TARBALL     where the release tarball goes (default: dev_releases/pcap-server-VERSION.tgz)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

step() { echo "==> $*" >&2; }
fail() { echo "build-release: $*" >&2; exit 1; }

go_bin="$(command -v go || true)"
[ -n "${go_bin}" ] || go_bin=/usr/local/go/bin/go
[ -x "${go_bin}" ] || fail "no Go toolchain (go on PATH or /usr/local/go/bin/go)"
command -v tar >/dev/null || fail "tar is missing"

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

# ---- 3. golang-1-linux ------------------------------------------------------
have_bosh=""
command -v bosh >/dev/null && have_bosh=yes
golang_vendored() {
	[ -f packages/golang-1-linux/spec.lock ] && [ -f .final_builds/packages/golang-1-linux/index.yml ]
}
golang_help="golang-1-linux is not vendored: clone https://github.com/cloudfoundry/bosh-package-golang-release (a version with Go >= $(sed -n 's/^go //p' go.mod)) and run
    bosh vendor-package golang-1-linux PATH/TO/bosh-package-golang-release
(or set GOLANG_RELEASE_DIR); commit packages/golang-1-linux/spec.lock and .final_builds/packages/golang-1-linux/"
if ! golang_vendored && [ -n "${have_bosh}" ] && [ -n "${GOLANG_RELEASE_DIR:-}" ]; then
	step "vendoring golang-1-linux from ${GOLANG_RELEASE_DIR}"
	bosh vendor-package golang-1-linux "${GOLANG_RELEASE_DIR}"
fi

# ---- 4. the release ---------------------------------------------------------
if [ -z "${have_bosh}" ]; then
	golang_vendored || echo "build-release: ${golang_help}" >&2
	cat >&2 <<EOF
build-release: the bosh CLI is not installed, so no release tarball was built.
The inputs are ready: src/pcap-server-release (version ${version}, Go modules vendored) and blobs/.
With the bosh CLI, run this script again, or:
    bosh create-release --force --tarball dev_releases/pcap-server-${version}.tgz
EOF
	exit 0
fi
golang_vendored || fail "${golang_help}"
tarball="${RELEASE_TARBALL:-dev_releases/pcap-server-${version}.tgz}"
mkdir -p "$(dirname "${tarball}")"
step "bosh create-release --force --tarball ${tarball}"
bosh create-release --force --tarball "${tarball}"
