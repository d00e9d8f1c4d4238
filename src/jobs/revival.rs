//! Keeps preview URLs alive: the preview proxy asks here for a project's dev server, and a
//! visit to a project whose sandbox expired starts a new one with the project's files.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::Generation;
use crate::preview::{PreviewTargets, Wake};
use crate::sandbox::PreviewUpstream;
use crate::store::JobKind;

pub struct Revival {
    generation: Arc<Generation>,
    /// Projects being woken, and the last failure of each (shown on the preview page).
    waking: Mutex<HashMap<Uuid, Option<String>>>,
    /// Projects whose data is about to be saved after a write through the preview.
    saving: Mutex<HashSet<Uuid>>,
}

/// Writes that come close together (a form and the refresh after it) are saved once.
const SAVE_DELAY: Duration = Duration::from_millis(800);

impl Revival {
    pub fn new(generation: Arc<Generation>) -> Arc<Self> {
        Arc::new(Self {
            generation,
            waking: Mutex::default(),
            saving: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Option<String>>> {
        self.waking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Revival {
    /// Saves the project's data shortly after a write, unless a save is already coming.
    fn schedule_save(self: &Arc<Self>, project_id: Uuid) {
        let fresh = self
            .saving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(project_id);
        if !fresh {
            return;
        }
        let revival = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SAVE_DELAY).await;
            revival
                .saving
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&project_id);
            revival.save_now(project_id).await;
        });
    }

    async fn save_now(&self, project_id: Uuid) {
        let generation = &self.generation;
        let Some(provider) = &generation.sandboxes else {
            return;
        };
        // Only a running sandbox has anything new; a stopped one is not woken for this.
        if !matches!(provider.preview_upstream(project_id).await, Ok(Some(_))) {
            return;
        }
        let prepared = match generation.prepare_sandbox(project_id).await {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::warn!(%project_id, %error, "could not reach the sandbox to save its data");
                return;
            }
        };
        let kind = crate::store::snapshots::SnapshotKind::Latest;
        match generation
            .save_data(project_id, prepared.sandbox.as_ref(), kind)
            .await
        {
            Ok(Some(snapshot)) => {
                tracing::debug!(%project_id, rows = snapshot.rows, "saved the app's data")
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%project_id, %error, "could not save the app's data"),
        }
    }
}

#[async_trait]
impl PreviewTargets for Arc<Revival> {
    fn data_may_have_changed(&self, project_id: Uuid) {
        self.schedule_save(project_id);
    }

    async fn upstream(&self, project_id: Uuid) -> Result<Option<PreviewUpstream>, String> {
        let Some(provider) = &self.generation.sandboxes else {
            return Ok(None);
        };
        provider
            .preview_upstream(project_id)
            .await
            .map_err(|error| error.to_string())
    }

    async fn wake(&self, project_id: Uuid) -> Wake {
        if self.generation.sandboxes.is_none() {
            return Wake::Unavailable(
                "No sandbox backend is configured, so the preview cannot run. Start Docker or set E2B_API_KEY.".into(),
            );
        }
        match self.generation.store.project_exists(project_id) {
            Ok(true) => {}
            Ok(false) => return Wake::UnknownProject,
            Err(error) => return Wake::Unavailable(error.to_string()),
        }
        // An import's install job makes the first sandbox; a second one beside it would
        // install the same packages into the same folder at once.
        let installing = self
            .generation
            .store
            .open_jobs_of(project_id)
            .is_ok_and(|jobs| jobs.iter().any(|job| job.kind == JobKind::Install));
        if installing {
            return Wake::Starting;
        }
        {
            let mut waking = self.lock();
            match waking.get(&project_id) {
                Some(None) => return Wake::Starting,
                Some(Some(failure)) => {
                    let failure = failure.clone();
                    waking.remove(&project_id);
                    return Wake::Unavailable(format!("The sandbox could not start: {failure}"));
                }
                None => {
                    waking.insert(project_id, None);
                }
            }
        }
        let revival = self.clone();
        tokio::spawn(async move {
            let outcome = revival.generation.prepare_sandbox(project_id).await;
            let mut waking = revival.lock();
            match outcome {
                Ok(prepared) => {
                    tracing::info!(%project_id, restored = prepared.restored_files, "preview woke the sandbox");
                    waking.remove(&project_id);
                }
                Err(error) => {
                    tracing::warn!(%project_id, %error, "preview could not wake the sandbox");
                    waking.insert(project_id, Some(error.to_string()));
                }
            }
        });
        Wake::Starting
    }
}
