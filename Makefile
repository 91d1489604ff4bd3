# shopflow: one Go workspace (go.work), one module per directory below.
MODULES := pkg/events pkg/platform services/order services/payment services/inventory services/shipping cmd/shop e2e
SERVICES := order payment inventory shipping
# Modules outside the workspace (built alone, e.g. into the images; deploy/alerts
# tests the Prometheus alert rules and keeps Prometheus out of go.work).
STANDALONE := deploy/healthcheck deploy/alerts
GO ?= go
TEST_FLAGS ?= -count=1 -timeout 15m
BENCH ?= .
# make test runs these modules' tests under the race detector (go test -race,
# which needs cgo and a C compiler); make test RACE_MODULES= runs them without.
RACE_MODULES ?= $(MODULES)
# Tests that start kafka-go's group reader while a topic it reads is missing:
# kafka-go v0.4.51 races with itself there (README, "Tests and their
# backends"). They run without -race, in RACE_EXEMPT_PKGS, after the module's
# race run.
RACE_EXEMPT := ^(TestAMemberThatJoinedBeforeItsTopicReadsIt|TestABrokerThatLostItsDataGetsTheTopicsBack)$$
RACE_EXEMPT_PKGS := pkg/platform/inbox pkg/platform/service

.PHONY: all run test test-% build bench bench-e2e lint fmt tidy clean

all: lint test build

## run: the whole suite on the embedded defaults (broker under .data/kafka); Ctrl-C stops it.
## bin/shop runs itself rather than under go run: go run exits 1 when Ctrl-C
## reaches it, so make reported an error after every clean stop.
run:
	@mkdir -p bin
	$(GO) build -o bin/shop ./cmd/shop
	./bin/shop dev

# test_module <dir>: the module's tests, under -race if it is in RACE_MODULES
# (RACE_EXEMPT's tests then run alone without it). TEST_FLAGS' own -run and
# -skip hold for both runs: the race run skips RACE_EXEMPT besides what
# -skip names (a top-level | is an alternation to go test, each side split
# on / as usual), and the run without it skips every other test of
# RACE_EXEMPT_PKGS by name instead of selecting RACE_EXEMPT with a -run
# of its own, which replaced the developer's (the last -run counts):
# make test TEST_FLAGS='-run TestX' ran the two exempt tests too.
define test_module
flag_value() { \
	n=$$1; v=; shift; \
	while [ $$# -gt 0 ]; do \
		case $$1 in \
		-$$n|--$$n|-test.$$n|--test.$$n) if [ $$# -gt 1 ]; then v=$$2; shift; fi;; \
		-$$n=*|--$$n=*|-test.$$n=*|--test.$$n=*) v=$${1#*=};; \
		esac; \
		shift; \
	done; \
	printf '%s' "$$v"; \
}; \
test_module() { \
	case " $(RACE_MODULES) " in \
	*" $$1 "*) \
		pkgs=; for p in $(RACE_EXEMPT_PKGS); do case $$p in $$1/*) pkgs="$$pkgs ./$${p#$$1/}";; esac; done; \
		if [ -z "$$pkgs" ]; then (cd $$1 && $(GO) test $(TEST_FLAGS) -race ./...); return; fi; \
		skip=$$(flag_value skip $(TEST_FLAGS)); \
		(cd $$1 && $(GO) test $(TEST_FLAGS) -race -skip '$(RACE_EXEMPT)'"$${skip:+|$$skip}" ./...) || return; \
		list=$$(cd $$1 && $(GO) test -list . $$pkgs) || { printf '%s\n' "$$list"; return 1; }; \
		others=$$(printf '%s\n' "$$list" | grep -E '^(Test|Benchmark|Example|Fuzz)' | grep -vxE '$(RACE_EXEMPT)' | paste -sd '|' -); \
		(cd $$1 && $(GO) test $(TEST_FLAGS) -skip "^($$others)\$$$${skip:+|$$skip}" $$pkgs);; \
	*) (cd $$1 && $(GO) test $(TEST_FLAGS) ./...);; \
	esac; \
}
endef

## test: every test of every module (unit, integration on the real broker and PostgreSQL, e2e)
test:
	@set -e; $(test_module); for m in $(MODULES); do echo "== $$m"; test_module $$m; done
	@set -e; for m in $(STANDALONE); do echo "== $$m"; (cd $$m && GOWORK=off $(GO) test $(TEST_FLAGS) ./...); done

## test-<module dir with / as ->: one module, e.g. make test-pkg-platform
test-%:
	@set -e; $(test_module); test_module $(subst -,/,$*)

## build: bin/<service> for each service and bin/shop
build:
	@mkdir -p bin
	@set -e; for s in $(SERVICES); do if [ -d services/$$s/cmd/$$s ]; then echo "build bin/$$s"; $(GO) build -o bin/$$s ./services/$$s/cmd/$$s; fi; done
	$(GO) build -o bin/shop ./cmd/shop

## bench: the benchmarks (embedded broker + local PostgreSQL)
## Both benches set SHOPFLOW_TESTENV=embedded: on a machine with Docker, testenv
## would otherwise give them containers, whose port forwarding the figures in
## README "Performance" do not include.
bench:
	@set -e; for m in $(MODULES); do (cd $$m && SHOPFLOW_TESTENV=embedded $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count=1 -timeout 30m ./...); done

## bench-e2e: shop load against the whole suite on the embedded stack, beside pgbench (E2E_ORDERS=2000)
bench-e2e:
	cd e2e && SHOPFLOW_TESTENV=embedded $(GO) test -run '^$$' -bench E2E -benchtime 1x -timeout 30m .

## lint: go vet and a gofmt check over every module
lint:
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done
	@set -e; for m in $(STANDALONE); do (cd $$m && GOWORK=off $(GO) vet ./...); done
	@out=$$(gofmt -l $(MODULES) $(STANDALONE)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@# each module builds on its own (GOWORK=off), as the Dockerfile builds the images: a
	@# go.mod that only the workspace completes broke the payment and inventory images
	@set -e; for m in $(MODULES) $(STANDALONE); do if ! d=$$(cd $$m && GOWORK=off $(GO) mod tidy -diff 2>&1); then \
		echo "$$m: go.mod/go.sum not tidy without the workspace (run make tidy):"; echo "$$d" | head -40; exit 1; fi; done
	@# a stray binary (go build run inside cmd/shop) once reached main: 44 MB in every clone's history
	@if git rev-parse --git-dir >/dev/null 2>&1; then big=$$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk '$$1 > 1048576 { print $$2 }'); \
		if [ -n "$$big" ]; then echo "tracked files over 1 MiB (build output? add them to .gitignore):"; echo "$$big"; exit 1; fi; fi

## fmt: gofmt every module
fmt:
	gofmt -w $(MODULES) $(STANDALONE)

## tidy: go mod tidy each module on its own (GOWORK=off), as the images build it
tidy:
	@set -e; for m in $(MODULES) $(STANDALONE); do (cd $$m && GOWORK=off $(GO) mod tidy); done

clean:
	rm -rf bin
