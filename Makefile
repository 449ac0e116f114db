# The two commands the README promises: `make run` and `make test`.
GO ?= go
PKGS := ./...

.PHONY: run test build lint deps bench fuzz

run:
	$(GO) run ./cmd/duet serve

# Screenshots and logs of the browser tests land in test-output/.
test: deps lint
	@mkdir -p test-output
	$(GO) test -race -count=1 -timeout 18m -artifacts -outputdir $(CURDIR)/test-output $(PKGS)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/duet ./cmd/duet

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

deps:
	@./scripts/test-deps.sh

# Benchmarks report numbers; they pass or fail nothing. Results of the
# TURN comparison land in test-output/bench-turn.md, the matching load
# runs in test-output/bench-match.md (see docs/benchmarks.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	mkdir -p test-output && scripts/bench-turn.sh test-output/bench-turn.md && cat test-output/bench-turn.md
	scripts/bench-match.sh test-output/bench-match.md && cat test-output/bench-match.md
	scripts/bench-sfu.sh test-output/bench-sfu.md && cat test-output/bench-sfu.md

# Longer fuzzing than the seed corpus `make test` runs (FUZZTIME per target).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./signal/
	$(GO) test -run '^$$' -fuzz '^FuzzSanitizeChat$$' -fuzztime $(FUZZTIME) ./signal/
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./configs/
