#!/usr/bin/env bash
# The benchmarks, each against a baseline measured in the same run:
#   wire encode/decode of packet batches (ns/packet, allocs/packet);
#   one capture stream over the tunnel vs the same frames on bare TLS;
#   the agent's capture loop on a burst of datagrams, and alone on a
#   ring filled beforehand (ns/packet);
#   the API's work per packet with agents replayed from memory, 1, 4 and
#   16 instances (ns/packet; baseline: copying the same frames);
#   the CLI's copier against io.Copy of the same stream;
#   the API's per-write deadline on a capture stream vs none (HTTP/1.1, HTTP/2);
#   a burst captured by the agent through tunnel, API and client, vs
#   tcpdump -w on the same burst (share captured, CPU time per packet).
# Needs root (network namespaces). COUNT repeats each benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
go test -run '^$' -bench . -benchmem -count "$count" ./wire ./proxy/tunnel
go test -run '^$' -bench 'CaptureBurst|ReadLoop' -benchtime 3x -count "$count" ./cellagent/capture
go test -run '^$' -bench Session -count "$count" ./proxy/capture
go test -run '^$' -bench Copy -count "$count" ./cli/pcapstream
go test -run '^$' -bench ClientWriter -count "$count" ./proxy/api
go test -run '^$' -bench CaptureVsTcpdump -benchtime 3x -count "$count" ./test/e2e 2>/dev/null | grep -Ev '^[[:space:]]*(\{|\.\.\.)'
