//! Reading a stored snapshot without its sandbox: the Data tab of a stopped sandbox shows
//! the data as last saved, and the zip carries it as SQL.

use serde::Deserialize;

use super::{Column, DataError, RowsPage, Table};

/// Row values as Postgres rendered them in JSON, column name → value.
type Row = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Deserialize)]
struct SavedTable {
    name: String,
    schema: String,
    table: String,
    #[serde(default)]
    columns: Vec<Column>,
    rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct SavedSequence {
    schema: String,
    name: String,
    value: Option<String>,
}

/// A snapshot's contents.
#[derive(Debug, Deserialize)]
pub struct SavedData {
    tables: Vec<SavedTable>,
    #[serde(default)]
    sequences: Vec<SavedSequence>,
}

impl SavedData {
    pub fn parse(gzipped: &[u8]) -> Result<Self, DataError> {
        let value = super::read_snapshot(gzipped)
            .ok_or_else(|| DataError::Unreadable("not a gzipped JSON snapshot".into()))?;
        serde_json::from_value(value).map_err(|error| DataError::Unreadable(error.to_string()))
    }

    pub fn tables(&self) -> Vec<Table> {
        self.tables
            .iter()
            .map(|table| Table {
                name: table.name.clone(),
                columns: columns_of(table),
                rows: table.rows.len() as u64,
                // A saved copy is read-only.
                primary_key: Vec::new(),
            })
            .collect()
    }

    pub fn rows(&self, name: &str, page: usize, page_size: usize) -> Result<RowsPage, DataError> {
        let table = self
            .tables
            .iter()
            .find(|table| table.name == name)
            .ok_or_else(|| DataError::NoSuchTable(name.to_string()))?;
        Ok(RowsPage {
            table: table.name.clone(),
            columns: columns_of(table),
            total: table.rows.len() as u64,
            page,
            page_size,
            rows: table
                .rows
                .iter()
                .skip(page.saturating_mul(page_size))
                .take(page_size)
                .cloned()
                .collect(),
        })
    }

    /// SQL that puts these rows into a database built from the app's migrations (the
    /// zip's `db/data.sql`). Values travel as one JSON literal per table, which Postgres
    /// turns back into the column types itself.
    pub fn to_sql(&self) -> String {
        let mut sql = String::from(
            "-- The app's data, loaded by `npm run dev` into a new database (db/push.mjs).\n",
        );
        // Seed migrations have just run; these rows replace theirs.
        let targets: Vec<String> = self
            .tables
            .iter()
            .map(|table| {
                format!(
                    "{}.{}",
                    quote_ident(&table.schema),
                    quote_ident(&table.table)
                )
            })
            .collect();
        if !targets.is_empty() {
            sql.push_str(&format!("TRUNCATE {};\n", targets.join(", ")));
        }
        for table in self.tables.iter().filter(|table| !table.rows.is_empty()) {
            let target = format!(
                "{}.{}",
                quote_ident(&table.schema),
                quote_ident(&table.table)
            );
            let columns: Vec<String> = columns_of(table)
                .iter()
                .map(|column| quote_ident(&column.name))
                .collect();
            let list = columns.join(", ");
            let rows = serde_json::to_string(&table.rows).unwrap_or_else(|_| "[]".into());
            sql.push_str(&format!(
                "INSERT INTO {target} ({list}) OVERRIDING SYSTEM VALUE\n  SELECT {list} FROM json_populate_recordset(NULL::{target}, {});\n",
                quote_literal(&rows)
            ));
        }
        for sequence in &self.sequences {
            if let Some(value) = sequence.value.as_deref().filter(|value| is_integer(value)) {
                let name = format!(
                    "{}.{}",
                    quote_ident(&sequence.schema),
                    quote_ident(&sequence.name)
                );
                sql.push_str(&format!(
                    "SELECT setval({}, {value}, true);\n",
                    quote_literal(&name)
                ));
            }
        }
        sql
    }
}

/// The table's columns as recorded, or (older snapshots) as its first row names them.
fn columns_of(table: &SavedTable) -> Vec<Column> {
    if !table.columns.is_empty() {
        return table.columns.clone();
    }
    table
        .rows
        .first()
        .map(|row| {
            row.keys()
                .map(|name| Column {
                    name: name.clone(),
                    data_type: String::new(),
                    nullable: true,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn is_integer(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(json: &serde_json::Value) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(json.to_string().as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    fn todos() -> Vec<u8> {
        let rows: Vec<serde_json::Value> = (1..=3)
            .map(|id| serde_json::json!({"id": id, "title": format!("it's #{id}")}))
            .collect();
        gzip(&serde_json::json!({
            "format": "codeflux-data/1",
            "tables": [{
                "name": "todos", "schema": "public", "table": "todos",
                "columns": [
                    {"name": "id", "type": "integer", "nullable": false},
                    {"name": "title", "type": "text", "nullable": false}
                ],
                "rows": rows
            }],
            "sequences": [{"schema": "public", "name": "todos_id_seq", "value": "3"},
                          {"schema": "public", "name": "evil", "value": "1); DROP TABLE x; --"}]
        }))
    }

    #[test]
    fn pages_of_a_saved_table() {
        let saved = SavedData::parse(&todos()).unwrap();
        assert_eq!(saved.tables()[0].rows, 3);
        let page = saved.rows("todos", 1, 2).unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(page.rows.len(), 1);
        assert_eq!(page.rows[0]["id"], 3);
        assert!(matches!(
            saved.rows("users", 0, 50),
            Err(DataError::NoSuchTable(name)) if name == "users"
        ));
    }

    #[test]
    fn sql_quotes_every_value_and_skips_odd_sequence_values() {
        let sql = SavedData::parse(&todos()).unwrap().to_sql();
        assert!(
            sql.contains("TRUNCATE \"public\".\"todos\";\nINSERT INTO"),
            "{sql}"
        );
        assert!(sql.contains(r#"INSERT INTO "public"."todos" ("id", "title")"#));
        assert!(sql.contains("it''s #1"), "{sql}");
        assert!(sql.contains(r#"SELECT setval('"public"."todos_id_seq"', 3, true);"#));
        assert!(!sql.contains("DROP TABLE"), "{sql}");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            SavedData::parse(b"not gzip"),
            Err(DataError::Unreadable(_))
        ));
    }
}
