//! The sandbox's dev server as the agent sees it. In the template a supervisor keeps it
//! running (`sandbox-templates/nextjs/codeflux-supervisor.cjs`): a dev server that exits is
//! restarted, and the sandbox lives on. What the model must hear is that it exited, why, and
//! what its log said, once, right after the command that caused it or at the next check.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::{Sandbox, SandboxError};

/// The dev server's output, with a line for every exit and restart.
pub const LOG: &str = "/tmp/codeflux-dev.log";
const STATUS: &str = "/tmp/codeflux-dev-server.json";
const PID: &str = "/tmp/codeflux-dev-server.pid";
const LOG_LINES: usize = 25;
const QUICK: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize)]
struct Status {
    state: String,
    restarts: u32,
    #[serde(default)]
    last_exit: Option<Exit>,
}

#[derive(Debug, Clone, Deserialize)]
struct Exit {
    code: Option<i32>,
    signal: Option<String>,
    #[serde(default)]
    ran_ms: u64,
}

impl Exit {
    fn describe(&self) -> String {
        let how = match (&self.signal, self.code) {
            (Some(signal), _) => format!("killed by {signal}"),
            (None, Some(code)) => format!("exit code {code}"),
            (None, None) => "no exit code".to_string(),
        };
        format!("{how}, after {} s", self.ran_ms / 1000)
    }
}

/// Follows the dev server through one job.
pub struct Watch {
    /// Restarts the model has been told about.
    told: AtomicU32,
}

impl Watch {
    /// Restarts from before the job are old news. A sandbox that is still starting has no
    /// status yet, and one without the supervisor (another template) never has.
    pub async fn start(sandbox: &dyn Sandbox) -> Self {
        let status = status(sandbox).await;
        Self {
            told: AtomicU32::new(status.map_or(0, |status| status.restarts)),
        }
    }

    /// What the model has not heard yet: the dev server exited (and was restarted), or it is
    /// not running; with the last lines of its log. `None` when all is well.
    pub async fn news(&self, sandbox: &dyn Sandbox) -> Result<Option<String>, SandboxError> {
        let Some(status) = status(sandbox).await else {
            return Ok(None);
        };
        let told = self.told.swap(status.restarts, Ordering::Relaxed);
        let exits = status.restarts.saturating_sub(told);
        if exits == 0 && status.state == "running" {
            return Ok(None);
        }
        let last = status
            .last_exit
            .as_ref()
            .map_or_else(String::new, |exit| format!(" ({})", exit.describe()));
        let mut text = if exits == 0 {
            format!("The dev server is not running{last}.")
        } else if exits == 1 {
            format!("The dev server exited{last}.")
        } else {
            format!("The dev server exited {exits} times; the last time{last}.")
        };
        text.push_str(if status.state == "running" {
            " It was restarted automatically and runs again; if a command of yours stopped it, do not do that again."
        } else {
            " It is restarted automatically after a short wait; if it keeps exiting, the cause is in its log."
        });
        let log = log_tail(sandbox).await?;
        if !log.trim().is_empty() {
            text.push_str(&format!("\nThe last lines of its log:\n{}", log.trim_end()));
        }
        Ok(Some(text))
    }

    /// Restarts the dev server now (after installs that replaced what it had loaded).
    pub async fn restart(&self, sandbox: &dyn Sandbox) -> Result<bool, SandboxError> {
        let Some(before) = status(sandbox).await.map(|status| status.restarts) else {
            return Ok(false);
        };
        let output = sandbox
            .run(&format!("kill -HUP \"$(cat {PID})\""), QUICK)
            .await?;
        if !output.success() {
            return Ok(false);
        }
        // The restart counts once the old server has exited; it is ours, not news.
        for _ in 0..40 {
            if let Some(status) = status(sandbox).await
                && status.restarts > before
            {
                self.told.fetch_max(status.restarts, Ordering::Relaxed);
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(false)
    }
}

/// `package.json` and the installed Next.js version, to tell what a command changed.
#[derive(Debug, PartialEq)]
pub struct Packages {
    manifest: String,
    next: String,
}

impl Packages {
    pub async fn read(sandbox: &dyn Sandbox) -> Option<Self> {
        let output = sandbox
            .run(
                "sha256sum package.json 2>/dev/null; echo; grep -m1 '\"version\"' node_modules/next/package.json 2>/dev/null",
                QUICK,
            )
            .await
            .ok()?;
        let (manifest, next) = output
            .stdout
            .split_once("\n\n")
            .unwrap_or((&output.stdout, ""));
        Some(Self {
            manifest: manifest.trim().to_string(),
            next: next.trim().to_string(),
        })
    }
}

impl Watch {
    /// After a command that changed `package.json`: new packages load without a restart, but
    /// a replaced Next.js, or a dev server the install left unable to answer, needs one. A
    /// dev server's first answer can take 20 s on a busy machine (it compiles), so silence
    /// counts only after a minute. True when it was restarted.
    pub async fn restart_if_needed(&self, sandbox: &dyn Sandbox, before: &Packages) -> bool {
        let Some(after) = Packages::read(sandbox).await else {
            return false;
        };
        if after.manifest == before.manifest {
            return false;
        }
        let needed = after.next != before.next
            || !answers(sandbox, Duration::from_secs(60))
                .await
                .unwrap_or(true);
        needed && self.restart(sandbox).await.unwrap_or(false)
    }
}

/// Whether the sandbox's dev server runs under CodeFlux's supervisor (the template's
/// sandboxes do; another sandbox may not).
pub async fn supervised(sandbox: &dyn Sandbox) -> bool {
    status(sandbox).await.is_some()
}

/// Whether the dev server answers HTTP at all (any status: it may be compiling an error).
pub async fn answers(sandbox: &dyn Sandbox, wait: Duration) -> Result<bool, SandboxError> {
    let seconds = wait.as_secs().max(1);
    let output = sandbox
        .run(
            &format!(
                "end=$((SECONDS + {seconds})); while [ $SECONDS -lt $end ]; do \
                 code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://127.0.0.1:3000/__codeflux_ready 2>/dev/null); \
                 [ \"$code\" != 000 ] && echo up && exit 0; sleep 0.5; done; echo down"
            ),
            wait + QUICK,
        )
        .await?;
    Ok(output.stdout.trim() == "up")
}

/// The last lines of the dev server's log, colours removed.
pub async fn log_tail(sandbox: &dyn Sandbox) -> Result<String, SandboxError> {
    let output = sandbox
        .run(
            &format!("tail -n {LOG_LINES} {LOG} 2>/dev/null | cut -c 1-400"),
            QUICK,
        )
        .await?;
    Ok(output
        .stdout
        .lines()
        .map(super::verify::strip_ansi)
        .collect::<Vec<_>>()
        .join("\n"))
}

async fn status(sandbox: &dyn Sandbox) -> Option<Status> {
    let output = sandbox
        .run(&format!("cat {STATUS} 2>/dev/null"), QUICK)
        .await
        .ok()?;
    serde_json::from_str(output.stdout.trim()).ok()
}
