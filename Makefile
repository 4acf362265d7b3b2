# Atelier — the two commands are `make run` and `make test`.
# Both start project-local PostgreSQL and Redis under target/services/ when none answer
# at DATABASE_URL / REDIS_URL, and stop them afterwards (scripts/services.sh).

SHELL := /bin/bash
CARGO ?= cargo
WITH_SERVICES := scripts/with-services.sh

.PHONY: run test test-unit lint fmt openapi migrate bench bench-initdata bench-http services-up services-down clean-services

## run: migrate, then serve the API and run the worker in one process (atelier dev)
run:
	$(WITH_SERVICES) $(CARGO) run --release --bin atelier -- dev

## test: the whole suite (unit, integration over HTTP, property tests) against real services
test:
	$(WITH_SERVICES) scripts/test.sh

## lint: formatting and clippy with warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## openapi: regenerate openapi.yaml from the code (a test fails when it drifts)
openapi:
	$(CARGO) run --quiet --bin atelier -- openapi > openapi.yaml

migrate:
	$(WITH_SERVICES) $(CARGO) run --release --bin atelier -- migrate

## bench: every benchmark; figures go to bench/RESULTS.md
bench: bench-initdata bench-http

bench-initdata:
	scripts/bench-initdata.sh

## bench-http: load test of login and /me (wrk, 32 connections, 15 s each)
bench-http:
	$(WITH_SERVICES) scripts/bench-http.sh

services-up:
	scripts/services.sh up

services-down:
	scripts/services.sh down
