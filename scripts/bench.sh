#!/usr/bin/env bash
# The benchmarks, each against a baseline measured in the same run:
#   wire encode/decode of packet batches (ns/packet, allocs/packet);
#   one capture stream over the tunnel vs the same frames on bare TLS;
#   the agent's capture loop on a burst of datagrams;
#   a burst captured by the agent through tunnel, API and client, vs
#   tcpdump -w on the same burst (share captured, CPU time per packet).
# Needs root (network namespaces). COUNT repeats each benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
go test -run '^$' -bench . -benchmem -count "$count" ./wire ./proxy/tunnel
go test -run '^$' -bench CaptureBurst -benchtime 3x -count "$count" ./cellagent/capture
go test -run '^$' -bench CaptureVsTcpdump -benchtime 3x -count "$count" ./e2e 2>/dev/null | grep -Ev '^[[:space:]]*(\{|\.\.\.)'
