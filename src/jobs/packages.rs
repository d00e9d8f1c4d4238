//! The app's own packages in the sandbox a job or a visit works in (see [`crate::packages`]):
//! installed when a fresh sandbox or a restore needs them, and the dev server restarted on
//! them, since it had loaded the packages it found at its start.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::agent::dev_server::Watch;
use crate::events::EventKind;
use crate::packages::{Installed, Manifests};
use crate::sandbox::Sandbox;

/// A cold install of a whole app over a slow registry takes minutes.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Installs what `files` ask for over what the sandbox has installed (`installed`). `None`
/// when nothing had to change; a failure is told, not raised: the sandbox still holds the
/// app's files, and the dev server's error page and the agent's checks say what is missing.
pub(super) async fn install_for(
    sandbox: &dyn Sandbox,
    installed: &Manifests,
    files: &BTreeMap<String, String>,
) -> Option<Result<Installed, String>> {
    let wanted = Manifests::of_version(files);
    let outcome = crate::packages::sync(sandbox, installed, &wanted, false, INSTALL_TIMEOUT).await;
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
