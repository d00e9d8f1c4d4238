//! A published app's data as CodeFlux sees it: read live from its container (as the app's
//! own user, never changed from outside), backed up into the project's snapshots, and
//! checked for what a republish's migrations would drop.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::data_loss::{self, DataLoss};
use super::{PublishError, Publisher, build};
use crate::data::{DataError, Database, RowsPage, Table};
use crate::sandbox::docker::AppExec;
use crate::store::snapshots::{DataSnapshot, NewSnapshot, SnapshotKind};

impl Publisher {
    /// The serving container, as the data module reaches it, and the version it serves.
    fn published_database(&self, project_id: Uuid) -> Result<(AppExec, u32), DataError> {
        let not_running = || DataError::NotOpen("the project has no running published app".into());
        let record = self
            .get(project_id)
            .ok()
            .flatten()
            .ok_or_else(not_running)?;
        let (Some(container), Some(version)) = (record.container, record.version) else {
            return Err(not_running());
        };
        let engine = self.engine.as_ref().map_err(|_| not_running())?;
        Ok((
            engine.app_exec(&container, build::APP_DIR, build::APP_USER),
            version,
        ))
    }

    /// The published app's tables, and the version serving them.
    pub async fn data_tables(&self, project_id: Uuid) -> Result<(Vec<Table>, u32), DataError> {
        let (machine, version) = self.published_database(project_id)?;
        Ok((Database::new(&machine).tables().await?, version))
    }

    /// One page of a published table's rows.
    pub async fn data_rows(
        &self,
        project_id: Uuid,
        table: &str,
        page: usize,
        page_size: usize,
    ) -> Result<(RowsPage, u32), DataError> {
        let (machine, version) = self.published_database(project_id)?;
        Ok((
            Database::new(&machine).rows(table, page, page_size).await?,
            version,
        ))
    }

    /// Copies the published data, as it is now, into the project's snapshots (kept apart
    /// from the development data). `None`: the app has no tables.
    pub async fn back_up(&self, project_id: Uuid) -> Result<Option<DataSnapshot>, DataError> {
        let (machine, version) = self.published_database(project_id)?;
        let Some((gzipped, counts)) = Database::new(&machine).snapshot().await? else {
            return Ok(None);
        };
        self.keep_backup(project_id, version, &gzipped, counts)
            .await
            .map(Some)
    }

    async fn keep_backup(
        &self,
        project_id: Uuid,
        version: u32,
        gzipped: &[u8],
        counts: crate::data::Counts,
    ) -> Result<DataSnapshot, DataError> {
        let refused = |error: crate::store::StoreError| DataError::Refused(error.to_string());
        let snapshot = self
            .store
            .add_snapshot(
                project_id,
                NewSnapshot {
                    kind: SnapshotKind::Published { version },
                    gzipped,
                    tables: counts.tables,
                    rows: counts.rows,
                },
                self.data_limits,
            )
            .map_err(refused)?;
        self.store.flush().await.map_err(refused)?;
        Ok(snapshot)
    }

    /// Backs up every running app's data each `every`, when it changed since its last
    /// backup, until `stop`: the published data is kept like the development data is.
    pub async fn back_up_on_schedule(
        self: std::sync::Arc<Self>,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            for record in self.all() {
                if record.status != super::PublishStatus::Running || record.container.is_none() {
                    continue;
                }
                match self.back_up_if_changed(record.project_id).await {
                    Ok(Some(snapshot)) => {
                        tracing::info!(app = %record.name, rows = snapshot.rows, "backed up the published data")
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(app = %record.name, %error, "could not back up the published data")
                    }
                }
            }
        }
    }

    /// [`Self::back_up`], unless the data is what the newest published backup holds.
    async fn back_up_if_changed(
        &self,
        project_id: Uuid,
    ) -> Result<Option<DataSnapshot>, DataError> {
        let (machine, version) = self.published_database(project_id)?;
        let Some((gzipped, counts)) = Database::new(&machine).snapshot().await? else {
            return Ok(None);
        };
        let refused = |error: crate::store::StoreError| DataError::Refused(error.to_string());
        let newest = self
            .store
            .snapshots(project_id)
            .map_err(refused)?
            .into_iter()
            .rev()
            .find(|snapshot| matches!(snapshot.kind, SnapshotKind::Published { .. }));
        if let Some(newest) = newest
            && let Some((_, bytes)) = self
                .store
                .snapshot(project_id, newest.id)
                .map_err(refused)?
            && crate::data::same_data(&bytes, &gzipped)
        {
            return Ok(None);
        }
        self.keep_backup(project_id, version, &gzipped, counts)
            .await
            .map(Some)
    }

    /// What publishing `version` over the serving one would drop of the published data.
    pub(super) async fn data_loss(
        &self,
        project_id: Uuid,
        version: u32,
    ) -> Result<Vec<DataLoss>, PublishError> {
        let Some(serving) = self.get(project_id)?.and_then(|record| record.version) else {
            return Ok(Vec::new()); // A first publish: the database is new.
        };
        let old = self.source_files(project_id, serving)?;
        let new = self.source_files(project_id, version)?;
        let pending = data_loss::pending_migrations(Some(&old), &new);
        if !data_loss::drops_anything(&pending) {
            return Ok(Vec::new());
        }
        let (tables, _) = self.data_tables(project_id).await.map_err(|error| {
            PublishError::DataLoss(format!(
                "v{version}'s migrations drop tables or columns, and the published data could not be read to see whether they hold rows ({error})."
            ))
        })?;
        Ok(data_loss::losses(&pending, &tables))
    }

    /// A version's files as the store keeps them.
    fn source_files(
        &self,
        project_id: Uuid,
        version: u32,
    ) -> Result<BTreeMap<String, String>, PublishError> {
        self.store
            .versions(project_id)?
            .into_iter()
            .find(|(found, _)| found.version == version)
            .map(|(_, fragment)| fragment.files.into_iter().collect())
            .ok_or(PublishError::NoVersion(version))
    }
}
