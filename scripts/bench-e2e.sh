#!/usr/bin/env bash
# make bench-e2e: the whole capture path (agent -> mTLS tunnel -> API ->
# CLI, each its own process) against tcpdump -w on the same traffic, in
# network namespaces made for the run: UDP rate steps (a paced sender;
# trafgen for flat out), iperf3 TCP runs (paced and unpaced, with CPU per
# captured byte of every process), idle CPU and latency. The
# markdown report goes to stdout, progress to stderr. A benchmark, not a
# test: numbers from a shared machine are noisy, compare the two paths
# within one run. Everything it starts or creates is removed at the end,
# also on Ctrl-C or failure.
#
# Settings (environment): RATES (100k,250k,400k,max; none skips the UDP
# steps), STEP (8s), MARGIN (4s), TCP (8s per run, 0 skips), TCP_RATES
# (1G,2G,3G,max: iperf3's -b, max unpaced), TCP_OUTPUT (file: the TCP
# captures write files on tmpfs, freed behind the writers; growing-file:
# files kept whole until the step ends, gigabytes of memory; pipe: into
# a pipe), IDLE (10s, 0 skips), LATENCY
# (10s, 0 skips), RING (MiB, the kernel ring of both paths; default: the
# agent's default), PROFILE (a directory: perf profiles of every process
# during the unpaced TCP step; installs linux-perf), BIN (a directory with
# pcap-server, pcap-server-api and pcap-server-cli built elsewhere: the
# benchmark measures those instead of this tree's, so that two builds can
# be run alternately with one benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "make bench-e2e needs root: it creates network namespaces and captures in them" >&2
	exit 1
fi
scripts/install-deps.sh
missing=()
wanted=(netsniff-ng iperf3)
if [ -n "${PROFILE:-}" ]; then
	wanted+=(linux-perf)
fi
for p in "${wanted[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/pcap-bench-e2e.XXXXXX)
out=$(mktemp -d /dev/shm/pcap-bench-e2e.XXXXXX) # captures on tmpfs: a disk would be measured too
app_ns=pcapbench-app-$$
peer_ns=pcapbench-peer-$$
cleanup() {
	status=$?
	# The benchmark removes its namespaces itself; this is for when it
	# could not (killed).
	ip netns del "$app_ns" 2>/dev/null || true
	ip netns del "$peer_ns" 2>/dev/null || true
	if [ "$status" != 0 ]; then
		echo "bench-e2e failed; the servers' logs:" >&2
		tail -n 20 "$work"/*.log >&2 2>/dev/null || true
	fi
	rm -rf "$work" "$out"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building" >&2
if [ -n "${BIN:-}" ]; then
	go build -o "$work/bin/" ./test/cmd/pcap-bench-e2e
	for b in pcap-server pcap-server-api pcap-server-cli; do
		cp "$BIN/$b" "$work/bin/$b"
	done
	code="the binaries in $BIN"
else
	go build -o "$work/bin/" ./proxy/cmd/pcap-server-api ./cellagent/cmd/pcap-server ./cli/cmd/pcap-server-cli ./test/cmd/pcap-bench-e2e
	code="$(git describe --always --dirty 2>/dev/null || echo unknown) ($(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo '?'))"
fi
"$work/bin/pcap-bench-e2e" -bin "$work/bin" -work "$work" -out "$out" -app-ns "$app_ns" -peer-ns "$peer_ns" -code "$code" \
	-rates "${RATES:-100k,250k,400k,max}" -step "${STEP:-8s}" -margin "${MARGIN:-4s}" \
	-tcp "${TCP:-8s}" -tcp-rates "${TCP_RATES:-1G,2G,3G,max}" -tcp-output "${TCP_OUTPUT:-file}" ${PROFILE:+-profile "$(realpath -m "$PROFILE")"} -idle "${IDLE:-10s}" -latency "${LATENCY:-10s}" ${RING:+-ring "$RING"}
