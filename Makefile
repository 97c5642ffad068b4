# btfs — the two commands a newcomer needs are `make demo` and `make test`.
GO ?= go
TESTFLAGS ?= -race
PREFIX ?= /usr/local

.PHONY: build install test vet fmt demo deps
build:
	$(GO) build -o bin/btfs ./cmd/btfs

# install puts the binary in $(PREFIX)/bin (/usr/local/bin: ahead of Debian's
# unrelated /usr/bin/btfs on the usual PATH).
install: build
	install -D -m 0755 bin/btfs $(DESTDIR)$(PREFIX)/bin/btfs

deps:
	./scripts/deps

# demo makes a sample, seeds it on 127.0.0.1 and mounts it; Ctrl-C ends it.
demo: deps build
	./bin/btfs demo

# test installs what the end-to-end tests need (when missing), then runs
# every package's tests with the race detector.
test: deps
	$(GO) test $(TESTFLAGS) ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w .
