#!/usr/bin/env bash
# Says, before the tests run, whether the real-parts tier (tests with the
# real gorouter, route-registrar, NATS, cf CLI and garden) will run or skip:
# go test shows a skipped test's reason only with -v.
set -u
cd "$(dirname "$0")/.."
src=${REALCF_DIR:-../shared/realcf}
if [ -x "$src/unpack.sh" ]; then
	echo "real-parts tier: runs, with the real Cloud Foundry binaries from $src"
else
	echo "real-parts tier: SKIPPED: no real Cloud Foundry binaries in $src (gorouter, route-registrar, nats-server, cf, gdn)."
	echo "  To run it: set REALCF_DIR to a folder holding them as ../shared/realcf does, or build them"
	echo "  from their upstream sources with scripts/build-realcf.sh (test/realcf/README.md names each source)."
fi
