# Atelier — the two commands are `make run` and `make test`.
# Both start project-local PostgreSQL and Redis under target/services/ when none answer
# at DATABASE_URL / REDIS_URL, and stop them afterwards (scripts/services.sh).

SHELL := /bin/bash
CARGO ?= cargo
WITH_SERVICES := scripts/with-services.sh

.PHONY: run test lint fmt openapi migrate bench bench-initdata bench-media bench-http bench-upload bench-queue bench-ws services-up services-down bench-pipeline bench-chat e2e

## run: migrate, then serve the API and run the worker in one process (atelier dev)
run:
	$(WITH_SERVICES) $(CARGO) run --release --bin atelier -- dev

## test: the whole suite (unit, integration over HTTP, property tests) against real services
test:
	$(WITH_SERVICES) scripts/test.sh

## e2e: the demo page's whole flow in headless Chromium (Playwright) against atelier dev;
## screenshots in target/e2e/ (installs Chromium and e2e/node_modules; skips where it cannot)
e2e:
	scripts/e2e.sh

## client-ts: the typed TypeScript client (clients/ts): types from openapi.yaml up to date,
## type-checked, and its Node test run against atelier dev (installs npm packages)
.PHONY: client-ts
client-ts:
	scripts/client-ts.sh

## contract: Schemathesis against the served openapi.yaml (CONTRACT_MAX_EXAMPLES per operation, default 25)
.PHONY: contract
contract:
	$(WITH_SERVICES) scripts/contract.sh

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

## bench: every benchmark; figures go to bench/results/*.md, the whole report to bench/RESULTS.md
bench: bench-initdata bench-media bench-http bench-upload bench-queue bench-pipeline bench-ws bench-chat
	scripts/bench-report.sh

bench-initdata:
	scripts/bench-criterion.sh initdata "initData validation"

bench-media:
	scripts/bench-criterion.sh media "Photo pipeline: validate + normalise a 4000×3000 JPEG, watermark"

## bench-upload: 8 concurrent clients uploading 4000×3000 JPEGs; req/s and peak memory
bench-upload:
	$(WITH_SERVICES) scripts/bench-upload.sh

## bench-queue: job queue throughput, 2000 no-op jobs, 4 job slots, claim to complete
bench-queue:
	$(WITH_SERVICES) scripts/bench-queue.sh

## bench-pipeline: whole generations with the sandbox provider; request → queued event delay
bench-pipeline:
	$(WITH_SERVICES) scripts/bench-pipeline.sh

## bench-http: load test of login and /me (wrk, 32 connections, 15 s each)
bench-http:
	$(WITH_SERVICES) scripts/bench-http.sh

## bench-ws: 5000 WebSockets over 1000 users, events through Redis; delay p50/p99 and server memory
bench-ws:
	$(WITH_SERVICES) scripts/bench-ws.sh

## bench-chat: our side of a chat turn with an instant fake OpenRouter, 200 turns/s open loop
bench-chat:
	$(WITH_SERVICES) scripts/bench-chat.sh

services-up:
	scripts/services.sh up

services-down:
	scripts/services.sh down
