#!/usr/bin/env bash
# Builds the real Cloud Foundry binaries of the real-parts tests from their
# upstream sources, at the commits test/realcf/README.md names, into a folder
# usable as REALCF_DIR: routing.tar.xz, cf.tar.xz, garden.tar.xz,
# tools.tar.xz, SHA256SUMS, unpack.sh and examples/, laid out as
# ../shared/realcf is.
#
#   scripts/build-realcf.sh OUT_DIR
#   REALCF_DIR=OUT_DIR make test
#
# Needs git, a Go toolchain (go on PATH or /usr/local/go; each source's go.mod
# may ask for a newer one, which go fetches from the Go module proxy), gcc
# and libseccomp-dev (runc, garden's init and nstar), xz, and network access
# to github.com. Where the sources cannot be fetched it stops at once and
# says so. Not run in CI: CI has the archives in ../shared/realcf.
#
# Environment:
#   EXAMPLES_DIR  the example configurations and gardenctl's source to ship
#                 (default ../shared/realcf/examples beside the checkout)
#   KEEP_SOURCES  set to 1 to keep the clones (their folder is printed)
set -euo pipefail

ROUTING_URL=https://github.com/cloudfoundry/routing-release
ROUTING_COMMIT=ff30c982   # v0.317.0: gorouter 5174c18, route-registrar 875c9b4, nats-server v2.10.22
CLI_URL=https://github.com/cloudfoundry/cli
CLI_COMMIT=ccfd649d1      # stamped 9.0.0
CLI_VERSION=9.0.0
GUARDIAN_URL=https://github.com/cloudfoundry/guardian
GUARDIAN_COMMIT=c2d9348cf # runc 1.5.1 in its vendor/

fail() { echo "build-realcf: $*" >&2; exit 1; }

[ $# -eq 1 ] || fail "usage: scripts/build-realcf.sh OUT_DIR"
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
examples=${EXAMPLES_DIR:-$repo/../shared/realcf/examples}
export PATH=$PATH:/usr/local/go/bin

for tool in git go gcc xz tar sha256sum; do
	command -v "$tool" >/dev/null || fail "$tool is not installed"
done
for f in gorouter.yml.tmpl route_registrar.json.tmpl netplugin.sh gardenctl/main.go; do
	[ -e "$examples/$f" ] || fail "$examples/$f is missing: set EXAMPLES_DIR to the examples folder (../shared/realcf/examples has it)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/build-realcf.XXXXXX")
cleanup() {
	if [ "${KEEP_SOURCES:-0}" = 1 ]; then echo "build-realcf: sources kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
stage=$work/stage
mkdir -p "$stage/routing" "$stage/cf" "$stage/garden" "$stage/tools"

# fetch URL COMMIT DIR: a clone at COMMIT, or a clear failure.
fetch() {
	local url=$1 commit=$2 dir=$3
	if ! timeout 60 git ls-remote --exit-code "$url" HEAD >/dev/null 2>"$work/ls-remote.err"; then
		fail "cannot fetch $url ($(tr '\n' ' ' <"$work/ls-remote.err")): Cloud Foundry's sources are not reachable from this machine. Build where github.com is reachable and copy OUT_DIR here, or use ../shared/realcf."
	fi
	echo "build-realcf: fetching $url at $commit" >&2
	git clone --quiet --filter=blob:none "$url" "$dir" || fail "git clone $url failed"
	git -C "$dir" -c advice.detachedHead=false checkout --quiet "$commit" || fail "$url has no commit $commit"
	if [ -f "$dir/.gitmodules" ]; then
		git -C "$dir" submodule update --quiet --init --recursive || fail "the submodules of $url could not be fetched"
	fi
}

# Every source is fetched before anything is built: a machine that cannot
# reach one of them learns it within a minute.
fetch "$ROUTING_URL" "$ROUTING_COMMIT" "$work/routing-release"
fetch "$CLI_URL" "$CLI_COMMIT" "$work/cli"
fetch "$GUARDIAN_URL" "$GUARDIAN_COMMIT" "$work/guardian"

echo "build-realcf: building gorouter, route-registrar, nats-server" >&2
(
	cd "$work/routing-release/src/code.cloudfoundry.org"
	export CGO_ENABLED=0
	go build -mod=vendor -o "$stage/routing/gorouter" ./gorouter
	go build -mod=vendor -o "$stage/routing/route-registrar" ./route-registrar
	go build -mod=vendor -o "$stage/routing/nats-server" github.com/nats-io/nats-server/v2
) || fail "building routing-release's binaries failed"

echo "build-realcf: building the cf CLI $CLI_VERSION" >&2
(
	cd "$work/cli"
	CGO_ENABLED=0 go build -ldflags "-X code.cloudfoundry.org/cli/version.binaryVersion=$CLI_VERSION" -o "$stage/cf/cf" .
) || fail "building the cf CLI failed"

echo "build-realcf: building gdn, dadoo, runc, init, nstar, gardenctl" >&2
(
	cd "$work/guardian"
	go build -mod=vendor -tags daemon -o "$stage/garden/gdn" ./cmd/gdn
	go build -mod=vendor -o "$stage/garden/dadoo" ./cmd/dadoo
	go build -mod=vendor -tags seccomp -o "$stage/garden/runc" github.com/opencontainers/runc
	gcc -static -O2 -o "$stage/garden/init" cmd/init/*.c
	gcc -static -O2 -o "$stage/garden/nstar" rundmc/nstar/nstar.c
	# gardenctl speaks garden's own client, vendored in guardian.
	mkdir -p cmd/gardenctl
	cp "$examples/gardenctl/main.go" cmd/gardenctl/main.go
	go build -mod=vendor -o "$stage/tools/gardenctl" ./cmd/gardenctl
) || fail "building guardian's binaries failed (gcc -static and libseccomp-dev are needed)"

echo "build-realcf: packing into $out" >&2
for a in routing cf garden tools; do
	tar -C "$stage" -cf - "$a" | xz -9 >"$out/$a.tar.xz"
done
(cd "$out" && sha256sum routing.tar.xz cf.tar.xz garden.tar.xz tools.tar.xz >SHA256SUMS)
rm -rf "$out/examples"
cp -r "$examples" "$out/examples"
cat >"$out/unpack.sh" <<'EOF'
#!/usr/bin/env bash
# Unpacks the real Cloud Foundry binaries next to this script into DEST
# (default: a cache folder under $TMPDIR named by their checksums), after
# checking every archive, and prints DEST: DEST/routing/{gorouter,
# route-registrar,nats-server}, DEST/cf/cf, DEST/garden/{gdn,runc,init,dadoo,
# nstar}, DEST/tools/gardenctl.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
(cd "$here" && sha256sum --quiet -c SHA256SUMS) >&2
dest=${1:-${TMPDIR:-/tmp}/realcf-$(sha256sum "$here/SHA256SUMS" | cut -c1-12)}
mkdir -p "$dest"
for a in routing cf garden tools; do
	[ -e "$dest/$a/.done" ] && continue
	rm -rf "${dest:?}/$a"
	xz -dc "$here/$a.tar.xz" | tar -x -C "$dest"
	touch "$dest/$a/.done"
done
echo "$dest"
EOF
chmod +x "$out/unpack.sh"
echo "build-realcf: done; run the real-parts tests with REALCF_DIR=$out" >&2
