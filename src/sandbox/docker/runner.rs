//! A connection to the command runner inside a sandbox (`codeflux-runner.cjs` in the
//! template): one `docker exec` that stays attached, over which every command afterwards is a
//! JSON line out and JSON lines back. A command then costs no Engine API call, which is most
//! of a `terminal` round trip; the runner still kills a command's whole process group on
//! timeout, on request, and when the connection goes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::SANDBOX_USER;
use super::docker_error;
use crate::sandbox::output::BoundedOutput;
use crate::sandbox::{CommandOutput, SandboxError, WORKSPACE_ROOT};

/// Where the template puts the runner.
const RUNNER_PATH: &str = "/usr/local/lib/codeflux-runner.cjs";

/// Longest line the runner may send. Its output chunks are far smaller; a longer line
/// means the connection no longer speaks the protocol, and it is dropped rather than
/// buffered without end.
const MAX_FRAME_BYTES: usize = 4 << 20;

/// Splits the runner's output into lines, refusing to hold more than one frame's worth.
#[derive(Default)]
struct Lines {
    buffer: Vec<u8>,
}

impl Lines {
    /// The complete lines in what arrived so far; `Err` once a line is too long.
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, ()> {
        self.buffer.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
            lines.push(self.buffer.drain(..=end).collect());
        }
        if self.buffer.len() > MAX_FRAME_BYTES {
            self.buffer = Vec::new();
            return Err(());
        }
        Ok(lines)
    }
}

/// One line from the runner.
#[derive(Debug, Deserialize)]
struct Frame {
    id: u64,
    #[serde(default)]
    out: Option<String>,
    #[serde(default)]
    err: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    timed_out: bool,
}

/// How a command run through the runner ended.
pub(super) enum Ended {
    Exited(CommandOutput),
    TimedOut,
}

type Input = Pin<Box<dyn AsyncWrite + Send>>;

pub(super) struct Runner {
    input: tokio::sync::Mutex<Input>,
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<Frame>>>,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
}

impl Runner {
    /// Starts the runner in the container and attaches to it.
    pub(super) async fn connect(
        docker: &Docker,
        container_id: &str,
    ) -> Result<Arc<Self>, SandboxError> {
        let exec = docker
            .create_exec(
                container_id,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    // Root, so that the commands (run as the workspace's owner) cannot reach
                    // the runner's output; the container grants root only SETUID, SETGID
                    // and KILL.
                    user: Some("root".to_string()),
                    env: Some(vec![
                        format!("HOME={WORKSPACE_ROOT}"),
                        format!("USER={SANDBOX_USER}"),
                        format!("LOGNAME={SANDBOX_USER}"),
                    ]),
                    working_dir: Some(WORKSPACE_ROOT.to_string()),
                    cmd: Some(vec!["node".to_string(), RUNNER_PATH.to_string()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| SandboxError::Backend(docker_error(error)))?;
        let options = StartExecOptions {
            output_capacity: Some(1 << 20),
            ..Default::default()
        };
        let StartExecResults::Attached { mut output, input } = docker
            .start_exec(&exec.id, Some(options))
            .await
            .map_err(|error| SandboxError::Backend(docker_error(error)))?
        else {
            return Err(SandboxError::Backend(
                "the command runner did not attach".into(),
            ));
        };
        let runner = Arc::new(Self {
            input: tokio::sync::Mutex::new(input),
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            alive: Arc::new(AtomicBool::new(true)),
        });
        let reader = Arc::downgrade(&runner);
        let alive = runner.alive.clone();
        tokio::spawn(async move {
            let mut lines = Lines::default();
            while let Some(Ok(chunk)) = output.next().await {
                let LogOutput::StdOut { message } = chunk else {
                    continue;
                };
                let Ok(complete) = lines.push(&message) else {
                    tracing::warn!("the command runner sent an overlong line; reconnecting");
                    break;
                };
                for line in complete {
                    let Ok(frame) = serde_json::from_slice::<Frame>(&line) else {
                        continue;
                    };
                    let Some(runner) = reader.upgrade() else {
                        return;
                    };
                    let sender = runner.lock_pending().get(&frame.id).cloned();
                    if let Some(sender) = sender {
                        let _ = sender.send(frame);
                    }
                }
            }
            // The runner is gone (container stopped, engine away): every waiting command
            // learns it from its closed channel.
            alive.store(false, Ordering::SeqCst);
            if let Some(runner) = reader.upgrade() {
                runner.lock_pending().clear();
            }
        });
        Ok(runner)
    }

    pub(super) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::UnboundedSender<Frame>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn send(&self, message: serde_json::Value) -> Result<(), SandboxError> {
        let mut line = message.to_string();
        line.push('\n');
        let mut input = self.input.lock().await;
        input
            .write_all(line.as_bytes())
            .await
            .and(input.flush().await)
            .map_err(|error| {
                SandboxError::Unavailable(format!("the command runner is gone: {error}"))
            })
    }

    /// Runs `command` through `bash -lc` (or `argv` directly when given) in the workspace.
    /// Dropping the future kills the command.
    pub(super) async fn run(
        self: &Arc<Self>,
        command: Command<'_>,
        timeout: Duration,
        grace: Duration,
    ) -> Result<Ended, SandboxError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, mut frames) = mpsc::unbounded_channel();
        self.lock_pending().insert(id, sender);
        let mut request = serde_json::json!({
            "id": id,
            "timeout_ms": timeout.as_millis() as u64,
            "grace_ms": grace.as_millis() as u64,
        });
        match command {
            Command::Shell(text) => request["command"] = text.into(),
            Command::Argv(argv) => request["argv"] = argv.into(),
        }
        let mut abandoned = KillOnDrop {
            runner: Some(self.clone()),
            id,
        };
        self.send(request).await?;
        let (mut stdout, mut stderr) = (BoundedOutput::default(), BoundedOutput::default());
        let decode = |text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default()
        };
        while let Some(frame) = frames.recv().await {
            if let Some(out) = &frame.out {
                stdout.push(&decode(out));
            }
            if let Some(err) = &frame.err {
                stderr.push(&decode(err));
            }
            if let Some(code) = frame.code {
                abandoned.runner = None;
                self.lock_pending().remove(&id);
                return Ok(if frame.timed_out {
                    Ended::TimedOut
                } else {
                    Ended::Exited(CommandOutput {
                        stdout: stdout.into_text(),
                        stderr: stderr.into_text(),
                        exit_code: code,
                    })
                });
            }
        }
        abandoned.runner = None;
        Err(SandboxError::Unavailable(
            "the command runner stopped while the command ran".into(),
        ))
    }
}

/// What to run: a shell command line, or a program with its arguments.
pub(super) enum Command<'a> {
    Shell(&'a str),
    Argv(Vec<String>),
}

/// Kills a command whose caller stopped waiting for it (a cancelled job, a shutdown).
struct KillOnDrop {
    runner: Option<Arc<Runner>>,
    id: u64,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let (Some(runner), Ok(runtime)) =
            (self.runner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let id = self.id;
        runner.lock_pending().remove(&id);
        runtime.spawn(async move {
            let _ = runner.send(serde_json::json!({ "kill": id })).await;
        });
    }
}

/// The live runner of each container, shared by every handle on it.
#[derive(Default)]
pub(super) struct Runners {
    by_container: tokio::sync::Mutex<HashMap<String, Arc<Runner>>>,
}

impl Runners {
    /// The container's runner, started (again) when there is none or it stopped.
    pub(super) async fn get(
        &self,
        docker: &Docker,
        container_id: &str,
    ) -> Result<Arc<Runner>, SandboxError> {
        let mut runners = self.by_container.lock().await;
        runners.retain(|_, runner| runner.is_alive());
        if let Some(runner) = runners.get(container_id) {
            return Ok(runner.clone());
        }
        let runner = Runner::connect(docker, container_id).await?;
        runners.insert(container_id.to_string(), runner.clone());
        Ok(runner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_an_endless_one_is_refused() {
        let mut lines = Lines::default();
        assert_eq!(
            lines.push(b"{\"id\":1}\n{\"id\"").unwrap(),
            vec![b"{\"id\":1}\n".to_vec()]
        );
        assert_eq!(
            lines.push(b":2}\n").unwrap(),
            vec![b"{\"id\":2}\n".to_vec()]
        );
        let chunk = vec![b'a'; 1 << 20];
        let mut refused = false;
        for _ in 0..8 {
            if lines.push(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a line without end is not buffered past the limit");
        assert!(
            lines.buffer.capacity() <= MAX_FRAME_BYTES,
            "and its memory is given back"
        );
    }
}
