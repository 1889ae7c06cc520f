# petdns container image: `docker build -t REGISTRY/petdns:TAG .` (see docs/deploy.md).
#
# The builder is Debian 12 (bookworm) like the runtime, so the binary links against the same
# glibc. TLS is rustls (no OpenSSL); the binary needs only glibc and libgcc_s, which the
# distroless "cc" image provides.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin petdns

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/petdns /usr/local/bin/petdns
# The distroless "nonroot" user; deploy/ also sets runAsUser 65532 and runAsNonRoot.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/petdns"]
