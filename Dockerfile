# syntax=docker/dockerfile:1
# Atelier: one image, one binary. `docker build -t atelier .`, then run `atelier serve`,
# `atelier worker` or `atelier migrate` from it (see docker-compose.yml).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the build between image builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features s3 --bin atelier \
    && cp target/release/atelier /usr/local/bin/atelier

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --create-home atelier \
    && mkdir -p /data/media && chown atelier /data/media
COPY --from=build /usr/local/bin/atelier /usr/local/bin/atelier
USER atelier
WORKDIR /app
ENV APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    METRICS_PORT=9090 \
    LOG_FORMAT=json \
    STORAGE_DIR=/data/media
# 8080: the public API; 9090: /metrics (with /health, /ready), for the private network only.
EXPOSE 8080 9090
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
    CMD ["atelier", "healthcheck"]
ENTRYPOINT ["atelier"]
CMD ["serve"]
