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

.PHONY: all build demo demo-vault test check-proto proto lint vet gotest opa-test fuzz clean vault-bin

all: build

build:
	$(GO) build -o $(BIN) ./cmd/borderlink

## demo: three administrations on loopback, a scripted tour, then everything stops.
demo: build
	./$(BIN) demo --dir demo-data

## demo-vault: the same demo with every gateway's certificate, audit signing
## key and pseudonymisation key in one Vault dev server (docs/vault.md).
demo-vault: build vault-bin
	./$(BIN) demo --dir demo-data-vault --vault-bin $(VAULT_BIN)

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

# The tests of internal/keys/vault run a real Vault dev server; they fail
# without BORDERLINK_VAULT_BIN (BORDERLINK_SKIP_VAULT=1 skips them).
gotest: vault-bin
	BORDERLINK_VAULT_BIN=$(CURDIR)/$(VAULT_BIN) $(GO) test $(TESTFLAGS) ./...

## vault-bin: a real Vault for tests, built from tools/vault (Vault v1.21.0,
## build tag `minimal`); rebuilt only when tools/vault/go.sum is newer. Cold:
## long (see docs/vault.md); warm: a relink.
VAULT_BIN := bin/vault
vault-bin: $(VAULT_BIN)
$(VAULT_BIN): tools/vault/go.sum
	cd tools/vault && GOFLAGS=-mod=mod $(GO) build -tags minimal -o $(CURDIR)/$(VAULT_BIN) github.com/hashicorp/vault

# The Rego unit tests must also pass under upstream OPA's own test runner,
# built from the same OPA version the gateway embeds.
opa-test:
	$(OPA) test -v policies/*.rego

## fuzz: a longer run of every fuzz target (not part of make test, which
## runs their seed corpora as ordinary tests).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzApply -fuzztime=$(FUZZTIME) ./internal/release/
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./internal/identity/
	$(GO) test -run=NONE -fuzz=FuzzLoadAgreements -fuzztime=$(FUZZTIME) ./internal/policy/
	$(GO) test -run=NONE -fuzz=FuzzDecide -fuzztime=$(FUZZTIME) ./internal/policy/
	$(GO) test -run=NONE -fuzz=FuzzRead -fuzztime=$(FUZZTIME) ./internal/importer/
	$(GO) test -run=NONE -fuzz=FuzzParseCheckpoint -fuzztime=$(FUZZTIME) ./internal/audit/
	$(GO) test -run=NONE -fuzz=FuzzParseReceipt -fuzztime=$(FUZZTIME) ./internal/audit/
	$(GO) test -run=NONE -fuzz=FuzzParseDelegation -fuzztime=$(FUZZTIME) ./internal/audit/
	$(GO) test -run=NONE -fuzz=FuzzProofs -fuzztime=$(FUZZTIME) ./internal/audit/

## bench: measure the gateway against its baselines (< 10 minutes on 2 cores);
## rewrites docs/benchmarks.md, docs/benchmarks/*.svg and results.json.
## bench-quick: the short version (about 1½ minutes), written to a temp dir.
## Both run a real Vault dev server (bin/vault) for the vault scenario.
## Pin for steadier numbers: make bench BENCHRUN="taskset -c 0,1"
.PHONY: bench bench-quick
BENCHRUN  ?=
BENCHFLAGS ?=
bench: build vault-bin
	$(BENCHRUN) ./$(BIN) bench --vault-bin $(CURDIR)/$(VAULT_BIN) $(BENCHFLAGS)

bench-quick: build vault-bin
	$(BENCHRUN) ./$(BIN) bench --quick --vault-bin $(CURDIR)/$(VAULT_BIN) $(BENCHFLAGS)

clean:
	rm -rf bin demo-data demo-data-vault
