# stagebot: `make demo` to try it, `make test` before every commit.
GO          ?= go
BIN         := $(CURDIR)/bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2

.PHONY: help build demo test fmt-check vet lint fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/stagebot
	$(GO) build -ldflags "-X main.Version=$(VERSION)" -o $(BIN)/stagebot ./cmd/stagebot

demo: build ## the console with a demo target
	$(BIN)/stagebot demo

test: fmt-check vet lint ## gofmt check, go vet, staticcheck, then every test with -race
	$(GO) test -race -count=1 ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(STATICCHECK)
	$(STATICCHECK) ./...

fuzz: ## fuzz the command parser for a minute
	$(GO) test ./commands -run '^$$' -fuzz FuzzParse -fuzztime 60s

clean:
	rm -rf $(BIN)
