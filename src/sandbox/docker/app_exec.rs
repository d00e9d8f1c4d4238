//! Reading a published app's data: commands in its container as its own user, in its own
//! folder, so the data module's calls work there as in a sandbox. Nothing else: CodeFlux
//! never changes a published app's files or removes it this way.

use std::io::Read;
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use futures::StreamExt;

use super::{DockerProvider, docker_error};
use crate::sandbox::{CommandOutput, FileWrite, Sandbox, SandboxError, WorkspacePath};

/// A published app's container, as the data module sees it.
pub struct AppExec {
    docker: bollard::Docker,
    container_id: String,
    /// The app's folder in its image (`/app`).
    root: String,
    user: String,
}

impl DockerProvider {
    /// Commands in a running app container, run as `user` in `root`.
    pub fn app_exec(&self, container_id: &str, root: &str, user: &str) -> AppExec {
        AppExec {
            docker: self.docker.clone(),
            container_id: container_id.to_string(),
            root: root.to_string(),
            user: user.to_string(),
        }
    }
}

fn read_only() -> SandboxError {
    SandboxError::Backend("a published app's files are not changed by CodeFlux".into())
}

#[async_trait]
impl Sandbox for AppExec {
    fn id(&self) -> &str {
        &self.container_id
    }

    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, SandboxError> {
        let backend = |error| SandboxError::Backend(docker_error(error));
        let seconds = format!("{:.1}s", timeout.as_secs_f64().max(0.1));
        let exec = self
            .docker
            .create_exec(
                &self.container_id,
                bollard::models::ExecConfig {
                    user: Some(self.user.clone()),
                    working_dir: Some(self.root.clone()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(
                        [
                            "timeout",
                            "--kill-after",
                            "5s",
                            &seconds,
                            "sh",
                            "-c",
                            command,
                        ]
                        .map(str::to_string)
                        .to_vec(),
                    ),
                    ..Default::default()
                },
            )
            .await
            .map_err(backend)?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(backend)?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(backend)? {
                    LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                    other => stdout.extend_from_slice(&other.into_bytes()),
                }
            }
        }
        let inspected = self.docker.inspect_exec(&exec.id).await.map_err(backend)?;
        let exit_code = inspected.exit_code.unwrap_or(-1);
        if exit_code == 124 {
            return Err(SandboxError::Timeout(timeout));
        }
        Ok(CommandOutput {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            exit_code,
        })
    }

    async fn write_files(&self, _files: &[FileWrite]) -> Result<(), SandboxError> {
        Err(read_only())
    }

    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        let full = format!("{}/{}", self.root, path.relative());
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(&full)
            .build();
        let mut stream = self
            .docker
            .download_from_container(&self.container_id, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| match error {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => SandboxError::FileNotFound(path.relative().to_string()),
                other => SandboxError::Backend(docker_error(other)),
            })?;
            archive.extend_from_slice(&chunk);
        }
        let mut tar = tar::Archive::new(archive.as_slice());
        let entries = tar
            .entries()
            .map_err(|error| SandboxError::Backend(error.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|error| SandboxError::Backend(error.to_string()))?;
            if entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|error| SandboxError::Backend(error.to_string()))?;
                return Ok(bytes);
            }
        }
        Err(SandboxError::FileNotFound(path.relative().to_string()))
    }

    fn native_url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.container_id)
    }

    async fn extend(&self, _lifetime: Duration) -> Result<(), SandboxError> {
        Ok(())
    }

    async fn kill(&self) -> Result<(), SandboxError> {
        Err(read_only())
    }
}
