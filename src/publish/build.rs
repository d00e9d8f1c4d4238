//! The production build of one version, shared by publishing and `codeflux export`:
//! `next build` runs in a throwaway build sandbox (the app's code is untrusted, so it gets
//! a sandbox's limits and network rules), and a second stage keeps only what the server
//! needs: Next's standalone output, the database engine and the migrations, run by an
//! unprivileged user, with a health check.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use uuid::Uuid;

use super::PublishError;
use crate::sandbox::docker::DockerProvider;
use crate::sandbox::{FileWrite, Sandbox, WorkspacePath};

/// The port the app listens on inside its container.
pub const APP_PORT: u16 = 3000;
/// Where the app's data lives in the image (a volume in a published container).
pub const DATA_PATH: &str = "/app/.data";
/// The app's folder in its image.
pub const APP_DIR: &str = "/app";
/// The user the app runs as: no account of the base image, no rights in it.
pub const APP_USER: &str = "10001:10001";
const INSTALL_LIMIT: Duration = Duration::from_secs(600);
const BUILD_LIMIT: Duration = Duration::from_secs(900);
/// How much of a failed step's output the log keeps (its end tells what went wrong).
const LOG_TAIL_LINES: usize = 150;

/// Builds the production image `tag` of `files` (the version's own files; the template's
/// are in the build sandbox already). Every step's output goes to `log`.
pub async fn production_image(
    provider: &DockerProvider,
    project_id: Uuid,
    files: &BTreeMap<String, Vec<u8>>,
    tag: &str,
    labels: &HashMap<String, String>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(), PublishError> {
    // The production image starts from the base image; on an engine without a registry a
    // missing one would only fail at the end, after the whole build, with a pull error.
    let base = &provider.config().base_image;
    if !provider.has_image(base).await {
        return Err(PublishError::Build(format!(
            "the production image starts from {base}, which this engine does not have: pull it, or carry it over with `codeflux template export` and `import` (the tarball holds it)"
        )));
    }
    log("Starting a build sandbox");
    let sandbox = provider.build_sandbox(project_id).await?;
    let stage = provider.build_stage_reference();
    let built = build_in(&sandbox, files, log).await;
    let committed = match built {
        Ok(()) => provider
            .commit(sandbox.id(), &stage)
            .await
            .map_err(PublishError::from),
        Err(error) => Err(error),
    };
    if let Err(error) = sandbox.kill().await {
        tracing::warn!(%error, "could not remove the build sandbox");
    }
    committed?;
    log("Making the production image");
    let context = context(&stage, &provider.config().base_image)
        .map_err(|error| PublishError::Build(format!("cannot pack the image: {error}")))?;
    let made = provider
        .build_from_context(context, tag, labels, log)
        .await
        .map_err(|error| PublishError::Build(error.to_string()));
    provider.remove_image(&stage).await;
    made?;
    log(&format!("Image {tag} is ready"));
    Ok(())
}

async fn build_in(
    sandbox: &dyn Sandbox,
    files: &BTreeMap<String, Vec<u8>>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(), PublishError> {
    let writes = files
        .iter()
        .map(|(path, content)| {
            Ok(FileWrite {
                path: WorkspacePath::parse(path)?,
                content: content.clone(),
            })
        })
        .collect::<Result<Vec<_>, crate::sandbox::SandboxError>>()?;
    sandbox.write_files(&writes).await?;
    if needs_install(files) {
        step(
            sandbox,
            "Installing the app's packages",
            "npm install --no-audit --no-fund 2>&1",
            INSTALL_LIMIT,
            log,
        )
        .await?;
    }
    // Turbopack, as in the template's `build` script and the dev server (webpack's
    // PostCSS loader cannot load Tailwind 4 on Node 20). The standalone output is asked for
    // here, so an app's own next.config cannot lose it.
    step(
        sandbox,
        "Building the app for production (next build)",
        "CODEFLUX_BUILDING=1 NEXT_PRIVATE_STANDALONE=true NODE_ENV=production npx --no-install next build --turbopack 2>&1",
        BUILD_LIMIT,
        log,
    )
    .await?;
    step(
        sandbox,
        "Checking the build",
        "test -f .next/standalone/server.js || { echo 'next build made no standalone server (.next/standalone/server.js)'; exit 1; }; \
         find .next/static -name '*.map' -delete; mkdir -p public && rm -rf .data && mkdir .data",
        Duration::from_secs(60),
        log,
    )
    .await
}

/// Whether the version's packages differ from the template's, which the image holds.
fn needs_install(files: &BTreeMap<String, Vec<u8>>) -> bool {
    use crate::packages::{LOCKFILE, MANIFEST, Manifests};
    let text = |name: &str| {
        files
            .get(name)
            .and_then(|bytes| String::from_utf8(bytes.clone()).ok())
            .map(|text| (name.to_string(), text))
    };
    let own: BTreeMap<String, String> = [text(MANIFEST), text(LOCKFILE)]
        .into_iter()
        .flatten()
        .collect();
    Manifests::of_version(&own).need_install_over(&Manifests::template())
}

/// Runs one build step; its output goes to the log, and a failure carries its end.
async fn step(
    sandbox: &dyn Sandbox,
    title: &str,
    command: &str,
    limit: Duration,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(), PublishError> {
    log(title);
    let output = match sandbox.run(command, limit).await {
        Ok(output) => output,
        Err(crate::sandbox::SandboxError::Timeout(_)) => {
            return Err(PublishError::Build(format!(
                "{title} took longer than {} min",
                limit.as_secs() / 60
            )));
        }
        Err(error) => return Err(error.into()),
    };
    let text = format!("{}{}", output.stdout, output.stderr);
    for line in text.lines() {
        log(line);
    }
    if output.success() {
        return Ok(());
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    let hint = hint_for(&text).map(|hint| {
        log(hint);
        format!("\n{hint}")
    });
    Err(PublishError::Build(format!(
        "{title} failed (exit {}):\n{tail}{}",
        output.exit_code,
        hint.unwrap_or_default()
    )))
}

/// What CodeFlux knows about a failure that the build's own output hides: Drizzle reports
/// the database's refusal during prerendering only as "Failed query".
fn hint_for(output: &str) -> Option<&'static str> {
    (output.contains("Error occurred prerendering page") && output.contains("Failed query")).then_some(
        "CodeFlux: a page read the database while it was prerendered, and no database exists during `next build`. Render that page per request: add `export const dynamic = \"force-dynamic\";` to it.",
    )
}

/// The second stage's context: its Dockerfile and the start script.
fn context(stage: &str, base_image: &str) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    append(
        &mut tar,
        "Dockerfile",
        dockerfile(stage, base_image).as_bytes(),
        0o644,
    )?;
    append(
        &mut tar,
        "codeflux-app-start",
        START_SCRIPT.as_bytes(),
        0o755,
    )?;
    tar.into_inner()
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
}

/// Only COPY lines: nothing of the app runs while this stage is built.
fn dockerfile(stage: &str, base_image: &str) -> String {
    format!(
        r#"# A CodeFlux app's production image: Next's standalone server with the app's embedded
# database (PGlite), its migrations and seed, run by an unprivileged user.
FROM {stage} AS build

FROM {base_image}
ENV NODE_ENV=production \
    NEXT_TELEMETRY_DISABLED=1 \
    HOSTNAME=0.0.0.0 \
    PORT={APP_PORT} \
    HOME=/app \
    CODEFLUX_APP_DIR=/app \
    CODEFLUX_EMPTY_DATABASE=/app/.codeflux/pglite-empty \
    NODE_OPTIONS="--require /app/.codeflux/codeflux-db-host.cjs"
WORKDIR /app
COPY --from=build --chown={APP_USER} /home/user/.next/standalone/ /app/
COPY --from=build --chown={APP_USER} /home/user/.next/static/ /app/.next/static/
COPY --from=build --chown={APP_USER} /home/user/public/ /app/public/
COPY --from=build /home/user/node_modules/@electric-sql/pglite/ /app/node_modules/@electric-sql/pglite/
COPY --from=build /home/user/node_modules/drizzle-orm/ /app/node_modules/drizzle-orm/
COPY --from=build /home/user/db/ /app/db/
COPY --from=build /usr/local/lib/codeflux-db-host.cjs /app/.codeflux/
# CodeFlux reads a published app's data through this, as in a sandbox.
COPY --from=build /usr/local/lib/codeflux-db.cjs /usr/local/lib/codeflux-db.cjs
COPY --from=build --chown={APP_USER} /opt/codeflux/pglite-empty/ /app/.codeflux/pglite-empty/
COPY --from=build --chown={APP_USER} /home/user/.data/ {DATA_PATH}/
COPY codeflux-app-start /usr/local/bin/codeflux-app-start
USER {APP_USER}
EXPOSE {APP_PORT}
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || {APP_PORT}) + '/').then((r) => process.exit(r.status < 500 ? 0 : 1), () => process.exit(1))"]
CMD ["/usr/local/bin/codeflux-app-start"]
"#
    )
}

/// Waits for CodeFlux's network rules when published by CodeFlux, brings the database up
/// to the version's migrations (a new one also gets db/data.sql), then serves.
const START_SCRIPT: &str = r#"#!/bin/sh
set -e
# Published by CodeFlux: its network rules come before any of the app's code runs. After a
# reboot CodeFlux sets them again when it starts; until then the app waits.
if [ -n "${CODEFLUX_NETWORK_GATE:-}" ]; then
  while [ ! -e "$CODEFLUX_NETWORK_GATE" ]; do sleep 0.2; done
fi
cd /app
if [ -z "${DATABASE_URL:-}" ] && [ ! -f .data/pglite/PG_VERSION ]; then
  mkdir -p .data && rm -rf .data/pglite && cp -R .codeflux/pglite-empty .data/pglite
fi
if [ -f db/migrations/meta/_journal.json ]; then
  CODEFLUX_DB_BRIDGE= node db/push.mjs --apply-only
fi
exec node server.js
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_stage_runs_no_command_of_the_app() {
        let file = dockerfile("stage:1", "node:20");
        assert!(!file.contains("\nRUN "), "{file}");
        assert!(file.contains("USER 10001:10001"));
        assert!(file.contains("HEALTHCHECK"));
        assert!(file.starts_with("# A CodeFlux"));
        assert_eq!(file.matches("FROM ").count(), 2);
    }

    #[test]
    fn only_changed_packages_are_installed() {
        let with =
            |manifest: &[u8]| BTreeMap::from([("package.json".to_string(), manifest.to_vec())]);
        let template = crate::sandbox::template::file("package.json").unwrap();
        assert!(!needs_install(&BTreeMap::new()));
        assert!(!needs_install(&with(&template)));
        let mut manifest: serde_json::Value = serde_json::from_slice(&template).unwrap();
        manifest["scripts"]["extra"] = "echo".into();
        let reformatted = serde_json::to_vec(&manifest).unwrap();
        assert!(
            !needs_install(&with(&reformatted)),
            "scripts and layout do not count"
        );
        manifest["dependencies"]["left-pad"] = "^1.3.0".into();
        assert!(needs_install(&with(
            &serde_json::to_vec(&manifest).unwrap()
        )));
        let mut locked = with(&template);
        locked.insert("package-lock.json".into(), b"{}".to_vec());
        assert!(needs_install(&locked), "a lockfile of its own installs");
    }
}
