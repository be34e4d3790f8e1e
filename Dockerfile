# syntax=docker/dockerfile:1
# The chokepoint image: a release build in a Rust stage, then only the binary
# (and CA certificates for https targets) on a small non-root runtime.
#
#   docker build -t chokepoint:0.1.0 .
#   docker run --rm chokepoint:0.1.0 run http://host.docker.internal:8080/ -c 10 -z 10s
#
# Used by `chokepoint k8s` manifests (docs/distributed.md): the entrypoint is
# the binary, the manifests pass `run ...` and `merge ...` as arguments.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Manifests first so the dependency download is cached apart from source edits.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY docs ./docs
COPY examples ./examples
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin chokepoint \
    && cp target/release/chokepoint /usr/local/bin/chokepoint

# distroless/cc has glibc, libgcc and CA certificates, and runs as nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /usr/local/bin/chokepoint /usr/local/bin/chokepoint
USER 65532:65532
WORKDIR /results
ENTRYPOINT ["/usr/local/bin/chokepoint"]
CMD ["--help"]
