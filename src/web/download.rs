//! A version as a zip: the app's own files over the template's, so `npm install && npm run
//! dev` runs it anywhere; with `?data=1` also the data the version was made with, as SQL
//! that the first `npm run dev` loads into the new database.

use std::collections::BTreeMap;
use std::io::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::extract::{PathOf, QueryOf};
use super::{AppError, AppState};
use crate::data::saved::SavedData;

/// Where the data goes in the zip; `db/push.mjs --apply-only` (the `predev` script) loads it.
const DATA_FILE: &str = "db/data.sql";

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    /// `1`: include the version's data.
    data: Option<String>,
}

pub async fn download(
    State(state): State<AppState>,
    PathOf((project_id, message_id)): PathOf<(Uuid, Uuid)>,
    QueryOf(query): QueryOf<DownloadQuery>,
) -> Result<Response, AppError> {
    let project = state.store.project(project_id)?;
    state.store.message(project_id, message_id)?;
    let fragment = state
        .store
        .fragment(message_id)?
        .ok_or(AppError::NotFound("version"))?;
    let mut files: BTreeMap<String, Vec<u8>> = crate::sandbox::template::app_files()
        .into_iter()
        .filter_map(|name| crate::sandbox::template::file(&name).map(|bytes| (name, bytes)))
        .collect();
    files.insert("README.md".into(), readme(&project.name).into_bytes());
    files.insert("Dockerfile".into(), DOCKERFILE.as_bytes().to_vec());
    files.insert(".dockerignore".into(), DOCKERIGNORE.as_bytes().to_vec());
    files.extend(
        fragment
            .files
            .iter()
            .map(|(path, content)| (path.clone(), content.clone().into_bytes())),
    );
    if matches!(query.data.as_deref(), Some("1" | "true")) {
        let snapshot = state
            .store
            .version_snapshot(project_id, fragment.id)?
            .ok_or(AppError::NotFound("data of this version"))?;
        let (_, gzipped) = state
            .store
            .snapshot(project_id, snapshot.id)?
            .ok_or(AppError::NotFound("data of this version"))?;
        let saved =
            SavedData::parse(&gzipped).map_err(|error| AppError::Invalid(error.to_string()))?;
        files.insert(DATA_FILE.into(), saved.to_sql().into_bytes());
    }
    let bytes = zip(&project.name, &files)
        .map_err(|error| AppError::Invalid(format!("cannot build the zip: {error}")))?;
    let disposition = format!("attachment; filename=\"{}.zip\"", project.name);
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

fn zip(folder: &str, files: &BTreeMap<String, Vec<u8>>) -> zip::result::ZipResult<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, content) in files {
        writer.start_file(format!("{folder}/{path}"), options)?;
        writer.write_all(content)?;
    }
    Ok(writer.finish()?.into_inner())
}

fn readme(name: &str) -> String {
    format!(
        "# {name}\n\n\
         Made with CodeFlux: a Next.js app (App Router, TypeScript, Tailwind CSS) with its own\n\
         embedded Postgres database (PGlite and Drizzle ORM).\n\n\
         ```sh\nnpm install\nnpm run dev    # http://localhost:3000\n```\n\n\
         `npm run dev` first applies the migrations in `db/migrations` to the database in\n\
         `.data/pglite` (created on first run; when the download included the data,\n\
         `db/data.sql` fills it). After changing `db/schema.ts`, stop the dev server and run\n\
         `npm run db:push`.\n\n\
         ## With Docker\n\n\
         The `Dockerfile` builds the production server (`next build`, standalone output) and\n\
         runs it as an unprivileged user; the database lives in a volume:\n\n\
         ```sh\ndocker build -t {name} .\n\
         docker run -d -p 3000:3000 -v {name}-data:/app/.data --restart unless-stopped {name}\n```\n\n\
         Each start applies new migrations; a new volume also gets `db/data.sql`, if present.\n\
         Set `DATABASE_URL=postgres://…` to use a Postgres server instead of the volume. On a\n\
         machine without a registry, pass `--build-arg NODE_IMAGE=<a local Node 20 image>`.\n"
    )
}

/// The production image of a downloaded app, for any Docker host.
const DOCKERFILE: &str = r#"# The production image: `docker build -t app .`, then
# `docker run -p 3000:3000 -v app-data:/app/.data app` (see README.md).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund || npm install --no-audit --no-fund
COPY . .
RUN rm -rf .data && NEXT_PRIVATE_STANDALONE=true npx --no-install next build --turbopack  && find .next/static -name '*.map' -delete && mkdir -p public

FROM ${NODE_IMAGE}
ENV NODE_ENV=production NEXT_TELEMETRY_DISABLED=1 HOSTNAME=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=build --chown=10001:10001 /app/.next/standalone/ ./
COPY --from=build --chown=10001:10001 /app/.next/static/ ./.next/static/
COPY --from=build --chown=10001:10001 /app/public/ ./public/
COPY --from=build /app/node_modules/@electric-sql/pglite/ ./node_modules/@electric-sql/pglite/
COPY --from=build /app/node_modules/drizzle-orm/ ./node_modules/drizzle-orm/
COPY --from=build --chown=10001:10001 /app/db/ ./db/
RUN mkdir -p .data && chown 10001:10001 .data
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s   CMD ["node", "-e", "fetch('http://127.0.0.1:3000/').then((r) => process.exit(r.status < 500 ? 0 : 1), () => process.exit(1))"]
CMD ["sh", "-c", "node db/push.mjs --apply-only && exec node server.js"]
"#;

const DOCKERIGNORE: &str = "node_modules\n.next\n.data\n";
