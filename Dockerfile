# Single-container deployment of CodeFlux.
#
# From source (needs a Rust image):
#   docker build -t codeflux .
# From a binary you built already (no Rust image needed; an air-gapped or registry-less host):
#   cargo build --release --locked
#   docker build --target prebuilt -t codeflux .
#
#   docker run -p 3000:3000 -p 3001:3001 -v codeflux-data:/data \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -e CODEFLUX_AUTH_TOKEN=... -e CODEFLUX_LLM_API_KEY=... codeflux
#
# With the Docker socket mounted, sandboxes run as sibling containers on the host's engine;
# CodeFlux joins their network to reach the previews, so no host ports are published for them.
# Without it, set CODEFLUX_SANDBOX=e2b and E2B_API_KEY. See examples/docker-compose.yml.
#
# Both base images are build arguments, for registry mirrors and hosts without a registry.
# The runtime image must be Debian-based (apt) with a glibc at least as new as the build's.
# This file works with the classic builder too: stages are ordered so that
# `--target prebuilt` never needs the Rust image.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates tini git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /data --create-home codeflux
ENV CODEFLUX_LISTEN=0.0.0.0:3000 \
    CODEFLUX_PREVIEW_LISTEN=0.0.0.0:3001 \
    CODEFLUX_DATA_DIR=/data
USER codeflux
VOLUME /data
EXPOSE 3000 3001
ENTRYPOINT ["tini", "--", "codeflux"]
CMD ["serve"]

# The image around a binary built outside Docker (the path is relative to the context).
FROM runtime AS prebuilt
ARG BINARY=target/release/codeflux
COPY ${BINARY} /usr/local/bin/codeflux

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
COPY web ./web
COPY sandbox-templates ./sandbox-templates
RUN cargo build --release --locked --bin codeflux

FROM runtime
COPY --from=build /src/target/release/codeflux /usr/local/bin/codeflux
