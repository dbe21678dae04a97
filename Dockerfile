# Multi-stage build of the aimbus binary: compile with the Rust toolchain, run on a slim
# Debian with only the binary and the configuration.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p aimbus

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 aimbus \
    && mkdir -p /var/lib/aimbus && chown aimbus /var/lib/aimbus
COPY --from=build /src/target/release/aimbus /usr/local/bin/aimbus
COPY configs /etc/aimbus
USER aimbus
ENV AIMBUS_CONFIG=/etc/aimbus/aimbus.toml
# The configuration stays read-only; the jwt secret is created where the bus may write.
ENV AIMBUS_SECURITY__JWT_SECRET_FILE=/var/lib/aimbus/jwt.secret
ENTRYPOINT ["aimbus"]
CMD ["serve"]
