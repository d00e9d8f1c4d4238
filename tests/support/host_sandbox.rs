//! A process-local sandbox for core tests: each project gets a temporary folder that stands
//! for `/home/user`, and commands run there with bash. It exists so the job pipeline can be
//! tested without Docker; the real backends have their own suites.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use codeflux::sandbox::output::BoundedOutput;
use codeflux::sandbox::{
    Acquired, CommandOutput, FileWrite, MAX_FILE_BYTES, PreviewUpstream, Sandbox, SandboxError,
    SandboxProvider, WorkspacePath,
};
use uuid::Uuid;

pub struct HostSandbox {
    id: String,
    root: PathBuf,
}

impl HostSandbox {
    /// Where `path` really is, refused when a link leads it out of the workspace (what the
    /// real backends check inside the sandbox).
    fn inside(&self, path: &WorkspacePath) -> Result<PathBuf, SandboxError> {
        let escape = || SandboxError::PathEscape(path.to_string());
        let root = self.root.canonicalize().map_err(backend)?;
        let mut existing = self.root.join(path.relative());
        let mut missing = Vec::new();
        while std::fs::symlink_metadata(&existing).is_err() {
            missing.push(existing.file_name().ok_or_else(escape)?.to_owned());
            existing.pop();
        }
        // A link that leads nowhere cannot be checked, so it is not followed.
        let real = existing.canonicalize().map_err(|_| escape())?;
        if !real.starts_with(&root) {
            return Err(escape());
        }
        Ok(missing
            .into_iter()
            .rev()
            .fold(real, |place, name| place.join(name)))
    }
}

#[async_trait]
impl Sandbox for HostSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, SandboxError> {
        // As the real backends do, commands never run as root: under root (CI) they run as
        // `nobody`, who owns the workspace; each in a process group of its own, which a
        // timeout or an abandoned call kills whole.
        let mut child = if running_as_root() {
            let mut command_line = tokio::process::Command::new("setpriv");
            command_line.args([
                &format!("--reuid={UNPRIVILEGED}"),
                &format!("--regid={UNPRIVILEGED}"),
                "--clear-groups",
                "--",
                "bash",
                "-c",
                command,
            ]);
            command_line
        } else {
            let mut command_line = tokio::process::Command::new("bash");
            command_line.arg("-c").arg(command);
            command_line
        };
        let mut child = child
            .process_group(0)
            .current_dir(&self.root)
            .env("HOME", &self.root)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|error| SandboxError::Backend(error.to_string()))?;
        let group = KillGroup(child.id());
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        // Read as it comes into bounded buffers, as the real backends do: a command that
        // prints gigabytes costs no more memory than one that prints a page.
        let collect = async {
            use tokio::io::AsyncReadExt;
            let (mut stdout, mut stderr) = (BoundedOutput::default(), BoundedOutput::default());
            let (mut out_buffer, mut err_buffer) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
            let (mut out_open, mut err_open) = (true, true);
            while out_open || err_open {
                tokio::select! {
                    read = out.read(&mut out_buffer), if out_open => match read {
                        Ok(0) | Err(_) => out_open = false,
                        Ok(n) => stdout.push(&out_buffer[..n]),
                    },
                    read = err.read(&mut err_buffer), if err_open => match read {
                        Ok(0) | Err(_) => err_open = false,
                        Ok(n) => stderr.push(&err_buffer[..n]),
                    },
                }
            }
            let status = child.wait().await;
            (stdout, stderr, status)
        };
        let outcome = tokio::time::timeout(timeout, collect).await;
        drop(group);
        match outcome {
            Err(_) => Err(SandboxError::Timeout(timeout)),
            Ok((_, _, Err(error))) => Err(SandboxError::Backend(error.to_string())),
            Ok((stdout, stderr, Ok(status))) => Ok(CommandOutput {
                stdout: stdout.into_text(),
                stderr: stderr.into_text(),
                exit_code: status.code().unwrap_or(-1) as i64,
            }),
        }
    }

    async fn write_files(&self, files: &[FileWrite]) -> Result<(), SandboxError> {
        for file in files {
            let target = self.inside(&file.path)?;
            std::fs::create_dir_all(target.parent().unwrap()).map_err(backend)?;
            std::fs::write(&target, &file.content).map_err(backend)?;
            // Files belong to the workspace's owner, as in a real sandbox.
            let mut place = target.as_path();
            while place.starts_with(&self.root) {
                give_to_sandbox_user(place).map_err(backend)?;
                let Some(parent) = place.parent() else { break };
                place = parent;
            }
        }
        Ok(())
    }

    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        let place = self.inside(path)?;
        if std::fs::metadata(&place).is_ok_and(|meta| meta.len() > MAX_FILE_BYTES as u64) {
            return Err(SandboxError::TooLarge {
                path: path.to_string(),
                limit: MAX_FILE_BYTES,
            });
        }
        std::fs::read(place).map_err(|error| match error.kind() {
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

/// The account commands run as when the tests run as root: `nobody`.
const UNPRIVILEGED: u32 = 65534;

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
        .unwrap_or(false)
}

fn give_to_sandbox_user(path: &Path) -> std::io::Result<()> {
    if running_as_root() {
        std::os::unix::fs::lchown(path, Some(UNPRIVILEGED), Some(UNPRIVILEGED))?;
    }
    Ok(())
}

/// Kills a command's whole process group when the wait for it ends (done, timed out, or
/// abandoned by a dropped future), so nothing it started outlives it.
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
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
        // The workspaces' user must be able to pass through the folder that holds them.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711));
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
        give_to_sandbox_user(&root).map_err(backend)?;
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
