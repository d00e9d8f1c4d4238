//! The Data tab: the app's tables, their columns and row counts, and one table's rows, 50
//! to a page. Read-only; values are shown as Postgres rendered them.

use maud::{Markup, html};
use uuid::Uuid;

use crate::data::{RowsPage, Table};
use crate::jobs::DataSource;
use crate::store::snapshots::{DataSnapshot, SnapshotKind};

/// What the panel shows: the tables, and the rows of the chosen one.
pub struct DataView<'a> {
    pub project_id: Uuid,
    pub tables: &'a [Table],
    pub source: Option<&'a DataSource>,
    pub rows: Option<&'a RowsPage>,
    /// Earlier data that can be brought back, oldest first.
    pub snapshots: &'a [DataSnapshot],
    /// What the last "Bring back" or edit did.
    pub notice: Option<&'a str>,
    /// The rows show their edit and delete forms (live data only).
    pub editing: bool,
    /// With a published app: whether its data is shown (`Some(true)`) or the project's own.
    pub switch: Option<bool>,
}

/// The tab's placeholder: the panel loads once the tab is shown (it asks the sandbox).
pub fn loading(project_id: Uuid) -> Markup {
    html! {
        div.data-view hx-get={ "/projects/" (project_id) "/data-panel" } hx-trigger="load" hx-swap="outerHTML" {
            p.placeholder { "Loading the app's data…" }
        }
    }
}

pub fn panel(view: &DataView) -> Markup {
    let of = if view.switch == Some(true) {
        "published"
    } else {
        "development"
    };
    let base = format!("/projects/{}/data-panel?of={of}", view.project_id);
    html! {
        div.data-view {
            @if let Some(published) = view.switch {
                div.data-switch role="group" aria-label="Whose data" {
                    @for (value, label, pressed) in [("development", "Development", !published), ("published", "Published", published)] {
                        button type="button" hx-get={ "/projects/" (view.project_id) "/data-panel?of=" (value) }
                            hx-target="closest .data-view" hx-swap="outerHTML"
                            aria-pressed=(if pressed { "true" } else { "false" }) { (label) }
                    }
                }
            }
            @if let Some(notice) = view.notice { p.data-notice role="status" { (notice) } }
            @match view.source {
                Some(DataSource::Live) => p.data-source {
                    "Live from the running app."
                    @if !view.editing { " Read-only until you choose Edit rows." }
                },
                Some(DataSource::Saved { saved_at }) => p.data-source {
                    "As saved at " time datetime=(saved_at.to_rfc3339()) { (saved_at.format("%Y-%m-%d %H:%M UTC")) }
                    " (the sandbox is not running). Read-only."
                },
                Some(DataSource::Published { version }) => div.data-source {
                    p { "Live from the published app (v" (version) "), apart from the project's own data. Read-only: the app changes it. "
                        "It is backed up before each republish and at unpublish." }
                    button type="button" hx-post={ "/projects/" (view.project_id) "/publish/backup" }
                        hx-target="closest .data-view" hx-swap="outerHTML" { "Back up now" }
                },
                None => {},
            }
            @if view.tables.is_empty() {
                p.placeholder {
                    "This app keeps no data yet. When it has something to remember, the agent gives it tables in "
                    code { "db/schema.ts" } ", and they appear here."
                }
            } @else {
                nav.data-tables aria-label="Tables" {
                    @for table in view.tables {
                        @let chosen = view.rows.is_some_and(|rows| rows.table == table.name);
                        button type="button" hx-get={ (base) "&table=" (table.name) } hx-target="closest .data-view" hx-swap="outerHTML"
                            aria-pressed=(if chosen { "true" } else { "false" }) {
                            code { (table.name) } " " small { (table.rows) @if table.rows == 1 { " row" } @else { " rows" } }
                        }
                    }
                }
                @if let Some(rows) = view.rows {
                    @let key = view.tables.iter().find(|table| table.name == rows.table)
                        .map(|table| table.primary_key.as_slice())
                        .filter(|key| !key.is_empty() && matches!(view.source, Some(DataSource::Live)));
                    (rows_table(view.project_id, &base, of, rows, key, view.editing))
                }
            }
            @if !view.snapshots.is_empty() { (snapshots(view.project_id, view.snapshots)) }
        }
    }
}

fn snapshots(project_id: Uuid, snapshots: &[DataSnapshot]) -> Markup {
    html! {
        details.data-snapshots {
            summary { "Earlier data (" (snapshots.len()) ")" }
            ul {
                @for snapshot in snapshots.iter().rev() {
                    li {
                        span {
                            (match &snapshot.kind {
                                SnapshotKind::Version { .. } => "When a version was made".to_string(),
                                SnapshotKind::BeforeChange { migration } => format!("Before the schema change {migration}"),
                                SnapshotKind::BeforeRestore => "Before a restore".to_string(),
                                SnapshotKind::Latest => "Latest copy".to_string(),
                                SnapshotKind::Published { version } => format!("Published data, while v{version} served it"),
                            })
                            " · " time datetime=(snapshot.taken_at.to_rfc3339()) { (snapshot.taken_at.format("%Y-%m-%d %H:%M UTC")) }
                            " · " (snapshot.rows) @if snapshot.rows == 1 { " row" } @else { " rows" }
                        }
                        @if matches!(snapshot.kind, SnapshotKind::Published { .. }) {
                            button type="button"
                                hx-post={ "/projects/" (project_id) "/snapshots/" (snapshot.id) "/restore" }
                                hx-target="closest .data-view" hx-swap="outerHTML"
                                hx-confirm={ "Replace the development data with these " (snapshot.rows) " rows of published data? The development data is kept as a snapshot first; the published app is not changed." } {
                                "Copy into development"
                            }
                        } @else {
                            button type="button"
                                hx-post={ "/projects/" (project_id) "/snapshots/" (snapshot.id) "/restore" }
                                hx-target="closest .data-view" hx-swap="outerHTML"
                                hx-confirm={ "Replace the app's current data with these " (snapshot.rows) " rows? The current data is kept as a snapshot first; the code stays as it is." } {
                                "Bring back"
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One page of a table's rows. `key`: the table's primary key when its rows can be edited
/// (live data); `editing`: show the forms.
fn rows_table(
    project_id: Uuid,
    base: &str,
    of: &str,
    rows: &RowsPage,
    key: Option<&[String]>,
    editing: bool,
) -> Markup {
    let first = rows.page * rows.page_size;
    let last = (first + rows.rows.len()).min(rows.total as usize);
    let pages = (rows.total as usize).div_ceil(rows.page_size.max(1)).max(1);
    let here = format!("{base}&table={}&page={}", rows.table, rows.page + 1);
    let action = format!("/projects/{project_id}/data/{}/rows", rows.table);
    let editing = editing && key.is_some();
    html! {
        section.data-rows aria-label={ "Rows of " (rows.table) } {
            div.data-bar {
                strong { code { (rows.table) } }
                span { @if rows.total == 0 { "no rows" } @else { "rows " (first + 1) "–" (last) " of " (rows.total) } }
                span.spacer {}
                @if rows.page > 0 {
                    button type="button" hx-get={ (base) "&table=" (rows.table) "&page=" (rows.page) @if editing { "&edit=true" } } hx-target="closest .data-view" hx-swap="outerHTML" { "← Previous" }
                }
                @if rows.page + 1 < pages {
                    button type="button" hx-get={ (base) "&table=" (rows.table) "&page=" (rows.page + 2) @if editing { "&edit=true" } } hx-target="closest .data-view" hx-swap="outerHTML" { "Next →" }
                }
                @if key.is_some() {
                    @if editing {
                        button type="button" hx-get=(here) hx-target="closest .data-view" hx-swap="outerHTML" { "Done editing" }
                    } @else {
                        button type="button" hx-get={ (here) "&edit=true" } hx-target="closest .data-view" hx-swap="outerHTML" { "Edit rows" }
                    }
                }
                a.button href={ "/projects/" (project_id) "/data/" (rows.table) "/csv?of=" (of) } download { "Download CSV" }
            }
            div.data-scroll {
                table.data-table {
                    thead { tr {
                        @for column in &rows.columns {
                            th scope="col" { (column.name) @if !column.data_type.is_empty() { br; small { (column.data_type) } } }
                        }
                        @if editing { th scope="col" { span.visually-hidden { "Delete" } } }
                    } }
                    tbody {
                        @for row in &rows.rows {
                            @let row_key = key.map(|key| row_key(key, row)).unwrap_or_default();
                            tr {
                                @for column in &rows.columns {
                                    @let value = row.get(&column.name).filter(|value| !value.is_null());
                                    @let is_key = key.is_some_and(|key| key.contains(&column.name));
                                    @if editing && !is_key {
                                        td { details.cell-edit {
                                            summary { @match value { None => span.null { "NULL" }, Some(value) => (shown(&display_value(value))) } }
                                            form hx-post=(action) hx-target="closest .data-view" hx-swap="outerHTML" {
                                                input type="hidden" name="key" value=(row_key);
                                                input type="hidden" name="column" value=(column.name);
                                                input type="hidden" name="page" value=(rows.page + 1);
                                                input name="value" aria-label={ "New " (column.name) } value=(value.map(display_value).unwrap_or_default());
                                                @if column.nullable { label { input type="checkbox" name="null"; " NULL" } }
                                                button type="submit" { "Save" }
                                            }
                                        } }
                                    } @else {
                                        @match value {
                                            None => td.null { "NULL" },
                                            Some(value) => td { (shown(&display_value(value))) },
                                        }
                                    }
                                }
                                @if editing {
                                    td { form hx-post=(action) hx-target="closest .data-view" hx-swap="outerHTML"
                                        hx-confirm="Delete this row from the app's data? Snapshots taken earlier keep it." {
                                        input type="hidden" name="key" value=(row_key);
                                        input type="hidden" name="page" value=(rows.page + 1);
                                        button.danger type="submit" { "Delete" }
                                    } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The row's primary key as the JSON object the edit forms send back.
fn row_key(key: &[String], row: &serde_json::Map<String, serde_json::Value>) -> String {
    let found: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .map(|name| (name.clone(), row.get(name).cloned().unwrap_or_default()))
        .collect();
    serde_json::Value::Object(found).to_string()
}

/// Text as itself, everything else (numbers, booleans, JSON) as JSON.
/// Most characters a cell shows; the CSV has the whole value.
const CELL_CHARS: usize = 300;

/// A cell's text cut to [`CELL_CHARS`], saying how much was left out.
fn shown(text: &str) -> String {
    match text.char_indices().nth(CELL_CHARS) {
        Some((end, _)) => format!(
            "{}… ({} more characters)",
            &text[..end],
            text[end..].chars().count()
        ),
        None => text.to_string(),
    }
}

pub fn display_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn long_cells_are_cut_with_what_is_left_out() {
        assert_eq!(shown("short"), "short");
        let long = "é".repeat(305);
        assert_eq!(
            shown(&long),
            format!("{}… (5 more characters)", "é".repeat(300))
        );
    }
}
