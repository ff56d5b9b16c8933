# stagebot: `make demo` to try it, `make test` before every commit.
GO          ?= go
BIN         := $(CURDIR)/bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2

SCALE       ?= 10
SIZE        ?=
RUNS        ?= 3
SHAPE       ?= pgbench
METHODS     ?=
PROFILE     ?=
CHAOS       ?= 10m

STRESS      ?= 3
# Fuzzing is bounded by runs, not time: a -fuzztime of seconds races Go's
# fuzzing coordinator at its deadline (go.dev/issue/75804, fixed in Go 1.27)
# and fails a clean run with "context deadline exceeded" on a busy machine.
FUZZRUNS    ?= 100000

.PHONY: help build dist demo test test-dist test-stress bench bench-bot chaos fmt-check vet lint fuzz clean postgres chromium dendrite shells perf

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/stagebot
	$(GO) build -ldflags "-X main.Version=$(VERSION)" -o $(BIN)/stagebot ./cmd/stagebot

dist: ## release files in dist/: binaries (linux amd64, arm64) in tarballs, .deb and .rpm packages, SBOMs, SHA256SUMS; the same commit gives the same bytes
	GO=$(GO) VERSION=$(VERSION) sh packaging/dist.sh

demo: build postgres ## the console, with two throwaway PostgreSQL servers
	$(BIN)/stagebot demo

test: fmt-check vet lint postgres chromium dendrite shells perf ## gofmt check, go vet, staticcheck, every test with -race, then 5,000 fuzzed scripts through the whole bot
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test ./bot -run '^$$' -fuzz '^FuzzBot$$' -fuzztime 5000x

# Installs the .deb on this machine (dpkg -i), checks it and purges it:
# needs root, and leaves the stagebot system user behind, as Debian does.
test-dist: shells ## as root: install make dist's .deb with dpkg, verify its unit, user, paths and check, then purge it
	$(GO) test -tags installtest -count=1 -run '^TestDist_InstallsAndPurges$$' ./cmd/stagebot

# Two CPU hogs beside the slow packages, STRESS times in a row: a test that
# waits for a proxy of its event, or on a fixed budget, fails here first.
test-stress: postgres chromium dendrite ## the slow packages STRESS times (default 3) with two CPU hogs running beside them
	@yes >/dev/null & h1=$$!; yes >/dev/null & h2=$$!; trap 'kill $$h1 $$h2' EXIT; \
	$(GO) test -race -count=$(STRESS) -timeout 90m ./cmd/stagebot ./bot/... ./runner/... ./store/...

bench: build postgres $(if $(PROFILE),perf) ## time stagebot's refresh against pg_dump, pg_restore -j, xz and pgcopydb, with a timeline of each (SCALE=50: 1.5 GB; SCALE=dominant=16 per shape; SIZE=1GB every shape at about 1 GB; SHAPE=all: every shape; METHODS=stream,pgcopydb: only those; PROFILE=1: each method once more under perf, and where the CPU went)
	@if ! command -v pgcopydb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing pgcopydb (Debian's package) to compare against…"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgcopydb >/dev/null 2>&1 || echo "pgcopydb could not be installed: it is left out"; \
	fi
	$(GO) run ./cmd/stagebench -scale $(SCALE) -size '$(SIZE)' -runs $(RUNS) -shape $(SHAPE) -methods '$(METHODS)' $(if $(PROFILE),-profile) -stagebot $(BIN)/stagebot

chaos: postgres ## three bots on one PostgreSQL store, the leader killed or paused again and again, for CHAOS (default 10m)
	$(GO) test ./cmd/stagebot -run '^TestChaos$$' -chaos $(CHAOS) -timeout 0 -v -count=1

bench-bot: ## the bot's own costs: CPU a minute with 1,000 runs waiting; start, status and history with 10,000 runs
	$(GO) test ./cmd/stagebot -run '^$$' -bench 'Idle_1000WaitingRuns' -benchtime 1x -idle 60s
	$(GO) test ./cmd/stagebot -run '^$$' -bench 'Store_10000Runs' -benchtime 5x

# The tests and the demo start their own PostgreSQL servers from the system's
# binaries: install Debian's postgresql package when they are missing.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing PostgreSQL (Debian's postgresql package)…"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "PostgreSQL server binaries are missing: run 'sudo apt-get install postgresql', then try again"; exit 1; \
	fi

# The Matrix adapter is tested against Dendrite, a real homeserver, built
# from the Go module proxy once per machine (about 2 minutes) and cached.
dendrite:
	@$(GO) run ./bot/matrix/dendritetest/build

# The shell completions are tested in the shells they are for, and the man
# page with groff and man: Debian's zsh, fish, groff-base and man-db.
shells:
	@missing=; for t in bash:bash zsh:zsh fish:fish groff:groff-base man:man-db; do \
		command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing (Debian's packages) to test the completions and the man page…"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing to test the completions and the man page:$$missing: run 'sudo apt-get install$$missing', then try again"; exit 1; \
	fi

# The bench's profiler (make bench PROFILE=1) reads perf; its test samples
# a real server with it: Debian's linux-perf package.
perf:
	@if command -v perf >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing perf (Debian's linux-perf package) for the bench's profiler…"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; \
	else \
		echo "perf is missing (the bench's profiler is tested with it): run 'sudo apt-get install linux-perf', then try again"; exit 1; \
	fi

# The status page is tested in a real browser: Debian's chromium package.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Chromium (Debian's chromium package) for the status page's browser test…"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is missing (the status page's test runs in it): run 'sudo apt-get install chromium', then try again"; exit 1; \
	fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(STATICCHECK)
	$(STATICCHECK) ./...

fuzz: ## fuzz the whole bot for FUZZRUNS scripts (default 100000, some minutes), then the command parser for a million inputs
	$(GO) test ./bot -run '^$$' -fuzz '^FuzzBot$$' -fuzztime $(FUZZRUNS)x
	$(GO) test ./commands -run '^$$' -fuzz FuzzParse -fuzztime 1000000x

clean:
	rm -rf $(BIN)
