#!/usr/bin/env bash
# Fleet-scale benchmark (not a CI gate): one real pcap-server-api and N
# agent sessions (real mTLS + yamux, each from its own 127.x.y.z), then the
# same with two busy loops at normal priority during the API restart.
#   N=5000 scripts/bench-scale.sh        (default N=5000; needs root)
#   HOG=only scripts/bench-scale.sh      only the run with the CPU hog
#   HOG=no scripts/bench-scale.sh        only the run without it
# Both the API and the agents hold one descriptor per session: the soft
# limit is raised to the hard one here (and by the program), which must
# leave room for N plus a few hundred.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-5000}
ulimit -n "$(ulimit -Hn)"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./proxy/cmd/pcap-server-api ./test/cmd/bench-scale
if [ "${HOG:-}" != only ]; then
	"$bin/bench-scale" -n "$n" -api "$bin/pcap-server-api"
	echo
fi
if [ "${HOG:-}" != no ]; then
	"$bin/bench-scale" -n "$n" -api "$bin/pcap-server-api" -hog
fi
