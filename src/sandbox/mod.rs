//! The seam between the agent and the place its code runs.
//!
//! The agent and the job runner hold an `Arc<dyn SandboxProvider>` and never name a backend.
//! Each backend (`docker`, `e2b`) lives in its own module and maps its private errors into
//! [`SandboxError`], so callers match on meaning rather than on which backend failed.

pub mod conformance;
pub mod docker;
pub mod e2b;
pub mod output;
pub mod readiness;
pub mod select;
pub mod template;
pub mod workspace;

use std::time::Duration;

use async_trait::async_trait;
use std::sync::Arc;
use uuid::Uuid;

pub use workspace::{WORKSPACE_ROOT, WorkspacePath, shell_quote};

/// The port the template's dev server listens on inside every sandbox.
pub const PREVIEW_PORT: u16 = 3000;

/// Largest file the agent may write or read in one piece. Source files are far smaller;
/// anything bigger is data the model should not carry through its context.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i64,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// One file to write, with its path relative to the workspace.
#[derive(Debug, Clone)]
pub struct FileWrite {
    pub path: WorkspacePath,
    pub content: Vec<u8>,
}

/// Where the preview proxy should send a project's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewUpstream {
    /// Base URL of the dev server, e.g. `http://172.17.0.5:3000` or `https://3000-id.e2b.app`.
    pub base_url: String,
    /// Extra headers the upstream needs on every request (E2B's traffic token, for one).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox backend is not configured: {0}")]
    NotConfigured(String),
    #[error("sandbox is gone (expired or removed): {0}")]
    Gone(String),
    #[error("the sandbox backend does not answer: {0}")]
    Unavailable(String),
    #[error("file not found: {0}")]
    FileNotFound(String),
    #[error("path is outside the workspace /home/user: {0}")]
    PathEscape(String),
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    #[error("sandbox backend refused our credentials: {0}")]
    Unauthorized(String),
    #[error("sandbox backend error: {0}")]
    Backend(String),
    #[error("{path} is larger than the limit of {limit} bytes")]
    TooLarge { path: String, limit: usize },
}

/// A running sandbox: one per project, holding the Next.js workspace at `/home/user`.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// The backend's identifier (container id, E2B sandbox id).
    fn id(&self) -> &str;

    /// Runs `command` through `bash -lc` in the workspace; kills it after `timeout`.
    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, SandboxError>;

    /// Writes files, creating parent directories and overwriting existing files.
    async fn write_files(&self, files: &[FileWrite]) -> Result<(), SandboxError>;

    /// Reads one file's bytes.
    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError>;

    /// Removes files from the workspace (missing ones are fine).
    async fn remove_files(&self, paths: &[WorkspacePath]) -> Result<(), SandboxError> {
        if paths.is_empty() {
            return Ok(());
        }
        let quoted: Vec<String> = paths
            .iter()
            .map(|path| format!("'{}'", path.relative().replace('\'', r"'\''")))
            .collect();
        let output = self
            .run(
                &format!("rm -f -- {}", quoted.join(" ")),
                Duration::from_secs(60),
            )
            .await?;
        if output.success() {
            Ok(())
        } else {
            Err(SandboxError::Backend(format!(
                "could not remove files: {}",
                output.stderr.trim()
            )))
        }
    }

    /// The backend's own URL for a port (the E2B host, or the container address).
    fn native_url(&self, port: u16) -> String;

    /// Pushes the sandbox's expiry/idle deadline further out (called on activity).
    async fn extend(&self, lifetime: Duration) -> Result<(), SandboxError>;

    /// Stops and removes the sandbox.
    async fn kill(&self) -> Result<(), SandboxError>;
}

/// Finds or creates the sandbox that belongs to a project.
#[async_trait]
pub trait SandboxProvider: Send + Sync {
    /// A short name for logs and the UI ("docker", "e2b").
    fn name(&self) -> &'static str;

    /// Returns the project's running sandbox, reconnecting to or creating one as needed.
    /// `created` tells the caller whether the workspace is fresh (so files must be restored).
    async fn acquire(&self, project_id: Uuid) -> Result<Acquired, SandboxError>;

    /// Where the preview proxy reaches the project's dev server, if its sandbox is running.
    async fn preview_upstream(
        &self,
        project_id: Uuid,
    ) -> Result<Option<PreviewUpstream>, SandboxError>;

    /// Kills the project's sandbox if there is one (project deleted).
    async fn release(&self, project_id: Uuid) -> Result<(), SandboxError>;

    /// CodeFlux is stopping: stop this installation's running sandboxes (their files are
    /// kept and they are revived on next use), so nothing keeps running without a server.
    /// Returns how many were stopped. Backends whose sandboxes expire by themselves keep
    /// the default.
    async fn shutdown(&self) -> Result<usize, SandboxError> {
        Ok(0)
    }

    /// How many of this installation's sandboxes run now, for `/metrics`; `None` when the
    /// backend cannot tell cheaply.
    async fn running_count(&self) -> Option<usize> {
        None
    }

    /// Warm sandboxes ready for new projects (the Docker pool), for `/metrics`.
    fn warm_count(&self) -> usize {
        0
    }
}

impl SandboxError {
    /// The sandbox itself is lost (removed, or its engine unreachable): a job cannot go on
    /// in it, unlike a failed command or a refused path, which the model can react to.
    pub fn is_lost(&self) -> bool {
        matches!(self, SandboxError::Gone(_) | SandboxError::Unavailable(_))
    }
}

pub struct Acquired {
    pub sandbox: Arc<dyn Sandbox>,
    pub created: bool,
}
