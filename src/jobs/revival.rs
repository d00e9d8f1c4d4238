//! Keeps preview URLs alive: the preview proxy asks here for a project's dev server, and a
//! visit to a project whose sandbox expired starts a new one with the project's files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use uuid::Uuid;

use super::Generation;
use crate::preview::{PreviewTargets, Wake};
use crate::sandbox::PreviewUpstream;

pub struct Revival {
    generation: Arc<Generation>,
    /// Projects being woken, and the last failure of each (shown on the preview page).
    waking: Mutex<HashMap<Uuid, Option<String>>>,
}

impl Revival {
    pub fn new(generation: Arc<Generation>) -> Arc<Self> {
        Arc::new(Self {
            generation,
            waking: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Option<String>>> {
        self.waking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl PreviewTargets for Arc<Revival> {
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
