//! What sandboxes exist on the engine, for `codeflux sandboxes`, shutdown and pruning.

use std::path::{Path, PathBuf};

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{StatsOptionsBuilder, StopContainerOptionsBuilder};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use uuid::Uuid;

use super::{DATA_DIR_LABEL, DockerProvider, HOST_LABEL, INSTANCE_LABEL, docker_error};
use crate::sandbox::SandboxError;

/// One sandbox container as the engine reports it.
#[derive(Debug, Clone)]
pub struct SandboxInfo {
    pub container_id: String,
    pub project_id: Option<Uuid>,
    pub instance: String,
    pub running: bool,
    pub created: Option<DateTime<Utc>>,
    /// Memory in use (running sandboxes only).
    pub memory_bytes: Option<u64>,
    /// The data directory of the server that made it, and that server's host name.
    pub data_dir: Option<PathBuf>,
    pub host: Option<String>,
    /// A warm sandbox no project has claimed yet.
    pub warm: bool,
}

/// Whether the server that owns a sandbox is still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Running,
    Gone,
    /// It cannot be told from here (another host or container); the reason says why.
    Unknown(String),
}

impl DockerProvider {
    /// This installation's sandboxes (or every CodeFlux sandbox on the engine), with the
    /// memory each running one uses.
    pub async fn inventory(&self, all_instances: bool) -> Result<Vec<SandboxInfo>, SandboxError> {
        let containers = self.labelled_containers(all_instances, false).await?;
        let mut sandboxes = Vec::with_capacity(containers.len());
        for summary in containers {
            let holder = super::pool::holder_of(&summary);
            let Some(container_id) = summary.id else {
                continue;
            };
            let labels = summary.labels.unwrap_or_default();
            let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
            let memory_bytes = if running {
                self.memory_of(&container_id).await
            } else {
                None
            };
            sandboxes.push(SandboxInfo {
                project_id: match holder {
                    super::pool::Holder::Project(id) => Some(id),
                    _ => None,
                },
                warm: holder == super::pool::Holder::Pool,
                instance: labels.get(INSTANCE_LABEL).cloned().unwrap_or_default(),
                running,
                created: summary
                    .created
                    .and_then(|seconds| DateTime::from_timestamp(seconds, 0)),
                memory_bytes,
                data_dir: labels.get(DATA_DIR_LABEL).map(PathBuf::from),
                host: labels.get(HOST_LABEL).cloned(),
                container_id,
            });
        }
        Ok(sandboxes)
    }

    /// Memory in use by a running container, page cache left out (as `docker stats` shows).
    pub(super) async fn memory_of(&self, container_id: &str) -> Option<u64> {
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = self
            .docker
            .stats(container_id, Some(options))
            .next()
            .await?
            .ok()?;
        let memory = stats.memory_stats?;
        let cache = memory.stats.as_ref().and_then(|stats| {
            stats
                .get("inactive_file")
                .or_else(|| stats.get("total_inactive_file"))
                .copied()
        });
        Some(memory.usage?.saturating_sub(cache.unwrap_or(0)))
    }

    /// Stops every running sandbox of this installation at once; files are kept.
    pub async fn stop_all(&self) -> Result<usize, SandboxError> {
        let running: Vec<String> = self
            .list_sandboxes(true)
            .await?
            .into_iter()
            .map(|(_, found)| found.id)
            .collect();
        let stops = running.iter().map(|id| async move {
            let options = StopContainerOptionsBuilder::new().t(2).build();
            match self.docker.stop_container(id, Some(options)).await {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304 | 404,
                    ..
                }) => Ok(()),
                Err(error) => Err(SandboxError::Backend(docker_error(error))),
            }
        });
        for outcome in futures::future::join_all(stops).await {
            outcome?;
        }
        Ok(running.len())
    }

    /// Removes one sandbox container (and its files).
    pub async fn remove_sandbox(&self, container_id: &str) -> Result<(), SandboxError> {
        self.remove(container_id).await
    }
}

/// Tells whether the server that made `sandbox` still runs: a running server holds the
/// lock on its data directory's database file.
pub fn owner_of(sandbox: &SandboxInfo) -> Owner {
    let Some(data_dir) = &sandbox.data_dir else {
        return Owner::Unknown(
            "made by an older CodeFlux that did not record its data directory".into(),
        );
    };
    if sandbox.host.as_deref() != Some(host_name().as_str()) {
        return Owner::Unknown(format!(
            "made by a server on host {:?}",
            sandbox.host.as_deref().unwrap_or("?")
        ));
    }
    data_dir_in_use(data_dir)
}

/// Whether a CodeFlux server has `data_dir` open right now.
pub fn data_dir_in_use(data_dir: &Path) -> Owner {
    let database = data_dir.join("db");
    let file = match std::fs::OpenOptions::new().read(true).open(&database) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Owner::Gone,
        Err(error) => {
            return Owner::Unknown(format!("cannot open {}: {error}", database.display()));
        }
    };
    match file.try_lock() {
        Ok(()) => Owner::Gone,
        Err(std::fs::TryLockError::WouldBlock) => Owner::Running,
        Err(std::fs::TryLockError::Error(error)) => Owner::Unknown(format!(
            "cannot check the lock on {}: {error}",
            database.display()
        )),
    }
}

/// This machine's name, recorded on sandboxes so another host's are never judged from here.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}
