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

# Debian's headless Chromium, for CodeFlux's browser check (codeflux-browser/check.cjs).
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell fonts-dejavu-core >/dev/null \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /home/user
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && npm cache clean --force
# An empty database made once; an app's first database starts as a copy of it.
RUN mkdir -p /opt/codeflux \
 && node -e 'const { PGlite } = require("@electric-sql/pglite"); const db = new PGlite("/opt/codeflux/pglite-empty"); db.waitReady.then(() => db.close())' \
 && chown -R user:user /opt/codeflux
# CodeFlux's helpers change more often than the packages: copied after them.
COPY start-dev.sh /usr/local/bin/codeflux-start
COPY codeflux-env.sh /etc/profile.d/codeflux.sh
# Tags JSX elements with their source location in the dev server (selecting in the preview).
COPY codeflux-tagger.cjs /usr/local/lib/codeflux-tagger.cjs
# Keeps the dev server up: restarted with back-off, never taking the sandbox with it.
COPY codeflux-supervisor.cjs /usr/local/lib/codeflux-supervisor.cjs
# The app's database: held by the dev server's process, reached by CodeFlux through codeflux-db.
COPY codeflux-db-host.cjs codeflux-db.cjs /usr/local/lib/
# The browser check's driver, outside the app's packages.
COPY codeflux-browser/package.json codeflux-browser/package-lock.json codeflux-browser/check.cjs /opt/codeflux/browser/
RUN cd /opt/codeflux/browser && npm ci --no-audit --no-fund && npm cache clean --force && chown -R user:user /opt/codeflux/browser
RUN chmod 755 /usr/local/bin/codeflux-start \
 && chmod 644 /etc/profile.d/codeflux.sh \
 && chmod 644 /usr/local/lib/codeflux-*.cjs
ENV CODEFLUX_DB_BRIDGE=127.0.0.1:39017 \
    NODE_OPTIONS="--require /usr/local/lib/codeflux-db-host.cjs"

COPY . ./
RUN rm -f Dockerfile e2b.Dockerfile e2b.toml start-dev.sh codeflux-*.cjs codeflux-env.sh README.md .dockerignore \
 && rm -rf codeflux-browser \
 && mkdir -p .data && chown -R user:user /home/user

USER user
WORKDIR /home/user
