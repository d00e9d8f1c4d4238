//! Files a job removed from the workspace (an `rm` in one of the model's commands), so the
//! version it makes leaves them out too and its changes say so.

use std::time::Duration;

use crate::sandbox::{Sandbox, SandboxError, WorkspacePath, shell_quote};

/// One shell loop over every path: a second at most, whatever the number of files.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Which of `paths` no longer exist in the sandbox.
pub(super) async fn missing_files<'a>(
    sandbox: &dyn Sandbox,
    paths: impl Iterator<Item = &'a String>,
) -> Result<Vec<String>, SandboxError> {
    let quoted: Vec<String> = paths
        .filter_map(|path| WorkspacePath::parse(path).ok())
        // Commands run in the workspace, so relative paths name its files on every backend.
        .map(|path| shell_quote(path.relative()))
        .collect();
    if quoted.is_empty() {
        return Ok(Vec::new());
    }
    let command = format!(
        "for f in {}; do [ -e \"$f\" ] || [ -L \"$f\" ] || printf '%s\\n' \"$f\"; done",
        quoted.join(" ")
    );
    let output = sandbox.run(&command, CHECK_TIMEOUT).await?;
    if !output.success() {
        return Err(SandboxError::Backend(format!(
            "could not check which files are still there: {}",
            output.stderr.trim()
        )));
    }
    Ok(output
        .stdout
        .lines()
        .filter_map(|line| WorkspacePath::parse(line).ok())
        .map(|path| path.relative().to_string())
        .collect())
}
