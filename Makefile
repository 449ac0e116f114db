# The two commands the README promises: `make run` and `make test`.
GO ?= go
PKGS := ./...

.PHONY: run test build lint deps bench fuzz fuzz-short fuzz-run soak

run:
	$(GO) run ./cmd/duet serve

# Screenshots and logs of the browser tests land in test-output/.
test: deps lint
	@mkdir -p test-output
	$(GO) test -race -count=1 -timeout 18m -artifacts -outputdir $(CURDIR)/test-output $(PKGS)
	@$(MAKE) --no-print-directory fuzz-short

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/duet ./cmd/duet

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

deps:
	@./scripts/test-deps.sh

# Benchmarks report numbers; they pass or fail nothing. `make bench`
# runs the whole suite (about 15 minutes here) and rewrites the generated
# part of docs/benchmarks.md; each part's Markdown lands in test-output/.
bench:
	scripts/bench.sh

# A bounded soak (SOAK_MINUTES, default 30): two nodes on Redis under
# churn, memory/goroutines/rooms each minute, into test-output/soak.md.
soak:
	mkdir -p test-output && scripts/soak.sh test-output/soak.md && cat test-output/soak.md

# Every fuzz target. `make test` fuzzes each for FUZZ_SHORT after the
# tests (the committed corpus in testdata/fuzz runs as plain tests too);
# `make fuzz` runs each for FUZZTIME.
FUZZ_TARGETS := FuzzDecode:./wire/ FuzzSanitizeChat:./wire/ FuzzLoad:./configs/ FuzzParseUsername:./turn/ FuzzCandidateFilter:./sfu/ FuzzStreamFrames:./turn/ FuzzParseChannelData:./turn/ FuzzAdmit:./pow/
FUZZ_SHORT ?= 8s
FUZZTIME ?= 60s
fuzz:
	@$(MAKE) --no-print-directory fuzz-run T=$(FUZZTIME)
fuzz-short:
	@$(MAKE) --no-print-directory fuzz-run T=$(FUZZ_SHORT)
fuzz-run:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t%%:*} for $(T)"; \
	  $(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(T) $${t#*:}; \
	done
