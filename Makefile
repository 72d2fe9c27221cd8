# The two commands of the README: `make demo` and `make test`. Both work
# on a fresh Debian machine as root; they install missing packages first.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin

.PHONY: demo test deps build fuzz bench bench-scale

demo:
	scripts/demo.sh

test: deps
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	go test -race -count=1 -timeout 20m ./...

deps:
	scripts/install-deps.sh
	@scripts/fetch-blobs.sh || echo "warning: the libpcap blob could not be fetched; the release test that compiles it will skip and say so"

build:
	go build -o bin/ ./proxy/cmd/pcap-server-api ./cellagent/cmd/pcap-server ./cli/cmd/pcap-server-cli

# Fuzz every target for FUZZTIME each (seed corpora run in `make test`).
FUZZTIME ?= 30s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

bench:
	scripts/bench.sh

# N agent sessions against one API process: connect, idle cost, capture
# opens, restart storm (also with a CPU hog). Not a CI gate; needs root.
bench-scale:
	scripts/bench-scale.sh
