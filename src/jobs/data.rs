//! Keeping the app's data outside its sandbox. The store holds the data as last seen and
//! snapshots of earlier moments; a fresh sandbox (revived, replaced, claimed from the warm
//! pool) gets the latest data back before it is used, exactly like its files.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{Generation, JobError};
use crate::data::{Counts, DataError, Database};
use crate::sandbox::Sandbox;
use crate::store::snapshots::{DataSnapshot, NewSnapshot, SnapshotKind};

/// Marks a workspace whose data is the project's (restored, or started with none to
/// restore). A fresh sandbox without it holds an empty database that must never be saved
/// over the project's data.
const IN_PLACE: &str = ".data/codeflux-in-place";
/// How long a fresh sandbox's dev server may take to open the database for the restore.
const OPEN_WAIT: Duration = Duration::from_secs(240);

/// Where the Data tab's figures come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum DataSource {
    /// The running app's database.
    Live,
    /// The copy saved at that moment (the sandbox is not running).
    Saved {
        saved_at: chrono::DateTime<chrono::Utc>,
    },
    /// The published app's own database, serving that version (read-only here).
    Published { version: u32 },
}

/// One save of a project's data at a time. A save collects the snapshots the app kept
/// and then writes the latest copy; two interleaved would store a kept snapshot twice or
/// let an older copy land after a newer one.
#[derive(Default)]
pub struct SaveTurns(std::sync::Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>);

impl SaveTurns {
    async fn take(&self, project_id: Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(project_id)
            .or_default()
            .clone();
        turn.lock_owned().await
    }
}

impl Generation {
    /// The running sandbox, if there is one; reading data never starts a sandbox.
    async fn running_sandbox(&self, project_id: Uuid) -> Option<Arc<dyn Sandbox>> {
        let provider = self.sandboxes.as_ref()?;
        if !matches!(provider.preview_upstream(project_id).await, Ok(Some(_))) {
            return None;
        }
        self.prepare_sandbox(project_id)
            .await
            .ok()
            .map(|prepared| prepared.sandbox)
    }

    /// The app's tables with their row counts: live when its sandbox runs, else as last
    /// saved. `None`: the app has no data (yet).
    pub async fn data_tables(
        &self,
        project_id: Uuid,
    ) -> Result<Option<(Vec<crate::data::Table>, DataSource)>, DataError> {
        if let Some(sandbox) = self.running_sandbox(project_id).await {
            match Database::new(sandbox.as_ref()).tables().await {
                Ok(tables) => return Ok(Some((tables, DataSource::Live))),
                Err(DataError::NotOpen(reason)) => {
                    tracing::debug!(%project_id, %reason, "showing the saved data")
                }
                Err(error) => return Err(error),
            }
        }
        self.saved_data(project_id)
            .map(|saved| saved.map(|(data, source)| (data.tables(), source)))
    }

    /// One page of a table's rows, from the same place as [`Self::data_tables`].
    pub async fn data_rows(
        &self,
        project_id: Uuid,
        table: &str,
        page: usize,
        page_size: usize,
    ) -> Result<(crate::data::RowsPage, DataSource), DataError> {
        if let Some(sandbox) = self.running_sandbox(project_id).await {
            match Database::new(sandbox.as_ref())
                .rows(table, page, page_size)
                .await
            {
                Ok(rows) => return Ok((rows, DataSource::Live)),
                Err(DataError::NotOpen(_)) => {}
                Err(error) => return Err(error),
            }
        }
        let (saved, source) = self
            .saved_data(project_id)?
            .ok_or_else(|| DataError::NoSuchTable(table.to_string()))?;
        Ok((saved.rows(table, page, page_size)?, source))
    }

    /// Changes one row of the running app's data, then saves the data as the latest copy.
    /// Saved copies are never edited: the app must be running.
    pub(super) async fn edit_row(
        &self,
        project_id: Uuid,
        edit: &crate::data::RowEdit,
    ) -> Result<(), DataError> {
        let Some(sandbox) = self.running_sandbox(project_id).await else {
            return Err(DataError::NotOpen(
                "the app is not running; open its preview, then edit its data".into(),
            ));
        };
        Database::new(sandbox.as_ref()).edit(edit).await?;
        if let Err(error) = self
            .save_data(project_id, sandbox.as_ref(), SnapshotKind::Latest)
            .await
        {
            tracing::warn!(%project_id, %error, "could not save the data after an edit");
        }
        Ok(())
    }

    fn saved_data(
        &self,
        project_id: Uuid,
    ) -> Result<Option<(crate::data::saved::SavedData, DataSource)>, DataError> {
        let Some((snapshot, gzipped)) = self
            .store
            .latest_data(project_id)
            .map_err(|error| DataError::Refused(error.to_string()))?
        else {
            return Ok(None);
        };
        let saved = crate::data::saved::SavedData::parse(&gzipped)?;
        Ok(Some((
            saved,
            DataSource::Saved {
                saved_at: snapshot.taken_at,
            },
        )))
    }

    /// Brings the project's latest data into a fresh sandbox. Waits for the app to open its
    /// database; a restore that cannot happen is an error, so the sandbox is not used.
    pub(super) async fn put_data_back(
        &self,
        project_id: Uuid,
        sandbox: &dyn Sandbox,
    ) -> Result<Option<Counts>, JobError> {
        let Some((_, gzipped)) = self.store.latest_data(project_id)? else {
            mark_in_place(sandbox).await?;
            return Ok(None);
        };
        let database = Database::new(sandbox);
        let deadline = tokio::time::Instant::now() + OPEN_WAIT;
        loop {
            match database.restore(&gzipped).await {
                Ok(counts) => {
                    mark_in_place(sandbox).await?;
                    return Ok(Some(counts));
                }
                Err(DataError::NotOpen(reason)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%project_id, %reason, "waiting for the app's database");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => return Err(JobError::Data(error)),
            }
        }
    }

    /// Saves the app's data now: always as the latest copy, and as a kept snapshot of
    /// `kind` unless that is `Latest`. Snapshots the app kept before a schema change
    /// dropped data are collected first. `None`: the app has no tables, or this sandbox's
    /// data is not the project's (yet).
    pub async fn save_data(
        &self,
        project_id: Uuid,
        sandbox: &dyn Sandbox,
        kind: SnapshotKind,
    ) -> Result<Option<DataSnapshot>, DataError> {
        let _turn = self.data_saves.take(project_id).await;
        if !self.data_in_place(project_id, sandbox).await? {
            tracing::warn!(%project_id, "not saving data from a sandbox whose data was not restored");
            return Ok(None);
        }
        let database = Database::new(sandbox);
        for kept in database.take_kept().await? {
            let counts = crate::data::count_snapshot(&kept.gzipped);
            self.store
                .add_snapshot(
                    project_id,
                    NewSnapshot {
                        kind: SnapshotKind::BeforeChange {
                            migration: kept.label.clone(),
                        },
                        gzipped: &kept.gzipped,
                        tables: counts.tables,
                        rows: counts.rows,
                    },
                    self.data_limits,
                )
                .map_err(|error| DataError::Refused(error.to_string()))?;
            database.forget_kept(&kept).await?;
        }
        let Some((gzipped, counts)) = database.snapshot().await? else {
            return Ok(None);
        };
        let snapshot = self
            .store
            .add_snapshot(
                project_id,
                NewSnapshot {
                    kind,
                    gzipped: &gzipped,
                    tables: counts.tables,
                    rows: counts.rows,
                },
                self.data_limits,
            )
            .map_err(|error| DataError::Refused(error.to_string()))?;
        self.store
            .flush()
            .await
            .map_err(|error| DataError::Refused(error.to_string()))?;
        Ok(Some(snapshot))
    }

    async fn data_in_place(
        &self,
        project_id: Uuid,
        sandbox: &dyn Sandbox,
    ) -> Result<bool, DataError> {
        if self
            .store
            .latest_data(project_id)
            .map_err(|error| DataError::Refused(error.to_string()))?
            .is_none()
        {
            return Ok(true);
        }
        let probe = sandbox
            .run(&format!("test -e {IN_PLACE}"), Duration::from_secs(30))
            .await?;
        Ok(probe.success())
    }

    /// Puts a snapshot's data in place of the app's current data (a restore that brings
    /// the data back); the data from just before is kept as a snapshot first.
    pub async fn replace_data(
        &self,
        project_id: Uuid,
        sandbox: &dyn Sandbox,
        gzipped: &[u8],
    ) -> Result<Counts, DataError> {
        self.save_data(project_id, sandbox, SnapshotKind::BeforeRestore)
            .await?;
        let counts = Database::new(sandbox).restore(gzipped).await?;
        mark_in_place(sandbox).await?;
        self.save_data(project_id, sandbox, SnapshotKind::Latest)
            .await?;
        Ok(counts)
    }
}

impl Generation {
    /// After a restore's files are in place: brings back the chosen snapshot's data, if
    /// one was chosen, and records the data the new version starts with.
    pub(super) async fn data_after_restore(
        &self,
        project_id: Uuid,
        version: &crate::store::Version,
        chosen: Option<DataSnapshot>,
    ) -> Option<Result<Counts, String>> {
        let sandbox = match self.prepare_sandbox(project_id).await {
            Ok(prepared) => prepared.sandbox,
            Err(error) => return chosen.map(|_| Err(error.to_string())),
        };
        let outcome = match chosen {
            Some(snapshot) => Some(
                self.bring_back(project_id, sandbox.as_ref(), &snapshot)
                    .await,
            ),
            None => None,
        };
        let kind = SnapshotKind::Version {
            version_id: version.id,
        };
        if let Err(error) = self.save_data(project_id, sandbox.as_ref(), kind).await {
            tracing::warn!(%project_id, %error, "could not save the data of the restored version");
        }
        outcome
    }

    /// Brings back a kept snapshot's data (see [`JobQueue::restore_data`](super::JobQueue::restore_data)).
    pub(super) async fn restore_snapshot(
        &self,
        project_id: Uuid,
        snapshot_id: Uuid,
    ) -> Result<Result<Counts, String>, crate::store::StoreError> {
        let Some((snapshot, _)) = self.store.snapshot(project_id, snapshot_id)? else {
            return Err(crate::store::StoreError::NotFound("snapshot"));
        };
        let sandbox = match self.prepare_sandbox(project_id).await {
            Ok(prepared) => prepared.sandbox,
            Err(error) => return Ok(Err(error.to_string())),
        };
        Ok(self
            .bring_back(project_id, sandbox.as_ref(), &snapshot)
            .await)
    }

    async fn bring_back(
        &self,
        project_id: Uuid,
        sandbox: &dyn Sandbox,
        snapshot: &DataSnapshot,
    ) -> Result<Counts, String> {
        let (_, gzipped) = self
            .store
            .snapshot(project_id, snapshot.id)
            .map_err(|error| error.to_string())?
            .ok_or_else(|| "that snapshot is no longer kept".to_string())?;
        self.replace_data(project_id, sandbox, &gzipped)
            .await
            .map_err(|error| error.to_string())
    }
}

async fn mark_in_place(sandbox: &dyn Sandbox) -> Result<(), crate::sandbox::SandboxError> {
    let output = sandbox
        .run(
            &format!("mkdir -p .data && touch {IN_PLACE}"),
            Duration::from_secs(30),
        )
        .await?;
    if output.success() {
        Ok(())
    } else {
        Err(crate::sandbox::SandboxError::Backend(format!(
            "cannot mark the data in place: {}",
            output.stderr.trim()
        )))
    }
}
