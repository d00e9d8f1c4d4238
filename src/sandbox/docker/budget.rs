//! The running-sandbox budget: at most `max_running` project sandboxes run at once. When one
//! more is needed, the least recently used sandbox that no job holds is stopped (its files
//! stay; a preview visit or the next prompt starts it again). When every running sandbox is
//! held by a job, the new one waits for one to be let go instead of failing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::StopContainerOptionsBuilder;
use uuid::Uuid;

use super::{DockerProvider, docker_error};
use crate::sandbox::SandboxError;

/// Which projects' sandboxes are in a job's hands right now (a count per project).
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<Uuid, usize>>,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn take(self: &Arc<Self>, project_id: Uuid) -> Lease {
        *self.lock().entry(project_id).or_default() += 1;
        Lease {
            leases: self.clone(),
            project_id,
        }
    }

    fn held(&self, project_id: Uuid) -> bool {
        self.lock().contains_key(&project_id)
    }
}

/// Held by every handed-out sandbox; let go when the job drops it.
pub(super) struct Lease {
    leases: Arc<Leases>,
    project_id: Uuid,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self.leases.lock();
        if let Some(count) = held.get_mut(&self.project_id) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.project_id);
            }
        }
    }
}

/// The default budget: as many sandboxes as fit in the engine's memory at their limit.
pub(super) fn default_max_running(engine_memory_bytes: Option<i64>, memory_mb: i64) -> usize {
    let per_sandbox = memory_mb.max(1) * 1024 * 1024;
    engine_memory_bytes
        .map(|total| (total / per_sandbox).max(1) as usize)
        .unwrap_or(4)
}

impl DockerProvider {
    /// The budget in force.
    pub fn max_running(&self) -> usize {
        self.max_running
    }

    /// Returns once `for_project` may start a sandbox within the budget, stopping the least
    /// recently used free sandbox if needed, or waiting while every one is held.
    pub(super) async fn make_room(&self, for_project: Uuid) -> Result<(), SandboxError> {
        let mut announced = false;
        loop {
            let running: Vec<(Uuid, String)> = self
                .list_sandboxes(true)
                .await?
                .into_iter()
                .filter_map(|(project, found)| Some((project?, found.id)))
                .filter(|(project, _)| *project != for_project)
                .collect();
            if running.len() < self.max_running {
                return Ok(());
            }
            let mut candidates: Vec<&(Uuid, String)> = running
                .iter()
                .filter(|(project, _)| !self.leases.held(*project))
                .collect();
            candidates
                .sort_by_key(|(project, _)| std::cmp::Reverse(self.activity.idle_for(*project)));
            let mut stopped = false;
            for (project, container) in candidates {
                // Another acquire may be working on it; never wait for its lock here (two
                // acquires each evicting the other would deadlock).
                let lock = self.project_lock(*project);
                let Ok(_guard) = lock.try_lock() else {
                    continue;
                };
                if self.leases.held(*project) {
                    continue;
                }
                tracing::info!(
                    %project,
                    budget = self.max_running,
                    "stopping the least recently used sandbox to stay within the budget"
                );
                let options = StopContainerOptionsBuilder::new().t(2).build();
                match self.docker.stop_container(container, Some(options)).await {
                    Ok(())
                    | Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 304 | 404,
                        ..
                    }) => {}
                    Err(error) => return Err(SandboxError::Backend(docker_error(error))),
                }
                stopped = true;
                break;
            }
            if !stopped {
                if !announced {
                    tracing::info!(
                        project = %for_project,
                        budget = self.max_running,
                        "every running sandbox is in use; waiting for one to be free"
                    );
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_follows_the_engines_memory() {
        let gib = 1024 * 1024 * 1024;
        assert_eq!(default_max_running(Some(24 * gib), 2048), 12);
        assert_eq!(default_max_running(Some(gib), 2048), 1, "at least one");
        assert_eq!(default_max_running(None, 2048), 4);
    }

    #[test]
    fn a_lease_is_held_until_its_last_holder_lets_go() {
        let leases = Arc::new(Leases::default());
        let project = Uuid::now_v7();
        let first = leases.take(project);
        let second = leases.take(project);
        drop(first);
        assert!(leases.held(project));
        drop(second);
        assert!(!leases.held(project));
    }
}
