# Borderlink — the two commands a newcomer needs are `make demo` and
# `make test`; everything else is reached from them. Only Go is assumed:
# dev tools are pinned in tools/go.mod (buf, protoc plugins) and
# tools/opa/go.mod (upstream OPA CLI) and run with `go tool`.

GO        ?= go
BIN       := bin/borderlink
BUF       := $(GO) tool -modfile=tools/go.mod buf
OPA       := $(GO) tool -modfile=tools/opa/go.mod opa
# -race needs a little more time on 2 cores; the whole suite stays well
# under the 15-minute budget.
TESTFLAGS ?= -race -timeout 12m

.PHONY: all build demo test check-proto proto lint vet gotest opa-test fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/borderlink

## demo: three administrations on loopback, a scripted tour, then everything stops.
demo: build
	./$(BIN) demo --dir demo-data

## test: everything CI runs (.ci/run calls exactly this).
test: check-proto vet gotest opa-test

## proto: regenerate Go code from proto/ (committed; CI checks it is current).
proto:
	rm -f proto/borderlink/v1/*.pb.go
	$(BUF) generate

# Lint and format the .proto files and prove the committed generated code
# is exactly what `make proto` produces.
check-proto:
	$(BUF) lint
	$(BUF) format -d --exit-code
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  $(BUF) generate -o $$tmp && \
	  diff -r -x '*.proto' $$tmp/proto/borderlink/v1 proto/borderlink/v1 >/dev/null || \
	  { echo "generated code in proto/ is stale: run make proto and commit"; exit 1; }

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l cmd internal policies proto) && [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }

gotest:
	$(GO) test $(TESTFLAGS) ./...

# The Rego unit tests must also pass under upstream OPA's own test runner,
# built from the same OPA version the gateway embeds.
opa-test:
	$(OPA) test -v policies/exchange.rego policies/exchange_test.rego

## fuzz: a longer run of every fuzz target (not part of make test, which
## runs their seed corpora as ordinary tests).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzApply -fuzztime=$(FUZZTIME) ./internal/release/
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./internal/identity/
	$(GO) test -run=NONE -fuzz=FuzzLoadAgreements -fuzztime=$(FUZZTIME) ./internal/policy/
	$(GO) test -run=NONE -fuzz=FuzzRead -fuzztime=$(FUZZTIME) ./internal/importer/

clean:
	rm -rf bin demo-data
