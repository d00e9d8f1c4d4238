# The CodeFlux sandbox as an E2B template. Same app sources and start script as the local
# Docker template (./Dockerfile); build it in this folder, see README.md.
FROM node:20-bookworm

USER root
ENV NEXT_TELEMETRY_DISABLED=1 \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false \
    NPM_CONFIG_LEGACY_PEER_DEPS=true \
    HOSTNAME=0.0.0.0 \
    PORT=3000

# E2B runs sandboxes as `user` in /home/user; make sure the account owns the app.
RUN (getent passwd user >/dev/null || useradd --create-home --home-dir /home/user --shell /bin/bash user) \
 && mkdir -p /home/user && chown user:user /home/user

COPY start-dev.sh /usr/local/bin/codeflux-start
# Tags JSX elements with their source location in the dev server (selecting in the preview).
COPY codeflux-tagger.cjs /usr/local/lib/codeflux-tagger.cjs
# Keeps the dev server up: restarted with back-off, never taking the sandbox with it.
COPY codeflux-supervisor.cjs /usr/local/lib/codeflux-supervisor.cjs
RUN chmod 755 /usr/local/bin/codeflux-start \
 && chmod 644 /usr/local/lib/codeflux-tagger.cjs /usr/local/lib/codeflux-supervisor.cjs

WORKDIR /home/user
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && npm cache clean --force
COPY . ./
RUN rm -f Dockerfile e2b.Dockerfile e2b.toml start-dev.sh codeflux-runner.cjs codeflux-supervisor.cjs codeflux-tagger.cjs README.md .dockerignore \
 && chown -R user:user /home/user

USER user
WORKDIR /home/user
