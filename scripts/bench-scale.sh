#!/usr/bin/env bash
# Fleet-scale benchmark (not a CI gate): one real pcap-server-api and N
# agent sessions (real mTLS + yamux, each from its own 127.x.y.z), then the
# same with two busy loops during the API restart, at the API's priority.
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
# The agents stand for cells, each with CPUs of its own: they (and the
# prober) run at nice -10, the API and the busy loops at 0, so that the
# busy loops load the API's machine, not the agents.
if [ "${HOG:-}" != only ]; then
	nice -n -10 "$bin/bench-scale" -n "$n" -api "$bin/pcap-server-api"
	echo
fi
if [ "${HOG:-}" != no ]; then
	nice -n -10 "$bin/bench-scale" -n "$n" -api "$bin/pcap-server-api" -hog
fi
