//! What publishing needs from the engine: a throwaway build sandbox, images made from it,
//! and long-running app containers with the sandboxes' limits, hardening and network rules
//! but a restart policy, a data volume and no CodeFlux commands.

use std::collections::HashMap;

use bollard::models::{
    ContainerConfig, ContainerCreateBody, Mount, MountType, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CommitContainerOptionsBuilder, CreateContainerOptionsBuilder,
    ListImagesOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures::StreamExt;
use uuid::Uuid;

use super::{
    DockerProvider, DockerSandbox, INSTANCE_LABEL, SANDBOX_LABEL, container, docker_error, firewall,
};
use crate::sandbox::SandboxError;

/// Marks a build sandbox (it has no project label, so a leftover one is an orphan).
const BUILD_LABEL: &str = "codeflux.build";

/// A published app's container, as the publishing module asks for it.
pub struct AppContainer {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub env: Vec<String>,
    /// A named volume mounted at `data_path`: the app's data outlives its containers.
    pub volume: Option<String>,
    pub data_path: String,
    /// Restarted by the engine after a crash or a reboot (off for a trial run).
    pub restart: bool,
}

impl DockerProvider {
    /// A sandbox made only to build a version: the sandbox image with every limit, the
    /// hardening and the network rules of a project's sandbox, but no dev server.
    pub async fn build_sandbox(&self, project_id: Uuid) -> Result<DockerSandbox, SandboxError> {
        let image = self
            .prepare_image(&mut |line| tracing::info!(target: "codeflux::template", "{line}"))
            .await?;
        let network = self.ensure_network().await?;
        let mut body = container::spec(&self.config, &image, None, network);
        if let Some(labels) = body.labels.as_mut() {
            labels.insert(BUILD_LABEL.to_string(), project_id.to_string());
        }
        // Nothing but CodeFlux's execs runs in it.
        body.cmd = Some(vec!["sleep".into(), "infinity".into()]);
        let name = format!(
            "codeflux-{}-build-{}",
            self.config.instance,
            Uuid::now_v7().simple()
        );
        let id = self.create_and_start(&name, body, &image).await?;
        match self.open(project_id, id.clone()).await {
            Ok(sandbox) => Ok(sandbox),
            Err(error) => {
                let _ = self.remove(&id).await;
                Err(error)
            }
        }
    }

    /// Saves a container's files as an image `reference` (`repo:tag`).
    pub async fn commit(&self, container_id: &str, reference: &str) -> Result<(), SandboxError> {
        let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let options = CommitContainerOptionsBuilder::new()
            .container(container_id)
            .repo(repo)
            .tag(tag)
            .pause(true)
            .build();
        self.docker
            .commit_container(options, ContainerConfig::default())
            .await
            .map_err(|error| SandboxError::Backend(docker_error(error)))?;
        Ok(())
    }

    /// Builds an image from a tar context (its `Dockerfile` only copies files: no code of
    /// an app runs in this build, so it runs without a network). Output lines go to `log`.
    pub async fn build_from_context(
        &self,
        context: Vec<u8>,
        tag: &str,
        labels: &HashMap<String, String>,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), SandboxError> {
        let options = BuildImageOptionsBuilder::new()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .networkmode("none")
            .labels(labels)
            .build();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|error| SandboxError::Backend(docker_error(error)))?;
            if let Some(detail) = info.error_detail.and_then(|detail| detail.message) {
                return Err(SandboxError::Backend(detail));
            }
            if let Some(line) = info.stream {
                let line = line.trim_end();
                if !line.is_empty() {
                    log(line);
                }
            }
        }
        Ok(())
    }

    /// Removes an image; one still in use or already gone is left alone.
    /// A name for the image a build sandbox is committed to on its way to a production
    /// image: this installation's own, so that a leftover one can be told apart.
    pub fn build_stage_reference(&self) -> String {
        format!(
            "{}:{}",
            self.build_stage_repository(),
            Uuid::now_v7().simple()
        )
    }

    fn build_stage_repository(&self) -> String {
        format!("codeflux-build-stage-{}", self.config.instance)
    }

    /// Removes build-stage images that a crash or a failed removal left behind; called when
    /// CodeFlux starts, before any build of its own. Returns how many went.
    pub async fn remove_leftover_build_stages(&self) -> usize {
        let repository = self.build_stage_repository();
        let options = ListImagesOptionsBuilder::new()
            .filters(&HashMap::from([("reference", vec![repository.as_str()])]))
            .build();
        let images = match self.docker.list_images(Some(options)).await {
            Ok(images) => images,
            Err(error) => {
                tracing::warn!(error = %docker_error(error), "could not list leftover build images");
                return 0;
            }
        };
        let mut removed = 0;
        for reference in images
            .into_iter()
            .flat_map(|image| image.repo_tags)
            .filter(|reference| reference.starts_with(&format!("{repository}:")))
        {
            self.remove_image(&reference).await;
            removed += 1;
        }
        removed
    }

    pub async fn remove_image(&self, reference: &str) {
        let options = RemoveImageOptionsBuilder::new().build();
        if let Err(error) = self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            tracing::debug!(reference, error = %docker_error(error), "image kept");
        }
    }

    /// Creates and starts an app container and seals its network, like a sandbox's.
    pub async fn run_app(&self, app: AppContainer) -> Result<String, SandboxError> {
        let sandbox_image = self
            .prepare_image(&mut |line| tracing::info!(target: "codeflux::template", "{line}"))
            .await?;
        let network = self.ensure_network().await?;
        let hardened = container::spec(&self.config, &sandbox_image, None, network);
        let mut host_config = hardened.host_config.unwrap_or_default();
        // The app runs as its image's own unprivileged user and needs no capability: the
        // three that sandboxes keep are for CodeFlux's command runner, which is not here.
        host_config.cap_add = None;
        host_config.restart_policy = Some(RestartPolicy {
            name: Some(if app.restart {
                RestartPolicyNameEnum::UNLESS_STOPPED
            } else {
                RestartPolicyNameEnum::NO
            }),
            maximum_retry_count: None,
        });
        if let Some(volume) = &app.volume {
            host_config.mounts = Some(vec![Mount {
                target: Some(app.data_path.clone()),
                source: Some(volume.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]);
        }
        let mut labels = app.labels;
        labels.insert(INSTANCE_LABEL.to_string(), self.config.instance.clone());
        labels.remove(SANDBOX_LABEL);
        let mut env = app.env;
        env.push(format!("CODEFLUX_NETWORK_GATE={}", firewall::GATE_FILE));
        let body = ContainerCreateBody {
            image: Some(app.image.clone()),
            labels: Some(labels),
            hostname: Some("app".to_string()),
            env: Some(env),
            host_config: Some(host_config),
            ..Default::default()
        };
        // A leftover of an earlier attempt with this name goes first.
        self.remove(&app.name).await?;
        self.create_and_start(&app.name, body, &sandbox_image).await
    }

    /// Creates the container `name`, starts it and seals its network (`sandbox_image` runs
    /// the rules' helper); one that cannot start is removed again.
    async fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
        sandbox_image: &str,
    ) -> Result<String, SandboxError> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let id = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|error| SandboxError::Backend(docker_error(error)))?
            .id;
        if let Err(error) = self.start(&id, sandbox_image).await {
            let _ = self.remove(&id).await;
            return Err(error);
        }
        Ok(id)
    }

    /// Sets an app container's network rules again when it has restarted (after a crash
    /// or a reboot its gate is closed and the app waits). Returns whether it had to.
    pub async fn reseal_app(&self, container_id: &str) -> Result<bool, SandboxError> {
        let open = self
            .exec_as_root(container_id, &["test", "-e", firewall::GATE_FILE])
            .await
            .is_ok_and(|code| code == 0);
        if open {
            return Ok(false);
        }
        let sandbox_image = self
            .prepare_image(&mut |line| tracing::info!(target: "codeflux::template", "{line}"))
            .await?;
        firewall::seal(
            &self.docker,
            &sandbox_image,
            container_id,
            self.config.network,
            &self.destinations,
        )
        .await?;
        Ok(true)
    }

    /// The container's address on the sandboxes' network.
    pub async fn container_address(&self, container_id: &str) -> Result<String, SandboxError> {
        self.address(container_id).await
    }

    /// Stops and removes a container (gone already is fine).
    pub async fn remove_container(&self, container_id: &str) -> Result<(), SandboxError> {
        self.remove(container_id).await
    }

    /// Removes a named volume (gone already is fine).
    pub async fn remove_volume(&self, name: &str) -> Result<(), SandboxError> {
        match self
            .docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(error) => Err(SandboxError::Backend(docker_error(error))),
        }
    }

    /// Runs `argv` as root in a container and returns its exit code.
    async fn exec_as_root(&self, container_id: &str, argv: &[&str]) -> Result<i64, String> {
        use bollard::exec::StartExecResults;
        let exec = self
            .docker
            .create_exec(
                container_id,
                bollard::models::ExecConfig {
                    user: Some("root".to_string()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(argv.iter().map(|arg| arg.to_string()).collect()),
                    ..Default::default()
                },
            )
            .await
            .map_err(docker_error)?;
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(docker_error)?
        {
            while output.next().await.is_some() {}
        }
        let inspected = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(docker_error)?;
        inspected
            .exit_code
            .ok_or_else(|| "no exit code".to_string())
    }
}

/// An app container as the engine reports it.
pub struct AppContainerState {
    pub running: bool,
    pub started_at: Option<String>,
}

impl DockerProvider {
    /// Starts a stopped app container and seals its network again.
    pub async fn start_app(&self, container_id: &str) -> Result<(), SandboxError> {
        let sandbox_image = self
            .prepare_image(&mut |line| tracing::info!(target: "codeflux::template", "{line}"))
            .await?;
        self.start(container_id, &sandbox_image).await?;
        // `start` seals only what it started; one the engine restarted meanwhile is done here.
        self.reseal_app(container_id).await.map(|_| ())
    }

    /// Stops a container, giving it `grace` to finish its requests.
    pub async fn stop_container(&self, container_id: &str, grace: std::time::Duration) {
        let options = bollard::query_parameters::StopContainerOptionsBuilder::new()
            .t(grace.as_secs() as i32)
            .build();
        if let Err(error) = self
            .docker
            .stop_container(container_id, Some(options))
            .await
        {
            tracing::debug!(container_id, error = %docker_error(error), "stop");
        }
    }

    /// Whether the container exists and runs; `None` when it is gone.
    pub async fn app_state(&self, container_id: &str) -> Option<AppContainerState> {
        let inspected = self
            .docker
            .inspect_container(container_id, None)
            .await
            .ok()?;
        let state = inspected.state.unwrap_or_default();
        Some(AppContainerState {
            running: state.running.unwrap_or(false),
            started_at: state.started_at,
        })
    }

    /// Whether an image is on the engine.
    pub async fn has_image(&self, reference: &str) -> bool {
        self.docker.inspect_image(reference).await.is_ok()
    }

    /// The memory a container uses now, in bytes, as `docker stats` and `codeflux
    /// sandboxes` count it.
    pub async fn memory_used(&self, container_id: &str) -> Option<u64> {
        self.memory_of(container_id).await
    }

    /// The last `lines` lines a container wrote (for a publish that never answered).
    pub async fn container_logs(&self, container_id: &str, lines: usize) -> String {
        let options = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut logs = self.docker.logs(container_id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text
    }
}
