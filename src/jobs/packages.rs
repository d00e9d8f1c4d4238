//! The app's own packages in the sandbox a job or a visit works in (see [`crate::packages`]):
//! installed when a fresh sandbox or a restore needs them, and the dev server restarted on
//! them, since it had loaded the packages it found at its start.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::agent::dev_server::{self, Watch};
use crate::events::EventKind;
use crate::packages::{Installed, Manifests};
use crate::sandbox::{Sandbox, SandboxError};
use crate::store::{Job, Message, MessageType};

use super::{Generation, JobError};

/// How an install failure's message starts: the page offers "Fix the install" on it.
pub const INSTALL_FAILED: &str = "The app's packages could not be installed";
/// How a failed first start's message starts (also offered to the agent).
pub const START_FAILED: &str = "The app was installed but does not start";
/// Whether `message` is an imported app's failed install or first start, which the page
/// offers to send to the agent ("Fix the install").
pub fn offers_install_fix(message: &Message) -> bool {
    message.kind == MessageType::Error
        && (message.content.starts_with(INSTALL_FAILED)
            || message.content.starts_with(START_FAILED))
}

/// A dev server's first compile of a whole app on a busy machine.
const FIRST_START: Duration = Duration::from_secs(240);

/// An imported app is the whole app: the template's own files (its pages, configs and UI
/// kit) would mix with it, so they go (from the workspace, the commands' folder) before its
/// files are written. Its installed packages stay, for the install to reuse what it can.
pub(super) async fn clear_template(sandbox: &dyn Sandbox) -> Result<(), SandboxError> {
    let output = sandbox
        .run(
            "find . -mindepth 1 -maxdepth 1 ! -name node_modules ! -name .data -exec rm -rf -- {} +",
            Duration::from_secs(120),
        )
        .await?;
    if output.success() {
        Ok(())
    } else {
        Err(SandboxError::Backend(format!(
            "could not clear the template's files: {}",
            output.stderr.trim()
        )))
    }
}

impl Generation {
    /// An import's first job: a sandbox with the app's files and its own packages, then
    /// its first start, each a progress step. A failure is answered with the log, which
    /// "Fix the install" sends to the agent.
    pub(super) async fn install_and_start(&self, job: &Job) -> Result<Message, JobError> {
        // The preview waits for this job (it wakes no sandbox meanwhile), so the sandbox
        // is made here, unless the job is run again after a restart: then it starts over.
        if job.attempts > 1
            && let Some(provider) = &self.sandboxes
        {
            provider.release(job.project_id).await?;
        }
        let prepared = self.prepare_sandbox(job.project_id).await?;
        self.publish(
            job,
            EventKind::SandboxReady {
                backend: prepared.backend.to_string(),
                created: prepared.created,
                restored_files: prepared.restored_files,
            },
        );
        let installed = match &prepared.installed {
            Some(outcome) => {
                self.publish(job, event(outcome));
                match outcome {
                    Ok(installed) => format!(
                        "Installed the app's packages ({}, {} s)",
                        installed.command,
                        installed.took.as_secs()
                    ),
                    Err(error) => {
                        return self.answer(
                            job,
                            MessageType::Error,
                            format!("{INSTALL_FAILED}. {error}"),
                        );
                    }
                }
            }
            None => "The app runs the packages the sandbox has".to_string(),
        };
        let sandbox = prepared.sandbox.as_ref();
        if !dev_server::supervised(sandbox).await {
            return self.answer(
                job,
                MessageType::Result,
                format!("{installed}. This sandbox has no CodeFlux dev server, so the app's start was not checked."),
            );
        }
        self.publish(job, EventKind::Checking);
        let status = first_answer(sandbox).await?;
        if status.is_some_and(|code| code < 500) {
            self.publish(job, EventKind::CheckPassed);
            let code = status.unwrap_or_default();
            return self.answer(
                job,
                MessageType::Result,
                format!("{installed} and started it: its home page answers (HTTP {code})."),
            );
        }
        let log = dev_server::log_tail(sandbox).await.unwrap_or_default();
        let how = match status {
            Some(code) => format!("its home page answers HTTP {code}"),
            None => format!(
                "its dev server did not answer within {} s",
                FIRST_START.as_secs()
            ),
        };
        self.publish(
            job,
            EventKind::CheckFailed {
                summary: how.clone(),
                fixing: false,
            },
        );
        self.answer(
            job,
            MessageType::Error,
            format!(
                "{START_FAILED}: {how}. The end of the dev server's log:\n{}",
                log.trim_end()
            ),
        )
    }

    fn answer(&self, job: &Job, kind: MessageType, content: String) -> Result<Message, JobError> {
        let (message, _) =
            self.store
                .add_assistant_message(job.project_id, kind, &content, None, None)?;
        Ok(message)
    }
}

/// The home page's HTTP status once the dev server answers it, or `None` if it never does.
async fn first_answer(sandbox: &dyn Sandbox) -> Result<Option<u16>, SandboxError> {
    let seconds = FIRST_START.as_secs();
    let output = sandbox
        .run(
            &format!(
                "end=$((SECONDS + {seconds})); while [ $SECONDS -lt $end ]; do \
                 code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 120 http://127.0.0.1:3000/ 2>/dev/null); \
                 [ \"$code\" != 000 ] && echo \"$code\" && exit 0; sleep 1; done; echo 000"
            ),
            FIRST_START + Duration::from_secs(150),
        )
        .await?;
    Ok(output
        .stdout
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|code| *code != 0))
}

/// A cold install of a whole app over a slow registry takes minutes.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Installs what `files` ask for over what the sandbox has installed (`installed`). `None`
/// when nothing had to change; a failure is told, not raised: the sandbox still holds the
/// app's files, and the dev server's error page and the agent's checks say what is missing.
/// `own_app` for an app that brought its own packages: only its own files count, and its
/// lockfile is installed exactly (`npm ci`).
pub(super) async fn install_for(
    sandbox: &dyn Sandbox,
    installed: &Manifests,
    files: &BTreeMap<String, String>,
    own_app: bool,
) -> Option<Result<Installed, String>> {
    let wanted = Manifests::of(files, own_app);
    let outcome =
        crate::packages::sync(sandbox, installed, &wanted, own_app, INSTALL_TIMEOUT).await;
    match outcome {
        Ok(None) => None,
        Ok(Some(done)) => {
            let watch = Watch::start(sandbox).await;
            if let Err(error) = watch.restart(sandbox).await {
                tracing::warn!(%error, "could not restart the dev server after the install");
            }
            tracing::info!(
                command = done.command,
                seconds = done.took.as_secs(),
                "installed the app's packages"
            );
            Some(Ok(done))
        }
        Err(error) => {
            tracing::warn!(%error, "the app's packages could not be installed");
            Some(Err(error.to_string()))
        }
    }
}

/// The progress event for an install.
pub(super) fn event(outcome: &Result<Installed, String>) -> EventKind {
    match outcome {
        Ok(installed) => EventKind::PackagesInstalled {
            ok: true,
            detail: format!(
                "Installed the app's packages ({}, {} s)",
                installed.command,
                installed.took.as_secs()
            ),
        },
        Err(error) => EventKind::PackagesInstalled {
            ok: false,
            detail: error.clone(),
        },
    }
}
