# Multi-stage build of the aimbus binary: compile with the Rust toolchain, run on a slim
# Debian with only the binary, the configuration, and curl for the healthcheck.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p aimbus

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 aimbus \
    && mkdir -p /var/lib/aimbus && chown aimbus /var/lib/aimbus
COPY --from=build /src/target/release/aimbus /usr/local/bin/aimbus
COPY configs /etc/aimbus
USER aimbus
# configs/docker.toml: the broker and Jaeger by their compose names, state (jwt secret,
# keyring) under /var/lib/aimbus where the bus may write; the configuration stays
# read-only.
ENV AIMBUS_CONFIG=/etc/aimbus/docker.toml
ENTRYPOINT ["aimbus"]
CMD ["serve"]
