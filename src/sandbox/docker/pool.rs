//! Warm sandboxes: containers started ahead of time, with the dev server up and `/` already
//! compiled, so a new project's first preview is a hot reload instead of a cold start.
//!
//! A pool container is named `codeflux-<instance>-pool-<id>` and carries no project label. A
//! project claims one by renaming it to its own container name (labels cannot change after
//! creation; names can), and from then on it is that project's sandbox like any other. The
//! pool refills in the background, belongs to no project until claimed (the reaper, orphan
//! removal and `codeflux sandboxes` leave it alone), and is removed on shutdown and at start.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::RenameContainerOptionsBuilder;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{DockerProvider, IMAGE_LABEL, INSTANCE_LABEL, PROJECT_LABEL};
use crate::sandbox::{PREVIEW_PORT, SandboxError};

/// How long a new pool container may take to serve `/` once.
const WARM_LIMIT: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(super) struct Pool {
    /// Warm containers ready to be claimed, oldest first.
    ready: Mutex<Vec<String>>,
    /// Woken when a container was claimed (or the pool should be checked).
    refill: Notify,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whom a sandbox container belongs to, read from its name (authoritative after a claim)
/// or its project label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    Project(Uuid),
    /// A warm container nobody has claimed yet.
    Pool,
    Unknown,
}

pub(super) fn holder_of(summary: &ContainerSummary) -> Holder {
    let labels = summary.labels.as_ref();
    let instance = labels
        .and_then(|labels| labels.get(INSTANCE_LABEL))
        .map_or("", String::as_str);
    let name = summary
        .names
        .as_ref()
        .and_then(|names| names.first())
        .map_or("", |name| name.trim_start_matches('/'));
    if let Some(rest) = name.strip_prefix(&format!("codeflux-{instance}-")) {
        if rest.starts_with("pool-") {
            return Holder::Pool;
        }
        if let Ok(project) = rest.parse() {
            return Holder::Project(project);
        }
    }
    labels
        .and_then(|labels| labels.get(PROJECT_LABEL))
        .and_then(|id| id.parse().ok())
        .map_or(Holder::Unknown, Holder::Project)
}

impl DockerProvider {
    /// The container name a project's sandbox has.
    pub(super) fn project_container_name(&self, project_id: Uuid) -> String {
        format!("codeflux-{}-{project_id}", self.config.instance)
    }

    /// Hands a warm container to `project_id` (renamed to the project's name), if one is
    /// ready and made from `image`.
    pub(super) async fn claim_warm(&self, project_id: Uuid, image: &str) -> Option<String> {
        loop {
            let id = {
                let mut ready = self.pool.lock();
                if ready.is_empty() {
                    return None;
                }
                ready.remove(0)
            };
            self.pool.refill.notify_one();
            let same_image = self
                .docker
                .inspect_container(&id, None)
                .await
                .ok()
                .and_then(|inspected| inspected.config?.labels?.get(IMAGE_LABEL).cloned())
                .is_some_and(|tag| tag == image);
            let options = RenameContainerOptionsBuilder::new()
                .name(&self.project_container_name(project_id))
                .build();
            if same_image && self.docker.rename_container(&id, options).await.is_ok() {
                tracing::info!(%project_id, container = super::sandbox::short(&id), "claimed a warm sandbox");
                return Some(id);
            }
            // Gone, or from an older image: drop it and try the next one.
            let _ = self.remove(&id).await;
        }
    }

    /// Keeps `config.pool` warm containers ready until the task is dropped.
    pub fn spawn_pool(self: &std::sync::Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.config.pool == 0 {
            return None;
        }
        let provider = self.clone();
        Some(tokio::spawn(async move {
            // Leftovers of an earlier run may come from another image; start afresh.
            if let Err(error) = provider.remove_pool().await {
                tracing::warn!(%error, "could not remove leftover warm sandboxes");
            }
            loop {
                if let Err(error) = provider.fill_pool().await {
                    tracing::warn!(%error, "could not prepare a warm sandbox");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                tokio::select! {
                    _ = provider.pool.refill.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        }))
    }

    /// Starts and warms containers until `config.pool` are ready; drops broken or stale ones.
    async fn fill_pool(&self) -> Result<(), SandboxError> {
        let image = self
            .prepare_image(&mut |line| tracing::info!(target: "codeflux::template", "{line}"))
            .await?;
        self.ensure_network().await?;
        for summary in self.pool_containers().await? {
            let Some(id) = summary.id else { continue };
            let fresh = summary.state == Some(ContainerSummaryStateEnum::RUNNING)
                && summary
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(IMAGE_LABEL))
                    .is_some_and(|tag| *tag == image);
            if !fresh {
                self.pool.lock().retain(|ready| *ready != id);
                self.remove(&id).await?;
            }
        }
        while self.pool.lock().len() < self.config.pool {
            let started = Instant::now();
            let name = format!(
                "codeflux-{}-pool-{}",
                self.config.instance,
                Uuid::now_v7().simple()
            );
            let id = self.create_container(&name, None, &image).await?;
            self.start(&id, &image).await?;
            if let Err(error) = self.warm(&id).await {
                let _ = self.remove(&id).await;
                return Err(error);
            }
            tracing::info!(
                container = super::sandbox::short(&id),
                seconds = started.elapsed().as_secs_f64(),
                "a warm sandbox is ready"
            );
            self.pool.lock().push(id);
        }
        Ok(())
    }

    /// Waits until the container's dev server has compiled and served `/`.
    async fn warm(&self, container_id: &str) -> Result<(), SandboxError> {
        let address = self.address(container_id).await?;
        let url = format!("http://{address}:{PREVIEW_PORT}/");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| SandboxError::Backend(error.to_string()))?;
        let deadline = Instant::now() + WARM_LIMIT;
        while Instant::now() < deadline {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                // The command runner too, so the first command after a claim costs no start.
                if let Err(error) = self.runners.get(&self.docker, container_id).await {
                    tracing::debug!(%error, "no command runner in the warm sandbox yet");
                }
                return Ok(());
            }
            // A container that stopped (killed, out of memory) never answers: give up now
            // rather than at the limit, so the pool replaces it.
            let running = self
                .docker
                .inspect_container(container_id, None)
                .await
                .ok()
                .and_then(|inspected| inspected.state)
                .and_then(|state| state.running);
            if running != Some(true) {
                return Err(SandboxError::Backend(format!(
                    "warm sandbox {} stopped while its dev server started",
                    super::sandbox::short(container_id)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(SandboxError::Backend(format!(
            "the dev server of warm sandbox {} did not answer within {WARM_LIMIT:?}",
            super::sandbox::short(container_id)
        )))
    }

    /// This installation's unclaimed pool containers, running or not.
    async fn pool_containers(&self) -> Result<Vec<ContainerSummary>, SandboxError> {
        Ok(self
            .labelled_containers(false, false)
            .await?
            .into_iter()
            .filter(|summary| holder_of(summary) == Holder::Pool)
            .collect())
    }

    /// Removes every unclaimed pool container (shutdown, start-up). Returns how many.
    pub async fn remove_pool(&self) -> Result<usize, SandboxError> {
        self.pool.lock().clear();
        let containers = self.pool_containers().await?;
        for summary in &containers {
            if let Some(id) = &summary.id {
                self.remove(id).await?;
            }
        }
        Ok(containers.len())
    }

    /// How many warm containers are ready to be claimed now.
    pub fn warm_ready(&self) -> usize {
        self.pool.lock().len()
    }
}
