//! Whether a republish would drop published data: the migrations the new version adds
//! (its journal's entries newer than the serving version's), the tables and columns they
//! drop, and which of those hold rows in the published database.
//!
//! In development the app's database checks this itself before it applies a migration
//! (`npm run db:push` is refused without `--accept-data-loss`). A published container
//! applies its migrations as it starts, after the old one stopped, which is too late to
//! refuse; so the check is made here, before anything is built, from the two versions'
//! files and the live table sizes.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::data::{MIGRATIONS_DIR, Table};

/// What a migration would drop, with the rows it holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLoss {
    /// `table todos` or `column todos.done`.
    pub what: String,
    /// Rows of the table it belongs to. For a column this counts every row, empty values
    /// included: the published database is only read through its app, which reports sizes.
    pub rows: u64,
    /// The migration that drops it.
    pub migration: String,
}

/// A publish refused because of what it would drop: the person may publish it anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub version: u32,
    pub losses: Vec<DataLoss>,
}

impl DataLoss {
    pub fn describe(losses: &[DataLoss]) -> String {
        losses
            .iter()
            .map(|loss| format!("{} ({})", loss.what, loss.rows_held()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The rows it holds: "3 rows", or for a column "of a table with 3 rows" (its own
    /// values are not counted, see `rows`).
    pub fn rows_held(&self) -> String {
        let plural = if self.rows == 1 { "" } else { "s" };
        if self.what.starts_with("column") {
            format!("of a table with {} row{plural}", self.rows)
        } else {
            format!("{} row{plural}", self.rows)
        }
    }
}

#[derive(Debug, Deserialize)]
struct Journal {
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    tag: String,
    when: u64,
}

fn journal(files: &BTreeMap<String, String>) -> Vec<Entry> {
    files
        .get(&format!("{MIGRATIONS_DIR}/meta/_journal.json"))
        .and_then(|text| serde_json::from_str::<Journal>(text).ok())
        .map(|journal| journal.entries)
        .unwrap_or_default()
}

/// The migrations `new` has that the database of `old` has not applied, as the app's
/// database decides it: by the journal's timestamps. `old: None` is a new database.
pub fn pending_migrations<'a>(
    old: Option<&BTreeMap<String, String>>,
    new: &'a BTreeMap<String, String>,
) -> Vec<(String, &'a str)> {
    let applied_up_to = old
        .map(|old| {
            journal(old)
                .iter()
                .map(|entry| entry.when)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    journal(new)
        .into_iter()
        .filter(|entry| entry.when > applied_up_to)
        .filter_map(|entry| {
            let sql = new.get(&format!("{MIGRATIONS_DIR}/{}.sql", entry.tag))?;
            Some((entry.tag, sql.as_str()))
        })
        .collect()
}

/// A table, or a column of one, that a migration's SQL drops.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dropped {
    table: String,
    column: Option<String>,
}

// Drizzle quotes every name, and may put the schema in front: `"public"."todos"`.
const NAME: &str = r#"(?:"([^"]+)"\.)?"([^"]+)""#;
static DROP_TABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)DROP TABLE (?:IF EXISTS )?{NAME}")).expect("a valid pattern")
});
static DROP_COLUMN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)ALTER TABLE (?:ONLY )?{NAME} DROP COLUMN (?:IF EXISTS )?"([^"]+)""#
    ))
    .expect("a valid pattern")
});

fn table_name(schema: Option<&str>, table: &str) -> String {
    match schema {
        None | Some("public") => table.to_string(),
        Some(schema) => format!("{schema}.{table}"),
    }
}

fn dropped(sql: &str) -> Vec<Dropped> {
    let tables = DROP_TABLE.captures_iter(sql).map(|found| Dropped {
        table: table_name(found.get(1).map(|m| m.as_str()), &found[2]),
        column: None,
    });
    let columns = DROP_COLUMN.captures_iter(sql).map(|found| Dropped {
        table: table_name(found.get(1).map(|m| m.as_str()), &found[2]),
        column: Some(found[3].to_string()),
    });
    tables.chain(columns).collect()
}

/// Whether the pending migrations drop any table or column at all.
pub fn drops_anything(pending: &[(String, &str)]) -> bool {
    pending.iter().any(|(_, sql)| !dropped(sql).is_empty())
}

/// What the pending migrations would drop that holds rows in `tables` (the published
/// database as it is now).
pub fn losses(pending: &[(String, &str)], tables: &[Table]) -> Vec<DataLoss> {
    let rows_of = |name: &str| {
        tables
            .iter()
            .find(|table| table.name == name)
            .map_or(0, |table| table.rows)
    };
    let mut losses = Vec::new();
    for (migration, sql) in pending {
        for drop in dropped(sql) {
            let rows = rows_of(&drop.table);
            if rows == 0 {
                continue;
            }
            let what = match &drop.column {
                Some(column) => format!("column {}.{column}", drop.table),
                None => format!("table {}", drop.table),
            };
            losses.push(DataLoss {
                what,
                rows,
                migration: migration.clone(),
            });
        }
    }
    losses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(entries: &[(&str, u64, &str)]) -> BTreeMap<String, String> {
        let journal = serde_json::json!({
            "version": "7",
            "dialect": "postgresql",
            "entries": entries.iter().enumerate().map(|(idx, (tag, when, _))| {
                serde_json::json!({ "idx": idx, "version": "7", "when": when, "tag": tag, "breakpoints": true })
            }).collect::<Vec<_>>(),
        });
        let mut files = BTreeMap::from([(
            format!("{MIGRATIONS_DIR}/meta/_journal.json"),
            journal.to_string(),
        )]);
        for (tag, _, sql) in entries {
            files.insert(format!("{MIGRATIONS_DIR}/{tag}.sql"), sql.to_string());
        }
        files
    }

    fn table(name: &str, rows: u64) -> Table {
        Table {
            name: name.into(),
            columns: Vec::new(),
            rows,
            primary_key: Vec::new(),
        }
    }

    const CREATE: &str = r#"CREATE TABLE "todos" ("id" serial PRIMARY KEY NOT NULL, "title" text NOT NULL, "done" boolean DEFAULT false NOT NULL);"#;

    #[test]
    fn only_migrations_newer_than_the_serving_versions_are_pending() {
        let old = version(&[("0000_init", 100, CREATE)]);
        let new = version(&[
            ("0000_init", 100, CREATE),
            (
                "0001_drop_done",
                200,
                "ALTER TABLE \"todos\" DROP COLUMN \"done\";",
            ),
        ]);
        let pending = pending_migrations(Some(&old), &new);
        assert_eq!(
            pending
                .iter()
                .map(|(tag, _)| tag.as_str())
                .collect::<Vec<_>>(),
            ["0001_drop_done"]
        );
        assert_eq!(pending_migrations(None, &new).len(), 2);
        assert!(pending_migrations(Some(&new), &new).is_empty());
        assert!(pending_migrations(Some(&old), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn drops_of_tables_and_columns_holding_rows_are_losses() {
        let sql = r#"DROP TABLE "notes" CASCADE;--> statement-breakpoint
ALTER TABLE "todos" DROP COLUMN "done";--> statement-breakpoint
ALTER TABLE "public"."todos" DROP COLUMN IF EXISTS "due";--> statement-breakpoint
DROP TABLE IF EXISTS "billing"."invoices";--> statement-breakpoint
ALTER TABLE "tags" DROP COLUMN "colour";--> statement-breakpoint
ALTER TABLE "todos" ADD COLUMN "note" text;"#;
        let pending = vec![("0002_tidy".to_string(), sql)];
        let tables = [
            table("notes", 4),
            table("todos", 1),
            table("billing.invoices", 2),
            table("tags", 0),
        ];
        let losses = losses(&pending, &tables);
        let what: Vec<&str> = losses.iter().map(|loss| loss.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "table notes",
                "table billing.invoices",
                "column todos.done",
                "column todos.due"
            ]
        );
        assert!(losses.iter().all(|loss| loss.migration == "0002_tidy"));
        assert_eq!(
            DataLoss::describe(&losses[..3]),
            "table notes (4 rows), table billing.invoices (2 rows), column todos.done (of a table with 1 row)"
        );
    }

    #[test]
    fn adding_columns_and_tables_loses_nothing() {
        let pending = vec![(
            "0003_more".to_string(),
            "CREATE TABLE \"tags\" (\"id\" serial);\nALTER TABLE \"todos\" ADD COLUMN \"note\" text;",
        )];
        assert!(losses(&pending, &[table("todos", 9)]).is_empty());
        assert!(!drops_anything(&pending));
        assert!(drops_anything(&[("x".into(), "DROP TABLE \"todos\";")]));
    }
}
