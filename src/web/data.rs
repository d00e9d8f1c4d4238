//! The app's data over HTTP: its tables and rows (JSON API and the Data tab), and a table
//! as CSV. Reads never change the data and never start a sandbox: a stopped one's data is
//! shown as last saved.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{PathOf, QueryOf};
use super::pages::html_response;
use super::{AppError, AppState};
use crate::data::{DataError, PAGE_SIZE, RowsPage, Table};
use crate::jobs::DataSource;
use crate::store::snapshots::SnapshotKind;
use crate::ui::data::{self as view, DataView};

/// Most rows a CSV download carries.
const MAX_CSV_ROWS: usize = 100_000;
/// Rows fetched from the sandbox per call while building a CSV.
const CSV_BATCH: usize = 500;

impl From<DataError> for AppError {
    fn from(error: DataError) -> Self {
        match error {
            DataError::NoSuchTable(_) => AppError::NotFound("table"),
            other => AppError::Rejected {
                status: StatusCode::BAD_GATEWAY,
                message: other.to_string(),
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TablesAnswer {
    /// `live`, `saved` (with `saved_at`), or `none` when the app has no data.
    #[serde(flatten)]
    pub source: Source,
    pub tables: Vec<Table>,
    /// The copy CodeFlux keeps outside the sandbox (what a new sandbox gets back).
    pub saved: Option<SavedCopy>,
    /// Earlier data, oldest first: one per version, and one before each change or restore
    /// that replaced data. Any of them can be brought back.
    pub snapshots: Vec<crate::store::snapshots::DataSnapshot>,
}

#[derive(Debug, Serialize)]
pub struct SavedCopy {
    pub saved_at: chrono::DateTime<chrono::Utc>,
    pub tables: u64,
    pub rows: u64,
    /// Its size, gzipped.
    pub bytes: usize,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Source {
    Known(DataSource),
    None { source: &'static str },
}

#[derive(Debug, Serialize)]
pub struct RowsAnswer {
    #[serde(flatten)]
    pub source: DataSource,
    #[serde(flatten)]
    pub rows: RowsPage,
}

#[derive(Debug, Deserialize)]
pub struct RowsQuery {
    /// 1 for the first page.
    page: Option<usize>,
    format: Option<String>,
    #[serde(default)]
    of: Of,
}

/// Whose data a request is about (`?of=published`): the project's own (development) data,
/// or its published app's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Of {
    #[default]
    Development,
    Published,
}

#[derive(Debug, Deserialize)]
pub struct TablesQuery {
    #[serde(default)]
    of: Of,
}

async fn tables(
    state: &AppState,
    project_id: Uuid,
    of: Of,
) -> Result<Option<(Vec<Table>, DataSource)>, AppError> {
    state.store.project(project_id)?;
    match of {
        Of::Development => Ok(state.jobs.generation().data_tables(project_id).await?),
        Of::Published => {
            let (tables, version) = state.publisher.data_tables(project_id).await?;
            Ok(Some((tables, DataSource::Published { version })))
        }
    }
}

async fn rows_of(
    state: &AppState,
    project_id: Uuid,
    of: Of,
    table: &str,
    page: usize,
    page_size: usize,
) -> Result<(RowsPage, DataSource), AppError> {
    match of {
        Of::Development => Ok(state
            .jobs
            .generation()
            .data_rows(project_id, table, page, page_size)
            .await?),
        Of::Published => {
            let (rows, version) = state
                .publisher
                .data_rows(project_id, table, page, page_size)
                .await?;
            Ok((rows, DataSource::Published { version }))
        }
    }
}

fn page_index(page: Option<usize>) -> Result<usize, AppError> {
    match page.unwrap_or(1) {
        0 => Err(AppError::Invalid("page starts at 1".into())),
        page => Ok(page - 1),
    }
}

/// `GET /api/projects/{id}/data`: the tables, their columns and row counts.
pub async fn api_tables(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    QueryOf(query): QueryOf<TablesQuery>,
) -> Result<Json<TablesAnswer>, AppError> {
    let found = tables(&state, project_id, query.of).await?;
    if query.of == Of::Published {
        let (tables, source) = found.ok_or(AppError::NotFound("published app"))?;
        let mut backups = state.store.snapshots(project_id)?;
        backups.retain(|snapshot| matches!(snapshot.kind, SnapshotKind::Published { .. }));
        return Ok(Json(TablesAnswer {
            source: Source::Known(source),
            tables,
            saved: None,
            snapshots: backups,
        }));
    }
    let saved = state
        .store
        .latest_data(project_id)?
        .map(|(snapshot, _)| SavedCopy {
            saved_at: snapshot.taken_at,
            tables: snapshot.tables,
            rows: snapshot.rows,
            bytes: snapshot.bytes,
        });
    let snapshots = state.store.snapshots(project_id)?;
    let (source, tables) = match found {
        Some((tables, source)) => (Source::Known(source), tables),
        None => (Source::None { source: "none" }, Vec::new()),
    };
    Ok(Json(TablesAnswer {
        source,
        tables,
        saved,
        snapshots,
    }))
}

/// `POST /api/projects/{id}/snapshots/{snapshot_id}/restore`: that snapshot's data replaces
/// the current data (which is kept as a snapshot first); the code stays as it is.
pub async fn api_restore(
    State(state): State<AppState>,
    PathOf((project_id, snapshot_id)): PathOf<(Uuid, Uuid)>,
) -> Result<Json<serde_json::Value>, AppError> {
    state.store.project(project_id)?;
    let outcome = state
        .jobs
        .restore_data(project_id, snapshot_id)
        .await?
        .ok_or(AppError::Conflict(
            "a job is working on this project; stop it or wait before restoring data",
        ))?;
    match outcome {
        Ok(counts) => Ok(Json(serde_json::json!({
            "restored": true, "tables": counts.tables, "rows": counts.rows
        }))),
        Err(reason) => Err(AppError::Rejected {
            status: StatusCode::BAD_GATEWAY,
            message: format!("the data could not be restored: {reason}"),
        }),
    }
}

/// `GET /api/projects/{id}/data/{table}?page=N`: 50 rows; `&format=csv` the whole table.
pub async fn api_rows(
    State(state): State<AppState>,
    PathOf((project_id, table)): PathOf<(Uuid, String)>,
    QueryOf(query): QueryOf<RowsQuery>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    if query.format.as_deref() == Some("csv") {
        return csv(&state, project_id, query.of, &table).await;
    }
    let page = page_index(query.page)?;
    let (rows, source) = rows_of(&state, project_id, query.of, &table, page, PAGE_SIZE).await?;
    Ok(Json(RowsAnswer { source, rows }).into_response())
}

/// The Download CSV link.
pub async fn csv_download(
    State(state): State<AppState>,
    PathOf((project_id, table)): PathOf<(Uuid, String)>,
    QueryOf(query): QueryOf<TablesQuery>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    csv(&state, project_id, query.of, &table).await
}

async fn csv(
    state: &AppState,
    project_id: Uuid,
    of: Of,
    table: &str,
) -> Result<Response, AppError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut page = 0;
    let mut written = 0;
    loop {
        let (rows, _) = rows_of(state, project_id, of, table, page, CSV_BATCH).await?;
        if page == 0 {
            writer
                .write_record(rows.columns.iter().map(|column| column.name.as_str()))
                .map_err(csv_failed)?;
        }
        for row in &rows.rows {
            let record = rows.columns.iter().map(|column| {
                row.get(&column.name)
                    .map(view::display_value)
                    .unwrap_or_default()
            });
            writer.write_record(record).map_err(csv_failed)?;
        }
        written += rows.rows.len();
        page += 1;
        if rows.rows.len() < CSV_BATCH || written >= rows.total as usize || written >= MAX_CSV_ROWS
        {
            break;
        }
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| AppError::Invalid(format!("cannot write the CSV: {error}")))?;
    let name: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

fn csv_failed(error: csv::Error) -> AppError {
    AppError::Invalid(format!("cannot write the CSV: {error}"))
}

#[derive(Debug, Deserialize)]
pub struct PanelQuery {
    pub table: Option<String>,
    pub page: Option<usize>,
    /// Shows the rows with their edit and delete forms (the tab is read-only otherwise).
    pub edit: Option<bool>,
    #[serde(default)]
    pub of: Of,
}

/// The Data tab's panel (HTML): the tables, and the chosen table's rows (the first table
/// when none is chosen).
pub async fn panel(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    QueryOf(query): QueryOf<PanelQuery>,
) -> Result<Response, AppError> {
    render_panel(&state, project_id, query, None).await
}

/// "Bring back" in the Data tab: the snapshot's data replaces the current data, and the
/// panel shows the result.
pub async fn restore_snapshot(
    State(state): State<AppState>,
    PathOf((project_id, snapshot_id)): PathOf<(Uuid, Uuid)>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    let outcome = state
        .jobs
        .restore_data(project_id, snapshot_id)
        .await?
        .ok_or(AppError::Conflict(
            "a job is working on this project; stop it or wait before restoring data",
        ))?;
    let notice = match outcome {
        Ok(counts) => format!(
            "Brought back {} row{}; the data from before is kept below.",
            counts.rows,
            if counts.rows == 1 { "" } else { "s" }
        ),
        Err(reason) => format!("The data could not be brought back: {reason}"),
    };
    let query = PanelQuery {
        table: None,
        page: None,
        edit: None,
        of: Of::Development,
    };
    render_panel(&state, project_id, query, Some(&notice)).await
}

pub(super) async fn render_panel(
    state: &AppState,
    project_id: Uuid,
    query: PanelQuery,
    notice: Option<&str>,
) -> Result<Response, AppError> {
    let found = tables(state, project_id, query.of).await?;
    let (tables, source) = match &found {
        Some((tables, source)) => (tables.as_slice(), Some(source)),
        None => (&[][..], None),
    };
    let chosen = query
        .table
        .or_else(|| tables.first().map(|table| table.name.clone()));
    let rows = match chosen {
        Some(table) => Some(
            rows_of(
                state,
                project_id,
                query.of,
                &table,
                page_index(query.page)?,
                PAGE_SIZE,
            )
            .await?
            .0,
        ),
        None => None,
    };
    let mut snapshots = state.store.snapshots(project_id)?;
    if query.of == Of::Published {
        snapshots.retain(|snapshot| matches!(snapshot.kind, SnapshotKind::Published { .. }));
    }
    let published = state
        .publisher
        .get(project_id)?
        .is_some_and(|record| record.container.is_some());
    Ok(html_response(
        StatusCode::OK,
        view::panel(&DataView {
            switch: published.then_some(query.of == Of::Published),
            project_id,
            tables,
            source,
            rows: rows.as_ref(),
            snapshots: &snapshots,
            notice,
            editing: query.edit == Some(true) && source == Some(&DataSource::Live),
        }),
    ))
}
