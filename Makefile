# The two commands of the README: `make demo` and `make test`. Both work
# on a fresh Debian machine as root; they install missing packages first.
SHELL := /bin/bash
# shared/bin beside the checkout holds the bosh CLI the release tests use.
export PATH := $(PATH):/usr/local/go/bin$(if $(wildcard ../shared/bin/bosh),:$(abspath ../shared/bin))

.PHONY: demo test deps build fuzz bench bench-e2e bench-scale

demo:
	scripts/demo.sh

test: deps
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	@scripts/realcf-status.sh
	go test -race -count=1 -timeout 20m ./...

deps:
	scripts/install-deps.sh
	@scripts/fetch-blobs.sh || echo "warning: the release's blobs could not be fetched; the release tests that need them skip and say so"

build:
	go build -o bin/ ./proxy/cmd/pcap-server-api ./cellagent/cmd/pcap-server ./cli/cmd/pcap-server-cli

# Fuzz every target for FUZZTIME each (seed corpora run in `make test`).
FUZZTIME ?= 30s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

bench:
	scripts/bench.sh

# The whole path against tcpdump on the same traffic (scripts/bench-e2e.sh;
# RATES, STEP, MARGIN, TCP, IDLE, LATENCY, RING change it). Only the report
# goes to stdout: make bench-e2e > bench.md
bench-e2e:
	@scripts/bench-e2e.sh

# N agent sessions against one API process: connect, idle cost, capture
# opens, restart storm (also with a CPU hog). Not a CI gate; needs root.
bench-scale:
	@scripts/bench-scale.sh
