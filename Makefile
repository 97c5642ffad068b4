# btfs — the two commands a newcomer needs are `make demo` and `make test`.
GO ?= go
TESTFLAGS ?= -race

.PHONY: build test vet fmt demo deps
build:
	$(GO) build -o bin/btfs ./cmd/btfs

deps:
	./scripts/deps

# test installs what the end-to-end tests need (when missing), then runs
# every package's tests with the race detector.
test: deps
	$(GO) test $(TESTFLAGS) ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w .
