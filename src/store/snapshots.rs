//! The generated app's data, kept outside its sandbox: the latest copy (brought back when a
//! sandbox is revived) and snapshots of earlier moments (each version, and the data from
//! just before a change dropped some). Snapshots are gzipped JSON made in the sandbox; the
//! store keeps their bytes apart from what it lists.

use serde::{Deserialize, Serialize};

use super::*;

/// How many snapshots (other than the latest copy) a project keeps, and how many bytes in
/// all; the oldest go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLimits {
    pub count: usize,
    pub bytes: usize,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        Self {
            count: 30,
            bytes: 100 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SnapshotKind {
    /// The data as last seen: one per project, replaced each time.
    Latest,
    /// The data when a version was made (the version's id).
    Version { version_id: Uuid },
    /// Kept just before a schema change dropped a table or column holding rows.
    BeforeChange { migration: String },
    /// Kept just before a restore replaced the data.
    BeforeRestore,
    /// The published app's data (not the development data), backed up while `version`
    /// served it: before a republish replaced that version, at unpublish, or on request.
    Published { version: u32 },
}

impl SnapshotKind {
    /// Whether the snapshot is of the development data, and so becomes its latest copy
    /// (what a new sandbox gets back).
    fn is_development(&self) -> bool {
        !matches!(self, Self::Published { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSnapshot {
    pub id: Uuid,
    pub project_id: Uuid,
    #[serde(flatten)]
    pub kind: SnapshotKind,
    pub taken_at: chrono::DateTime<Utc>,
    pub tables: u64,
    pub rows: u64,
    pub bytes: usize,
}

/// A snapshot on its way into the store.
pub struct NewSnapshot<'a> {
    pub kind: SnapshotKind,
    pub gzipped: &'a [u8],
    pub tables: u64,
    pub rows: u64,
}

impl Store {
    /// Stores a snapshot. A `Latest` one replaces the project's previous latest copy; any
    /// other kind of the development data also becomes the latest copy. The oldest kept
    /// ones are dropped beyond `limits`.
    pub fn add_snapshot(
        &self,
        project_id: Uuid,
        new: NewSnapshot<'_>,
        limits: SnapshotLimits,
    ) -> StoreResult<DataSnapshot> {
        let snapshot = DataSnapshot {
            id: Uuid::now_v7(),
            project_id,
            kind: new.kind,
            taken_at: Utc::now(),
            tables: new.tables,
            rows: new.rows,
            bytes: new.gzipped.len(),
        };
        if snapshot.kind.is_development() {
            let latest = DataSnapshot {
                kind: SnapshotKind::Latest,
                ..snapshot.clone()
            };
            put(&self.latest_data, project_id.as_bytes(), &latest)?;
            self.latest_data_bytes
                .insert(project_id.as_bytes(), new.gzipped)?;
        }
        if snapshot.kind == SnapshotKind::Latest {
            return Ok(snapshot);
        }
        put(
            &self.snapshots,
            &pair_key(project_id, snapshot.id),
            &snapshot,
        )?;
        self.snapshot_bytes
            .insert(snapshot.id.as_bytes(), new.gzipped)?;
        self.trim_snapshots(project_id, snapshot.kind.is_development(), limits)?;
        Ok(snapshot)
    }

    /// Drops the oldest snapshots of one side (development or published) beyond `limits`:
    /// the published app's backups, taken on a schedule, never push out the development
    /// data's snapshots, nor the other way round.
    fn trim_snapshots(
        &self,
        project_id: Uuid,
        development: bool,
        limits: SnapshotLimits,
    ) -> StoreResult<()> {
        let kept: Vec<DataSnapshot> = self
            .snapshots(project_id)?
            .into_iter()
            .filter(|snapshot| snapshot.kind.is_development() == development)
            .collect();
        let mut count = kept.len();
        let mut bytes: usize = kept.iter().map(|snapshot| snapshot.bytes).sum();
        for oldest in &kept {
            if count <= limits.count.max(1) && bytes <= limits.bytes {
                break;
            }
            // The newest always stays, whatever its size.
            if count == 1 {
                break;
            }
            self.snapshots.remove(pair_key(project_id, oldest.id))?;
            self.snapshot_bytes.remove(oldest.id.as_bytes())?;
            count -= 1;
            bytes -= oldest.bytes;
        }
        Ok(())
    }

    /// The project's kept snapshots, oldest first (the latest copy is not among them).
    pub fn snapshots(&self, project_id: Uuid) -> StoreResult<Vec<DataSnapshot>> {
        self.snapshots
            .scan_prefix(project_id.as_bytes())
            .values()
            .map(|value| Ok(serde_json::from_slice(&value?)?))
            .collect()
    }

    /// One kept snapshot and its bytes.
    pub fn snapshot(
        &self,
        project_id: Uuid,
        snapshot_id: Uuid,
    ) -> StoreResult<Option<(DataSnapshot, Vec<u8>)>> {
        let Some(snapshot) =
            get::<DataSnapshot>(&self.snapshots, &pair_key(project_id, snapshot_id))?
        else {
            return Ok(None);
        };
        let bytes = self
            .snapshot_bytes
            .get(snapshot_id.as_bytes())?
            .ok_or(StoreError::NotFound("snapshot data"))?;
        Ok(Some((snapshot, bytes.to_vec())))
    }

    /// The snapshot taken when a version was made, if it kept one.
    pub fn version_snapshot(
        &self,
        project_id: Uuid,
        version_id: Uuid,
    ) -> StoreResult<Option<DataSnapshot>> {
        Ok(self
            .snapshots(project_id)?
            .into_iter()
            .rev()
            .find(|snapshot| snapshot.kind == SnapshotKind::Version { version_id }))
    }

    /// The data as last seen, to bring back into a fresh sandbox.
    pub fn latest_data(&self, project_id: Uuid) -> StoreResult<Option<(DataSnapshot, Vec<u8>)>> {
        let Some(snapshot) = get::<DataSnapshot>(&self.latest_data, project_id.as_bytes())? else {
            return Ok(None);
        };
        let bytes = self
            .latest_data_bytes
            .get(project_id.as_bytes())?
            .ok_or(StoreError::NotFound("latest data"))?;
        Ok(Some((snapshot, bytes.to_vec())))
    }

    pub(super) fn delete_data(&self, project_id: Uuid) -> StoreResult<()> {
        for snapshot in self.snapshots(project_id)? {
            self.snapshot_bytes.remove(snapshot.id.as_bytes())?;
            self.snapshots.remove(pair_key(project_id, snapshot.id))?;
        }
        self.latest_data.remove(project_id.as_bytes())?;
        self.latest_data_bytes.remove(project_id.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(store: &Store, project: Uuid, kind: SnapshotKind, bytes: usize, limits: SnapshotLimits) {
        let gzipped = vec![7u8; bytes];
        store
            .add_snapshot(
                project,
                NewSnapshot {
                    kind,
                    gzipped: &gzipped,
                    tables: 1,
                    rows: bytes as u64,
                },
                limits,
            )
            .unwrap();
    }

    #[test]
    fn the_oldest_snapshots_go_first_and_the_latest_copy_is_replaced() {
        let store = Store::temporary().unwrap();
        let project = Uuid::now_v7();
        let other = Uuid::now_v7();
        let limits = SnapshotLimits {
            count: 3,
            bytes: 1000,
        };
        for rows in [10, 20, 30, 40] {
            let kind = SnapshotKind::Version {
                version_id: Uuid::now_v7(),
            };
            add(&store, project, kind, rows, limits);
        }
        add(&store, other, SnapshotKind::BeforeRestore, 5, limits);
        let kept: Vec<u64> = store
            .snapshots(project)
            .unwrap()
            .iter()
            .map(|snapshot| snapshot.rows)
            .collect();
        assert_eq!(kept, [20, 30, 40], "beyond the count the oldest went");
        // Every snapshot is also the latest copy, and the latest only replaces it.
        add(&store, project, SnapshotKind::Latest, 50, limits);
        let (latest, bytes) = store.latest_data(project).unwrap().unwrap();
        assert_eq!((latest.rows, bytes.len()), (50, 50));
        assert_eq!(store.snapshots(project).unwrap().len(), 3);
        // Beyond the bytes, too; the newest stays whatever its size.
        add(&store, project, SnapshotKind::BeforeRestore, 990, limits);
        let kept: Vec<u64> = store
            .snapshots(project)
            .unwrap()
            .iter()
            .map(|snapshot| snapshot.rows)
            .collect();
        assert_eq!(kept, [990]);
        add(&store, project, SnapshotKind::BeforeRestore, 5000, limits);
        assert_eq!(store.snapshots(project).unwrap().len(), 1);
        // Projects stay apart, and deleting one's data leaves the other's.
        assert_eq!(store.snapshots(other).unwrap().len(), 1);
        store.delete_data(project).unwrap();
        assert!(store.latest_data(project).unwrap().is_none());
        assert!(store.snapshots(project).unwrap().is_empty());
        assert_eq!(store.latest_data(other).unwrap().unwrap().0.rows, 5);
    }

    #[test]
    fn published_backups_and_development_snapshots_are_trimmed_apart() {
        let store = Store::temporary().unwrap();
        let project = Uuid::now_v7();
        let limits = SnapshotLimits {
            count: 2,
            bytes: 1000,
        };
        add(&store, project, SnapshotKind::BeforeRestore, 1, limits);
        add(&store, project, SnapshotKind::BeforeRestore, 2, limits);
        for rows in [10, 20, 30, 40] {
            add(
                &store,
                project,
                SnapshotKind::Published { version: 1 },
                rows,
                limits,
            );
        }
        let kept: Vec<u64> = store
            .snapshots(project)
            .unwrap()
            .iter()
            .map(|snapshot| snapshot.rows)
            .collect();
        assert_eq!(
            kept,
            [1, 2, 30, 40],
            "scheduled backups push out only older backups"
        );
        add(&store, project, SnapshotKind::BeforeRestore, 3, limits);
        let kept: Vec<u64> = store
            .snapshots(project)
            .unwrap()
            .iter()
            .map(|snapshot| snapshot.rows)
            .collect();
        assert_eq!(kept, [2, 30, 40, 3]);
    }

    #[test]
    fn a_versions_snapshot_is_found_by_its_version() {
        let store = Store::temporary().unwrap();
        let project = Uuid::now_v7();
        let version_id = Uuid::now_v7();
        add(
            &store,
            project,
            SnapshotKind::Version { version_id },
            3,
            SnapshotLimits::default(),
        );
        let found = store
            .version_snapshot(project, version_id)
            .unwrap()
            .unwrap();
        assert_eq!(found.rows, 3);
        let (_, bytes) = store.snapshot(project, found.id).unwrap().unwrap();
        assert_eq!(bytes, vec![7u8; 3]);
        assert!(
            store
                .version_snapshot(project, Uuid::now_v7())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_published_backup_is_kept_but_never_becomes_the_development_copy() {
        let store = Store::temporary().unwrap();
        let project = Uuid::now_v7();
        let limits = SnapshotLimits::default();
        add(&store, project, SnapshotKind::Latest, 4, limits);
        add(
            &store,
            project,
            SnapshotKind::Published { version: 2 },
            9,
            limits,
        );
        let (latest, _) = store.latest_data(project).unwrap().unwrap();
        assert_eq!(
            latest.rows, 4,
            "a new sandbox still gets the development data"
        );
        let kept = store.snapshots(project).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].kind, SnapshotKind::Published { version: 2 });
        let json = serde_json::to_value(&kept[0]).unwrap();
        assert_eq!(
            (json["kind"].as_str(), json["version"].as_u64()),
            (Some("published"), Some(2))
        );
    }
}
