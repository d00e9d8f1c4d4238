//! Idle sandboxes are stopped (files kept): the activity each use leaves, and the reaper
//! that reads it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::query_parameters::StopContainerOptionsBuilder;
use uuid::Uuid;

use super::{DockerProvider, docker_error};
use crate::sandbox::SandboxError;

/// When each project's sandbox was last used; the reaper stops the ones idle too long.
#[derive(Default)]
pub struct Activity {
    last_used: Mutex<HashMap<Uuid, Instant>>,
}

impl Activity {
    pub fn touch(&self, project_id: Uuid) {
        self.lock().insert(project_id, Instant::now());
    }

    /// How long the project's sandbox has been idle; a sandbox never seen counts from now.
    pub(super) fn idle_for(&self, project_id: Uuid) -> Duration {
        self.lock()
            .entry(project_id)
            .or_insert_with(Instant::now)
            .elapsed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Instant>> {
        self.last_used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl DockerProvider {
    /// Stops running sandboxes idle for longer than the configured limit. Returns how many.
    pub async fn stop_idle(&self) -> Result<usize, SandboxError> {
        let mut stopped = 0;
        for (project_id, container) in self.list_sandboxes(true).await? {
            let Some(project_id) = project_id else {
                continue;
            };
            if self.activity.idle_for(project_id) < self.config.idle {
                continue;
            }
            let lock = self.project_lock(project_id);
            let _guard = lock.lock().await;
            // Checked again under the lock: a job may have just used it.
            if self.activity.idle_for(project_id) < self.config.idle {
                continue;
            }
            tracing::info!(%project_id, "stopping an idle sandbox");
            let options = StopContainerOptionsBuilder::new().t(5).build();
            match self
                .docker
                .stop_container(&container.id, Some(options))
                .await
            {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304 | 404,
                    ..
                }) => stopped += 1,
                Err(error) => return Err(SandboxError::Backend(docker_error(error))),
            }
        }
        Ok(stopped)
    }

    /// Runs [`DockerProvider::stop_idle`] periodically until the task is dropped.
    pub fn spawn_reaper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let provider = self.clone();
        let every =
            (provider.config.idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(error) = provider.stop_idle().await {
                    tracing::warn!(%error, "could not stop idle sandboxes");
                }
            }
        })
    }
}
