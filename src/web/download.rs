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
         `npm run db:push`.\n"
    )
}
