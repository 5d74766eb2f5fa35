# Multi-stage: build with the Rust toolchain, run from a slim image as a
# non-root user. The protos build with a vendored protoc: nothing else needed.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p slip \
 && strip target/release/slip

FROM debian:bookworm-slim
# CA roots, for callbacks to https:// backends.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home slip
COPY --from=build /src/target/release/slip /usr/local/bin/slip
USER slip
# edge: 8080 (WebSockets, /healthz, /readyz); control: 7070 (APIs), 7071/udp (links); all: 9090 (/metrics)
EXPOSE 8080 7070 7071/udp 9090
ENTRYPOINT ["/usr/local/bin/slip"]
CMD ["dev", "--listen", "[::]:8080", "--control-listen", "[::]:7070"]
