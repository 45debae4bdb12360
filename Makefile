# quicwt: the two commands of the README.
#   make demo   run the demo server (same as: cd cmd/quicwt && go run . serve)
#   make test   run the whole test suite (what .ci/run runs)

GO ?= go
FUZZN ?= 300000x
FUZZN_CONN ?= 50000x
FUZZMIN ?= 3s
FUZZ_TARGETS = $(shell grep -ho '^func Fuzz[A-Za-z0-9_]*' fuzz/*_test.go | sed 's/^func //')
NESTED = $(wildcard cmd/quicwt/go.mod cmd/interop/go.mod cmd/bench/go.mod)

QUICGO_LATEST ?= v0.65.0

.PHONY: demo test check unit unit-quic-go-latest fuzz nested bench

demo:
	cd cmd/quicwt && $(GO) run . serve

test: check unit unit-quic-go-latest fuzz nested

# Formatting and vet over the root module and the nested ones.
check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@for m in $(dir $(NESTED)); do (cd $$m && $(GO) vet ./...) || exit 1; done

# Unit and end-to-end tests of the library, with the race detector (the
# command line, cmd/quicwt, is a nested module: see nested).
unit:
	$(GO) test -race -count=1 ./...

# The library against the newest quic-go as well (QUICGO_LATEST), through a
# copy of go.mod: the module requires v0.64.1, the newest that
# webtransport-go v0.13.0 (cmd/interop, cmd/bench) compiles with, and a
# build that links both gets one quic-go for both.
unit-quic-go-latest:
	@tmp=$$(mktemp -d) && cp go.mod go.sum $$tmp/ && \
	$(GO) get -modfile=$$tmp/go.mod github.com/quic-go/quic-go@$(QUICGO_LATEST) && \
	$(GO) test -race -count=1 -tags quicgo_latest -modfile=$$tmp/go.mod ./quicwt ./frames/... ./settings ./varint; \
	rc=$$?; rm -rf $$tmp; exit $$rc

# Each fuzz target for a bounded number of executions on top of its seed
# corpus. Counts, not durations: with a duration, Go 1.26's fuzz
# coordinator can fail a target with a bare "context deadline exceeded" as
# the time runs out (golang/go#75804, fixed in Go 1.27).
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t ($(FUZZN))"; \
		$(GO) test ./fuzz -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZN) -fuzzminimizetime=$(FUZZMIN) || exit 1; \
	done
	@echo "fuzz FuzzParseStringList ($(FUZZN))"
	$(GO) test ./frames/sfv -run='^$$' -fuzz='^FuzzParseStringList$$' -fuzztime=$(FUZZN) -fuzzminimizetime=$(FUZZMIN)
	@echo "fuzz FuzzConnection ($(FUZZN_CONN))"
	$(GO) test ./quicwt -run='^$$' -fuzz='^FuzzConnection$$' -fuzztime=$(FUZZN_CONN) -fuzzminimizetime=$(FUZZMIN)

# Nested modules: the command line and its demo (with a real redis-server),
# interop with webtransport-go and real browsers, and the benchmark suite's
# quick self-test.
nested:
	@for m in $(dir $(NESTED)); do echo "== $$m"; (cd $$m && $(GO) test -race -count=1 ./...) || exit 1; done

# The benchmark report of issue 5 (see cmd/bench/RESULTS.md).
bench:
	cd cmd/bench && $(GO) run . -rounds 5
