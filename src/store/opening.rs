//! Opening the store: its directory made private, sled's lock waited for.

use std::sync::Arc;

use super::{Store, StoreError, StoreResult, flusher, private_dir};

/// How long opening waits for a lock that an earlier store in this process may still hold.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// sled reports a held lock only in its message (an `io::Error` of kind `Other`).
fn is_lock_conflict(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl Store {
    /// Opens (or creates) the store in `path`.
    ///
    /// The directory is made private to this user (0700, files 0600): it holds every
    /// project's code and prompts. When the database is locked, opening waits a little:
    /// sled's background thread keeps the lock for a moment after the last handle of an
    /// earlier store is dropped. A lock still held after that belongs to another server.
    pub fn open(path: &std::path::Path) -> StoreResult<Self> {
        private_dir::prepare(path).map_err(|source| StoreError::Directory {
            path: path.display().to_string(),
            source,
        })?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::open(path) {
                Ok(db) => break db,
                Err(error) if is_lock_conflict(&error) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::InUse(path.display().to_string()));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(error) => return Err(error.into()),
            }
        };
        private_dir::restrict_files(path).map_err(|source| StoreError::Directory {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_db(db)
    }

    /// A store that lives in memory only (tests, `generate` without a data dir).
    pub fn temporary() -> StoreResult<Self> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> StoreResult<Self> {
        let store = Self {
            projects: db.open_tree("projects")?,
            messages: db.open_tree("messages")?,
            fragments: db.open_tree("fragments")?,
            jobs: db.open_tree("jobs")?,
            open_jobs: db.open_tree("open_jobs")?,
            queue: db.open_tree("queue")?,
            events: db.open_tree("events")?,
            unsaved: db.open_tree("unsaved_files")?,
            images: db.open_tree("images")?,
            screenshots: db.open_tree("screenshots")?,
            snapshots: db.open_tree("data_snapshots")?,
            snapshot_bytes: db.open_tree("data_snapshot_bytes")?,
            latest_data: db.open_tree("latest_data")?,
            latest_data_bytes: db.open_tree("latest_data_bytes")?,
            flusher: Arc::new(flusher::Flusher::start(db.clone())),
            db,
        };
        // Data written before the queue index existed: derive it once.
        if store.queue.is_empty() {
            for key in store.open_jobs.iter().keys() {
                store.queue.insert(&key?[16..32], &[])?;
            }
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sled's background thread may hold the lock a moment after the store is dropped:
    /// reopening at once, many times over, must wait for it rather than fail.
    #[test]
    fn reopening_right_after_closing_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let store =
                Store::open(dir.path()).unwrap_or_else(|error| panic!("round {round}: {error}"));
            store.create_project("again").unwrap();
        }
    }

    #[test]
    fn a_directory_held_by_another_store_is_named_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        let Err(error) = Store::open(dir.path()) else {
            panic!("a second store opened a locked directory");
        };
        assert!(matches!(error, StoreError::InUse(_)), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("already running"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn the_data_directory_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("data");
        drop(Store::open(&path).unwrap());
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        // An existing directory (and its files) made by hand with the usual umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(path.join("notes"), "x").unwrap();
        std::fs::set_permissions(path.join("notes"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        drop(Store::open(&path).unwrap());
        assert_eq!(mode(&path), 0o700);
        let files: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(files.len() > 1, "sled wrote files: {files:?}");
        for file in files.iter().filter(|file| file.is_file()) {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }
}
