//! The local Docker backend: one labelled container per project, built from the embedded
//! template, reached over a Docker network of its own (no published host ports).

mod app_exec;
mod budget;
mod config;
mod container;
mod firewall;
mod idle;
mod image;
mod inventory;
mod network;
mod pool;
mod production;
mod runner;
mod sandbox;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use uuid::Uuid;

use crate::sandbox::readiness::{Readiness, ReadinessCell};
pub use app_exec::AppExec;
pub use config::{DEFAULT_BASE_IMAGE, DockerConfig, NetworkMode};
pub use idle::Activity;
pub use image::{
    Exported, ImageState, Imported, Pruned, TransferError, build_image, ensure_image, export_image,
    image_state, import_image, prune_images,
};
pub use inventory::{Owner, SandboxInfo, data_dir_in_use, host_name, owner_of};
pub use production::{AppContainer, AppContainerState};
pub use sandbox::{DockerSandbox, SANDBOX_USER};

use super::{Acquired, PREVIEW_PORT, PreviewUpstream, Sandbox, SandboxError, SandboxProvider};

/// Label on every sandbox container, so they can be found again after a restart.
pub const SANDBOX_LABEL: &str = "codeflux.sandbox";
/// Label holding the project id.
pub const PROJECT_LABEL: &str = "codeflux.project";
/// Label holding the image tag the container was made from.
const IMAGE_LABEL: &str = "codeflux.image";
/// Label naming the CodeFlux installation that owns the container.
pub const INSTANCE_LABEL: &str = "codeflux.instance";
/// Labels naming the owning server's data directory and host, to tell whether it still runs.
const DATA_DIR_LABEL: &str = "codeflux.data_dir";
const HOST_LABEL: &str = "codeflux.host";

pub struct DockerProvider {
    docker: Docker,
    config: DockerConfig,
    activity: Arc<Activity>,
    /// Serialises work on one project's container (a job and a preview wake-up may race).
    project_locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// The image tag once it is known to exist.
    image: tokio::sync::Mutex<Option<String>>,
    /// Whether the image is there, being built, or failed to build (shown in the UI).
    readiness: ReadinessCell,
    /// Warm containers waiting for a new project.
    pool: pool::Pool,
    /// Most project sandboxes running at once, and which ones jobs hold.
    max_running: usize,
    leases: Arc<budget::Leases>,
    /// Command runners inside the containers (one attached exec each).
    runners: Arc<runner::Runners>,
    /// The sandboxes' network once it is known to exist; its lock serialises creating it.
    network_id: tokio::sync::Mutex<Option<String>>,
    /// This machine's addresses and DNS servers, for the sandboxes' network rules.
    destinations: firewall::Destinations,
}

/// A labelled container as found on the engine.
struct Found {
    id: String,
    running: bool,
    image_tag: Option<String>,
}

impl DockerProvider {
    /// Connects to the engine named by `DOCKER_HOST` (or the local socket) and agrees on an
    /// API version, so old engines (20.10 speaks 1.41) and new ones both work.
    pub async fn connect(config: DockerConfig) -> Result<Self, SandboxError> {
        let docker = match &config.socket {
            Some(socket) => Docker::connect_with_unix(
                &socket.display().to_string(),
                120,
                bollard::API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|error| {
            SandboxError::NotConfigured(format!("cannot connect to Docker: {error}"))
        })?;
        let docker = docker.negotiate_version().await.map_err(|error| {
            SandboxError::NotConfigured(format!("Docker does not answer: {}", docker_error(error)))
        })?;
        docker.ping().await.map_err(|error| {
            SandboxError::NotConfigured(format!("Docker does not answer: {}", docker_error(error)))
        })?;
        let max_running = match config.max_running {
            Some(max) => max.max(1),
            None => {
                let memory = docker.info().await.ok().and_then(|info| info.mem_total);
                budget::default_max_running(memory, config.memory_mb)
            }
        };
        let destinations = firewall::Destinations::discover(&docker).await;
        Ok(Self {
            destinations,
            max_running,
            leases: Arc::default(),
            runners: Arc::default(),
            docker,
            config,
            activity: Arc::default(),
            project_locks: Mutex::default(),
            image: tokio::sync::Mutex::new(None),
            readiness: ReadinessCell::default(),
            pool: pool::Pool::default(),
            network_id: tokio::sync::Mutex::new(None),
        })
    }

    /// The image's state for the UI; updated while [`Self::prepare_image`] runs.
    pub fn readiness(&self) -> ReadinessCell {
        self.readiness.clone()
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// Builds the sandbox image unless it exists; build output goes to `progress`.
    pub async fn prepare_image(
        &self,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String, SandboxError> {
        let mut cached = self.image.lock().await;
        if let Some(tag) = cached.as_ref()
            && self.docker.inspect_image(tag).await.is_ok()
        {
            return Ok(tag.clone());
        }
        let readiness = self.readiness.clone();
        let mut report = |line: &str| {
            readiness.set(Readiness::Preparing {
                step: line.to_string(),
            });
            progress(line);
        };
        match ensure_image(&self.docker, &self.config, &mut report).await {
            Ok(tag) => {
                self.readiness.set(Readiness::Ready);
                *cached = Some(tag.clone());
                Ok(tag)
            }
            Err(error) => {
                self.readiness.set(Readiness::Failed {
                    error: error.to_string(),
                });
                Err(error)
            }
        }
    }

    /// Removes labelled containers whose project no longer exists. Returns how many.
    pub async fn remove_orphans(
        &self,
        live_projects: &HashSet<Uuid>,
    ) -> Result<usize, SandboxError> {
        let mut removed = 0;
        for (project_id, container) in self.list_sandboxes(false).await? {
            if project_id.is_none_or(|id| !live_projects.contains(&id)) {
                self.remove(&container.id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn project_lock(&self, project_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .project_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(project_id).or_default().clone()
    }

    /// The containers labelled as CodeFlux sandboxes: this installation's, or every one.
    async fn labelled_containers(
        &self,
        all_instances: bool,
        running_only: bool,
    ) -> Result<Vec<bollard::models::ContainerSummary>, SandboxError> {
        let mut labels = vec![format!("{SANDBOX_LABEL}=1")];
        if !all_instances {
            labels.push(format!("{INSTANCE_LABEL}={}", self.config.instance));
        }
        let filters = HashMap::from([("label", labels)]);
        let options = ListContainersOptionsBuilder::new()
            .all(!running_only)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|error| SandboxError::Backend(docker_error(error)))
    }

    async fn list_sandboxes(
        &self,
        running_only: bool,
    ) -> Result<Vec<(Option<Uuid>, Found)>, SandboxError> {
        let containers = self.labelled_containers(false, running_only).await?;
        Ok(containers
            .into_iter()
            .filter_map(|summary| {
                let project_id = match pool::holder_of(&summary) {
                    pool::Holder::Project(id) => Some(id),
                    // Warm containers belong to no project until claimed.
                    pool::Holder::Pool => return None,
                    pool::Holder::Unknown => None,
                };
                let labels = summary.labels.unwrap_or_default();
                Some((
                    project_id,
                    Found {
                        id: summary.id?,
                        running: summary.state == Some(ContainerSummaryStateEnum::RUNNING),
                        image_tag: labels.get(IMAGE_LABEL).cloned(),
                    },
                ))
            })
            .collect())
    }

    async fn find(&self, project_id: Uuid) -> Result<Option<Found>, SandboxError> {
        Ok(self
            .list_sandboxes(false)
            .await?
            .into_iter()
            .find(|(id, _)| *id == Some(project_id))
            .map(|(_, found)| found))
    }

    async fn remove(&self, container_id: &str) -> Result<(), SandboxError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(container_id, Some(options))
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(error) => Err(SandboxError::Backend(docker_error(error))),
        }
    }

    /// Creates a sandbox container named `name`; `project_id` is `None` for a warm one.
    async fn create_container(
        &self,
        name: &str,
        project_id: Option<Uuid>,
        image: &str,
    ) -> Result<String, SandboxError> {
        let network = self.ensure_network().await?;
        let body = container::spec(&self.config, image, project_id, network);
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = match self
            .docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Ok(created) => created,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                // A leftover with our name but without our labels: replace it.
                self.remove(name).await?;
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|error| SandboxError::Backend(docker_error(error)))?
            }
            Err(error) => return Err(SandboxError::Backend(docker_error(error))),
        };
        Ok(created.id)
    }

    /// Starts the container and seals its network before any of its code runs (the dev
    /// server waits for that); a container already running was sealed when it started.
    async fn start(&self, container_id: &str, image: &str) -> Result<(), SandboxError> {
        match self.docker.start_container(container_id, None).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => return Ok(()),
            Err(error) => return Err(SandboxError::Backend(docker_error(error))),
        }
        let sealed = firewall::seal(
            &self.docker,
            image,
            container_id,
            self.config.network,
            &self.destinations,
        )
        .await;
        if let Err(error) = sealed {
            // Never leave a running sandbox without its rules.
            let options = StopContainerOptionsBuilder::new().t(0).build();
            let _ = self
                .docker
                .stop_container(container_id, Some(options))
                .await;
            return Err(error);
        }
        Ok(())
    }

    async fn address(&self, container_id: &str) -> Result<String, SandboxError> {
        let inspected = self
            .docker
            .inspect_container(container_id, None)
            .await
            .map_err(|error| SandboxError::Backend(docker_error(error)))?;
        inspected
            .network_settings
            .and_then(|settings| settings.networks)
            .and_then(|networks| networks.get(&self.config.network_name()).cloned())
            .and_then(|endpoint| endpoint.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                SandboxError::Backend(format!(
                    "container {} has no address on {}",
                    sandbox::short(container_id),
                    self.config.network_name()
                ))
            })
    }

    async fn open(
        &self,
        project_id: Uuid,
        container_id: String,
    ) -> Result<DockerSandbox, SandboxError> {
        let address = self.address(&container_id).await?;
        let mut sandbox = DockerSandbox {
            docker: self.docker.clone(),
            container_id,
            address,
            uid: 0,
            gid: 0,
            activity: self.activity.clone(),
            project_id,
            _lease: self.leases.take(project_id),
            runners: self.runners.clone(),
        };
        let ids = sandbox.owner_ids().await?;
        let mut numbers = ids.stdout.split_whitespace().filter_map(|n| n.parse().ok());
        sandbox.uid = numbers.next().unwrap_or(1000);
        sandbox.gid = numbers.next().unwrap_or(sandbox.uid);
        Ok(sandbox)
    }
}

#[async_trait]
impl SandboxProvider for DockerProvider {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn acquire(&self, project_id: Uuid) -> Result<Acquired, SandboxError> {
        let lock = self.project_lock(project_id);
        let _guard = lock.lock().await;
        self.activity.touch(project_id);
        let image = self
            .prepare_image(&mut |line| tracing::info!(target: "codeflux::template", "{line}"))
            .await?;
        self.ensure_network().await?;
        let (container_id, created) = match self.find(project_id).await? {
            Some(found) if found.image_tag.as_deref() == Some(image.as_str()) => {
                if !found.running {
                    self.make_room(project_id).await?;
                    self.start(&found.id, &image).await?;
                }
                (found.id, false)
            }
            stale => {
                if let Some(found) = stale {
                    tracing::info!(%project_id, "replacing a sandbox made from an older template");
                    self.remove(&found.id).await?;
                }
                self.make_room(project_id).await?;
                let id = match self.claim_warm(project_id, &image).await {
                    Some(id) => id,
                    None => {
                        let name = self.project_container_name(project_id);
                        let id = self
                            .create_container(&name, Some(project_id), &image)
                            .await?;
                        self.start(&id, &image).await?;
                        id
                    }
                };
                (id, true)
            }
        };
        let sandbox: Arc<dyn Sandbox> = Arc::new(self.open(project_id, container_id).await?);
        Ok(Acquired { sandbox, created })
    }

    async fn preview_upstream(
        &self,
        project_id: Uuid,
    ) -> Result<Option<PreviewUpstream>, SandboxError> {
        let Some(found) = self.find(project_id).await? else {
            return Ok(None);
        };
        if !found.running {
            return Ok(None);
        }
        // Someone looking at the preview keeps the sandbox alive.
        self.activity.touch(project_id);
        let address = self.address(&found.id).await?;
        Ok(Some(PreviewUpstream {
            base_url: format!("http://{address}:{PREVIEW_PORT}"),
            headers: Vec::new(),
        }))
    }

    async fn release(&self, project_id: Uuid) -> Result<(), SandboxError> {
        let lock = self.project_lock(project_id);
        let _guard = lock.lock().await;
        if let Some(found) = self.find(project_id).await? {
            self.remove(&found.id).await?;
        }
        Ok(())
    }

    async fn shutdown(&self) -> Result<usize, SandboxError> {
        self.remove_pool().await?;
        self.stop_all().await
    }

    fn warm_count(&self) -> usize {
        self.warm_ready()
    }

    async fn running_count(&self) -> Option<usize> {
        self.labelled_containers(false, true)
            .await
            .ok()
            .map(|containers| containers.len())
    }
}

/// This process's container id when it runs inside Docker (the default hostname is it).
fn own_container_id() -> Option<String> {
    if !std::path::Path::new("/.dockerenv").exists() {
        return None;
    }
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// Bollard's errors, with the engine's own message where there is one.
pub(crate) fn docker_error(error: bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => {
            format!("Docker answered {status_code}: {message}")
        }
        other => other.to_string(),
    }
}
