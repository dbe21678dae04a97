# Multi-stage build of the aimbus binary: compile with the Rust toolchain, run on a slim
# Debian with only the binary and the configuration.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p aimbus

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 aimbus
COPY --from=build /src/target/release/aimbus /usr/local/bin/aimbus
COPY configs /etc/aimbus
USER aimbus
ENV AIMBUS_CONFIG=/etc/aimbus/aimbus.toml
ENTRYPOINT ["aimbus"]
CMD ["serve"]
