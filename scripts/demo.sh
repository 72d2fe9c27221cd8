#!/usr/bin/env bash
# make demo: a real capture on this machine. It builds the binaries, makes a
# throwaway CA, creates a network namespace standing in for an app
# container (veth, 198.18.0.0/30) with a small HTTP server inside, starts
# the API and the agent in dev mode, captures requests to the app with the
# CLI into demo.pcap and shows what tshark sees. Everything it starts or
# creates is removed at the end, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "make demo needs root: it creates a network namespace and captures in it" >&2
	exit 1
fi
scripts/install-deps.sh

work=$(mktemp -d /tmp/pcap-demo.XXXXXX)
ns=pcapdemo-$$
veth=pcapd$$
pids=()
cleanup() {
	status=$?
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	ip link del "$veth" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	if [ "$status" != 0 ]; then
		echo "demo failed; the logs:" >&2
		tail -n 20 "$work"/*.log >&2 2>/dev/null || true
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building"
go build -o "$work/bin/" ./proxy/cmd/pcap-server-api ./cellagent/cmd/pcap-server ./cli/cmd/pcap-server-cli ./test/cmd/pcap-demo
"$work/bin/pcap-demo" certs "$work"

echo "== creating network namespace $ns (the app container) with eth0 198.18.0.2"
ip netns add "$ns"
ip link add "$veth" type veth peer name eth0 netns "$ns"
ip addr add 198.18.0.1/30 dev "$veth"
ip link set "$veth" up
ip -n "$ns" addr add 198.18.0.2/30 dev eth0
ip -n "$ns" link set eth0 up
ip -n "$ns" link set lo up
ip netns exec "$ns" "$work/bin/pcap-demo" serve 198.18.0.2:8080 >"$work/app.log" 2>&1 &
pids+=($!)

token=demo-token-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
app_guid=6b9e6f2e-0b1c-4d7e-9f5a-d3m0d3m0app0
cat >"$work/api.yml" <<YAML
id: pcap-server-api/demo
listen: {address: "127.0.0.1:18080"}
tunnel:
  address: "127.0.0.1:18494"
  tls: {certificate: $work/api.crt, private_key: $work/api.key, client_ca: $work/ca.crt}
metrics: {address: "127.0.0.1:18495"}
audit_log: $work/audit.log
dev:
  token: $token
  targets: [{app_guid: $app_guid, app_name: demo-app, index: 0, cell_ip: 127.0.0.1}]
YAML
cat >"$work/agent.yml" <<YAML
id: demo-cell
cell_ips: ["127.0.0.1"]
api:
  addresses: ["127.0.0.1:18494"]
  tls: {certificate: $work/agent.crt, private_key: $work/agent.key, ca: $work/ca.crt, server_name: pcap-server-api.service.cf.internal}
metrics: {address: "127.0.0.1:18496"}
dev:
  netns: {"$app_guid/0": /run/netns/$ns}
YAML
"$work/bin/pcap-server-api" -config "$work/api.yml" -check-config
"$work/bin/pcap-server" -config "$work/agent.yml" -check-config

echo "== starting pcap-server-api and pcap-server (dev mode)"
"$work/bin/pcap-server-api" -config "$work/api.yml" 2>"$work/api.log" &
pids+=($!)
"$work/bin/pcap-server" -config "$work/agent.yml" 2>"$work/agent.log" &
pids+=($!)
"$work/bin/pcap-demo" wait-agent http://127.0.0.1:18080 "$token"

echo "== capturing with: pcap-server-cli pcap demo-app -f 'tcp port 8080' --duration 4s -o demo.pcap"
rm -f demo.pcap
"$work/bin/pcap-server-cli" pcap demo-app --api-url http://127.0.0.1:18080 --token "$token" --app-guid "$app_guid" \
	-f 'tcp port 8080' --duration 4s -o demo.pcap 2>"$work/cli.log" &
cli=$!
pids+=("$cli")
for _ in $(seq 100); do
	grep -q '^Capturing' "$work/cli.log" && break
	kill -0 "$cli" 2>/dev/null || break
	sleep 0.1
done
grep -q '^Capturing' "$work/cli.log" || { echo "the capture did not start" >&2; cat "$work/cli.log" >&2; exit 1; }
"$work/bin/pcap-demo" get http://198.18.0.2:8080 5
wait "$cli"
cat "$work/cli.log"

echo "== tshark -r demo.pcap (HTTP requests and answers)"
tshark -r demo.pcap -Y http 2>/dev/null | head -n 12
echo "== $(tshark -r demo.pcap 2>/dev/null | wc -l) packets in demo.pcap; the audit log said:"
tail -n 1 "$work/audit.log"
