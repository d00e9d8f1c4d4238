# Single-container deployment of CodeFlux.
#
#   docker build -t codeflux .
#   docker run -p 3000:3000 -p 3001:3001 -v codeflux-data:/data \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -e CODEFLUX_LLM_API_KEY=... codeflux
#
# With the Docker socket mounted, sandboxes run as sibling containers on the host's engine;
# CodeFlux joins their network to reach the previews, so no host ports are published for them.
# Without it, set CODEFLUX_SANDBOX=e2b and E2B_API_KEY.
# Behind a registry mirror or in an air gap, pass --build-arg RUST_IMAGE=… / RUNTIME_IMAGE=….
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY web ./web
COPY sandbox-templates ./sandbox-templates
RUN cargo build --release --locked --bin codeflux

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /data --create-home codeflux
COPY --from=build /src/target/release/codeflux /usr/local/bin/codeflux
ENV CODEFLUX_LISTEN=0.0.0.0:3000 \
    CODEFLUX_PREVIEW_LISTEN=0.0.0.0:3001 \
    CODEFLUX_DATA_DIR=/data
USER codeflux
VOLUME /data
EXPOSE 3000 3001
ENTRYPOINT ["tini", "--", "codeflux"]
CMD ["serve"]
