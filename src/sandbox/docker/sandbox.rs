//! One project's container, seen through the `Sandbox` trait.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt;

use super::runner::{Command, Ended};
use super::{Activity, docker_error};
use crate::sandbox::output::BoundedOutput;
use crate::sandbox::workspace::{check_resolved, resolve_argv};
use crate::sandbox::{
    CommandOutput, FileWrite, MAX_FILE_BYTES, Sandbox, SandboxError, WORKSPACE_ROOT, WorkspacePath,
};

/// The unprivileged account the template creates and runs the dev server as.
pub const SANDBOX_USER: &str = "user";

/// Grace between the polite TERM and the KILL when a command runs out of time.
const KILL_GRACE_SECS: u64 = 3;

pub struct DockerSandbox {
    pub(super) docker: Docker,
    pub(super) container_id: String,
    pub(super) address: String,
    /// Owner of the workspace inside the container, for uploaded files.
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) activity: Arc<Activity>,
    pub(super) project_id: uuid::Uuid,
    /// Keeps the budget from stopping this sandbox while a job holds it.
    pub(super) _lease: super::budget::Lease,
    pub(super) runners: Arc<super::runner::Runners>,
}

impl DockerSandbox {
    /// Runs a command as `user` in the workspace, collecting stdout and stderr apart.
    pub(super) async fn exec(&self, argv: Vec<String>) -> Result<CommandOutput, SandboxError> {
        let exec = self
            .docker
            .create_exec(
                &self.container_id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: Some(SANDBOX_USER.to_string()),
                    working_dir: Some(WORKSPACE_ROOT.to_string()),
                    cmd: Some(argv),
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| self.map_error(error))?;
        let mut stdout = BoundedOutput::default();
        let mut stderr = BoundedOutput::default();
        let options = StartExecOptions {
            output_capacity: Some(1 << 20),
            ..Default::default()
        };
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, Some(options))
            .await
            .map_err(|error| self.map_error(error))?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|error| self.map_error(error))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        stdout.push(&message)
                    }
                    LogOutput::StdErr { message } => stderr.push(&message),
                    LogOutput::StdIn { .. } => {}
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|error| self.map_error(error))?;
        Ok(CommandOutput {
            stdout: stdout.into_text(),
            stderr: stderr.into_text(),
            exit_code: inspected.exit_code.unwrap_or(-1),
        })
    }

    /// Refuses paths that a symbolic link in the workspace leads outside it. Docker's archive
    /// API acts as root and follows such links, so this is checked as the sandbox user first.
    async fn confine(&self, paths: &[&WorkspacePath]) -> Result<Vec<WorkspacePath>, SandboxError> {
        let argv = resolve_argv(paths);
        let quick = Duration::from_secs(60);
        let resolved = match self
            .through_runner(Command::Argv(argv.clone()), quick)
            .await
        {
            Some(Ok(Ended::Exited(output))) => output,
            Some(Ok(Ended::TimedOut)) => return Err(SandboxError::Timeout(quick)),
            Some(Err(error)) => return Err(error),
            None => self.exec(argv).await?,
        };
        if !resolved.success() {
            return Err(SandboxError::Backend(format!(
                "could not resolve paths in the sandbox: {}",
                resolved.stderr.trim()
            )));
        }
        check_resolved(paths, &resolved.stdout)
    }

    fn map_error(&self, error: bollard::errors::Error) -> SandboxError {
        match &error {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            } => SandboxError::Gone(format!(
                "container {} is gone: {}",
                short(&self.container_id),
                docker_error(error)
            )),
            bollard::errors::Error::DockerResponseServerError { .. } => {
                SandboxError::Backend(docker_error(error))
            }
            // No answer at all: the engine stopped or its socket went away.
            _ => SandboxError::Unavailable(docker_error(error)),
        }
    }

    fn touch(&self) {
        self.activity.touch(self.project_id);
    }

    /// Runs through the container's runner: `None` when there is no working runner (the
    /// caller then uses an exec of its own); a lost container is an error, not a `None`.
    async fn through_runner(
        &self,
        command: Command<'_>,
        timeout: Duration,
    ) -> Option<Result<Ended, SandboxError>> {
        let runner = match self.runners.get(&self.docker, &self.container_id).await {
            Ok(runner) => runner,
            Err(error) => {
                tracing::debug!(%error, "no command runner; using an exec per command");
                return None;
            }
        };
        let grace = Duration::from_secs(KILL_GRACE_SECS);
        // The client-side limit is only a backstop in case the runner stops answering.
        let backstop = timeout + grace + Duration::from_secs(10);
        match tokio::time::timeout(backstop, runner.run(command, timeout, grace)).await {
            Err(_) => Some(Err(SandboxError::Timeout(timeout))),
            Ok(Ok(ended)) => Some(Ok(ended)),
            Ok(Err(error)) => match self.ensure_running().await {
                Err(gone) => Some(Err(gone)),
                Ok(()) => {
                    tracing::warn!(%error, "the command runner failed; using an exec instead");
                    None
                }
            },
        }
    }

    /// `id -u; id -g` of the sandbox user (the owner of uploaded files), through the runner
    /// when there is one; this also starts the runner for the commands to come.
    pub(super) async fn owner_ids(&self) -> Result<CommandOutput, SandboxError> {
        let argv: Vec<String> = ["sh", "-c", "id -u; id -g"].map(String::from).into();
        match self
            .through_runner(Command::Argv(argv.clone()), Duration::from_secs(60))
            .await
        {
            Some(Ok(Ended::Exited(output))) => Ok(output),
            Some(Ok(Ended::TimedOut)) => Err(SandboxError::Timeout(Duration::from_secs(60))),
            Some(Err(error)) => Err(error),
            None => self.exec(argv).await,
        }
    }

    /// A command killed by a signal (128+), or one the engine could not run (125, 126), may
    /// mean the whole container went (stopped or removed from outside).
    async fn checked(&self, output: CommandOutput) -> Result<CommandOutput, SandboxError> {
        if matches!(output.exit_code, 125 | 126) || output.exit_code >= 128 || output.exit_code < 0
        {
            self.ensure_running().await?;
        }
        Ok(output)
    }

    /// After a command died of a signal: was it the whole container? The engine notices a
    /// container's end a moment after its processes die, so it is asked more than once.
    async fn ensure_running(&self) -> Result<(), SandboxError> {
        for _ in 0..4 {
            let inspected = self
                .docker
                .inspect_container(&self.container_id, None)
                .await
                .map_err(|error| self.map_error(error))?;
            let running = inspected
                .state
                .and_then(|state| state.running)
                .unwrap_or(false);
            if !running {
                return Err(SandboxError::Gone(format!(
                    "container {} stopped while the command ran",
                    short(&self.container_id)
                )));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn id(&self) -> &str {
        &self.container_id
    }

    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, SandboxError> {
        self.touch();
        let started = Instant::now();
        match self.through_runner(Command::Shell(command), timeout).await {
            Some(Ok(Ended::Exited(output))) => return self.checked(output).await,
            Some(Ok(Ended::TimedOut)) => return Err(SandboxError::Timeout(timeout)),
            Some(Err(error)) => return Err(error),
            // No runner: one exec per command, as below.
            None => {}
        }
        let timeout = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        // coreutils `timeout` runs the command in its own process group and signals the whole
        // group, so children (npm's workers, a stray server) die with it. Docker's exec API
        // has no way to kill an exec, so this is what makes the time limit real. The group's
        // id is left in a file, so a caller that gives up early can kill it too.
        let seconds = timeout.as_secs_f64().max(0.1);
        let marker = format!("/tmp/.codeflux-command-{}", uuid::Uuid::now_v7().simple());
        let argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            r#"timeout --kill-after "$1" "$2" bash -lc "$3" & echo $! > "$0"; wait $!; code=$?; rm -f "$0"; exit $code"#.to_string(),
            marker.clone(),
            format!("{KILL_GRACE_SECS}s"),
            format!("{seconds:.1}s"),
            command.to_string(),
        ];
        let mut abandoned = KillOnDrop {
            docker: self.docker.clone(),
            container_id: self.container_id.clone(),
            marker: Some(marker),
        };
        let started = Instant::now();
        // The client-side limit is only a backstop in case the engine stops answering.
        let backstop = timeout + Duration::from_secs(KILL_GRACE_SECS + 10);
        let output = tokio::time::timeout(backstop, self.exec(argv))
            .await
            .map_err(|_| SandboxError::Timeout(timeout))??;
        abandoned.marker = None;
        // 124: `timeout` fired; 137: it had to KILL after the grace period.
        if matches!(output.exit_code, 124 | 137) && started.elapsed() >= timeout {
            return Err(SandboxError::Timeout(timeout));
        }
        self.checked(output).await
    }

    async fn write_files(&self, files: &[FileWrite]) -> Result<(), SandboxError> {
        self.touch();
        let real = self
            .confine(&files.iter().map(|file| &file.path).collect::<Vec<_>>())
            .await?;
        // Written where each path really leads: the archive then crosses no links.
        let files: Vec<FileWrite> = files
            .iter()
            .zip(real)
            .map(|(file, path)| FileWrite {
                path,
                content: file.content.clone(),
            })
            .collect();
        let tar = workspace_tar(&files, self.uid, self.gid)
            .map_err(|error| SandboxError::Backend(format!("cannot pack files: {error}")))?;
        let options = UploadToContainerOptionsBuilder::new()
            .path(WORKSPACE_ROOT)
            .build();
        self.docker
            .upload_to_container(
                &self.container_id,
                Some(options),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|error| self.map_error(error))
    }

    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        self.touch();
        let real = self.confine(&[path]).await?;
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(&real[0].absolute())
            .build();
        let mut stream = self
            .docker
            .download_from_container(&self.container_id, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                // The archive carries one file plus headers; past the limit it is too big.
                Ok(_) if tar.len() > MAX_FILE_BYTES + 64 * 1024 => {
                    return Err(SandboxError::TooLarge {
                        path: path.to_string(),
                        limit: MAX_FILE_BYTES,
                    });
                }
                Ok(bytes) => tar.extend_from_slice(&bytes),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    return Err(SandboxError::FileNotFound(path.to_string()));
                }
                Err(error) => return Err(self.map_error(error)),
            }
        }
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries = archive.entries().map_err(|error| {
            SandboxError::Backend(format!("unreadable archive from Docker: {error}"))
        })?;
        for entry in entries {
            let mut entry = entry.map_err(|error| SandboxError::Backend(error.to_string()))?;
            if entry.header().entry_type().is_file() {
                let mut data = Vec::new();
                entry
                    .read_to_end(&mut data)
                    .map_err(|error| SandboxError::Backend(error.to_string()))?;
                return Ok(data);
            }
            if entry.header().entry_type().is_dir() {
                return Err(SandboxError::Backend(format!(
                    "{path} is a directory, not a file"
                )));
            }
        }
        Err(SandboxError::FileNotFound(path.to_string()))
    }

    fn native_url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.address)
    }

    async fn extend(&self, _lifetime: Duration) -> Result<(), SandboxError> {
        // Docker sandboxes live until they are idle for the configured time.
        self.touch();
        Ok(())
    }

    async fn kill(&self) -> Result<(), SandboxError> {
        let options = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(&self.container_id, Some(options))
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(error) => Err(self.map_error(error)),
        }
    }
}

/// Kills a command whose caller stopped waiting for it (a job cancelled or shut down):
/// dropping an exec's stream leaves the process running in the container.
struct KillOnDrop {
    docker: Docker,
    container_id: String,
    /// The file holding the command's process group; `None` once the command ended.
    marker: Option<String>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let (Some(marker), Ok(runtime)) =
            (self.marker.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let docker = self.docker.clone();
        let container_id = self.container_id.clone();
        runtime.spawn(async move {
            let kill = ExecConfig {
                user: Some(SANDBOX_USER.to_string()),
                cmd: Some(vec![
                    "sh".to_string(),
                    "-c".to_string(),
                    r#"kill -KILL "-$(cat "$0")" 2>/dev/null; rm -f "$0""#.to_string(),
                    marker,
                ]),
                ..Default::default()
            };
            if let Ok(exec) = docker.create_exec(&container_id, kill).await {
                let _ = docker.start_exec(&exec.id, None).await;
            }
        });
    }
}

/// A tar of the files, with their parent folders, owned by the sandbox user.
fn workspace_tar(files: &[FileWrite], uid: u64, gid: u64) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut folders = std::collections::BTreeSet::new();
    for file in files {
        let relative = file.path.relative();
        let parts: Vec<&str> = relative.split('/').collect();
        for depth in 1..parts.len() {
            let folder = parts[..depth].join("/");
            if folders.insert(folder.clone()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_uid(uid);
                header.set_gid(gid);
                header.set_size(0);
                header.set_mtime(now());
                header.set_cksum();
                builder.append_data(&mut header, format!("{folder}/"), std::io::empty())?;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(file.content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(now());
        header.set_cksum();
        builder.append_data(&mut header, relative, file.content.as_slice())?;
    }
    builder.into_inner()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

pub(super) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
