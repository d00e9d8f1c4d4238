//! A process-local sandbox for core tests: each project gets a temporary folder that stands
//! for `/home/user`, and commands run there with bash. It exists so the job pipeline can be
//! tested without Docker; the real backends have their own suites.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use codeflux::sandbox::{
    Acquired, CommandOutput, FileWrite, PreviewUpstream, Sandbox, SandboxError, SandboxProvider,
    WorkspacePath,
};
use uuid::Uuid;

pub struct HostSandbox {
    id: String,
    root: PathBuf,
}

#[async_trait]
impl Sandbox for HostSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, SandboxError> {
        let child = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(command)
            .current_dir(&self.root)
            .env("HOME", &self.root)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|error| SandboxError::Backend(error.to_string()))?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Err(_) => Err(SandboxError::Timeout(timeout)),
            Ok(Err(error)) => Err(SandboxError::Backend(error.to_string())),
            Ok(Ok(output)) => Ok(CommandOutput {
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                exit_code: output.status.code().unwrap_or(-1) as i64,
            }),
        }
    }

    async fn write_files(&self, files: &[FileWrite]) -> Result<(), SandboxError> {
        for file in files {
            let target = self.root.join(file.path.relative());
            std::fs::create_dir_all(target.parent().unwrap()).map_err(backend)?;
            std::fs::write(target, &file.content).map_err(backend)?;
        }
        Ok(())
    }

    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        std::fs::read(self.root.join(path.relative())).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => SandboxError::FileNotFound(path.to_string()),
            _ => backend(error),
        })
    }

    fn native_url(&self, port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    async fn extend(&self, _lifetime: Duration) -> Result<(), SandboxError> {
        Ok(())
    }

    async fn kill(&self) -> Result<(), SandboxError> {
        let _ = std::fs::remove_dir_all(&self.root);
        Ok(())
    }
}

fn backend(error: std::io::Error) -> SandboxError {
    SandboxError::Backend(error.to_string())
}

/// Hands out one [`HostSandbox`] per project, under one temporary folder.
pub struct HostSandboxes {
    base: tempfile::TempDir,
    live: Mutex<HashMap<Uuid, Arc<HostSandbox>>>,
    pub created: Mutex<u32>,
}

impl HostSandboxes {
    pub fn new() -> Arc<Self> {
        Self::in_folder(tempfile::tempdir().unwrap())
    }

    /// Workspaces under `base` (e.g. a small file system, to see a full disk).
    pub fn in_folder(base: tempfile::TempDir) -> Arc<Self> {
        Arc::new(Self {
            base,
            live: Mutex::default(),
            created: Mutex::new(0),
        })
    }

    /// The folder standing for a project's `/home/user`.
    pub fn workspace(&self, project_id: Uuid) -> PathBuf {
        self.base.path().join(project_id.to_string())
    }

    /// Simulates the sandbox expiring: its files are gone and the next use starts fresh.
    pub fn expire(&self, project_id: Uuid) {
        self.live.lock().unwrap().remove(&project_id);
        let _ = std::fs::remove_dir_all(self.workspace(project_id));
    }

    pub fn base(&self) -> &Path {
        self.base.path()
    }
}

#[async_trait]
impl SandboxProvider for HostSandboxes {
    fn name(&self) -> &'static str {
        "host-test"
    }

    async fn acquire(&self, project_id: Uuid) -> Result<Acquired, SandboxError> {
        let mut live = self.live.lock().unwrap();
        if let Some(sandbox) = live.get(&project_id) {
            return Ok(Acquired {
                sandbox: sandbox.clone(),
                created: false,
            });
        }
        let root = self.workspace(project_id);
        std::fs::create_dir_all(&root).map_err(backend)?;
        let sandbox = Arc::new(HostSandbox {
            id: format!("host-{project_id}"),
            root,
        });
        live.insert(project_id, sandbox.clone());
        *self.created.lock().unwrap() += 1;
        Ok(Acquired {
            sandbox,
            created: true,
        })
    }

    async fn preview_upstream(
        &self,
        _project_id: Uuid,
    ) -> Result<Option<PreviewUpstream>, SandboxError> {
        Ok(None)
    }

    async fn release(&self, project_id: Uuid) -> Result<(), SandboxError> {
        self.expire(project_id);
        Ok(())
    }
}
