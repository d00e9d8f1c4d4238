//! The app's npm packages. A sandbox image comes with the template's packages installed; an
//! app that adds some (`npm install zod`) carries its `package.json` and lockfile in every
//! version from then on, and a sandbox whose installed packages are not the version's (a
//! fresh one, or one a restore went back in) installs them before the app is served. So a
//! revived sandbox, a restore, a publish build and a zip all run the packages the app had.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::sandbox::{FileWrite, Sandbox, SandboxError, WorkspacePath, template};

/// The files that say which packages an app runs.
pub const MANIFEST: &str = "package.json";
pub const LOCKFILE: &str = "package-lock.json";

/// The install's output kept for the person and the agent: its end says what failed.
const LOG_LINES: usize = 40;
const LOG: &str = "/tmp/codeflux-install.log";

#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("`{command}` failed (exit code {code}). The end of its output:\n{log}")]
    Failed {
        command: String,
        code: i64,
        log: String,
    },
}

/// The two files as an app has them; `None` where it has none of its own (the template's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifests {
    pub manifest: Option<String>,
    pub lockfile: Option<String>,
}

impl Manifests {
    /// The template's own: what a fresh sandbox has installed.
    pub fn template() -> Self {
        let text =
            |name: &str| template::file(name).and_then(|bytes| String::from_utf8(bytes).ok());
        Self {
            manifest: text(MANIFEST),
            lockfile: text(LOCKFILE),
        }
    }

    /// What a version's files ask for: its own files, the template's where it has none.
    pub fn of_version(files: &BTreeMap<String, String>) -> Self {
        let template = Self::template();
        Self {
            manifest: files.get(MANIFEST).cloned().or(template.manifest),
            lockfile: files.get(LOCKFILE).cloned().or(template.lockfile),
        }
    }

    /// What an app brought in whole asks for: only its own files (an app without a lockfile
    /// has none, and is never given the template's).
    pub fn of_own_app(files: &BTreeMap<String, String>) -> Self {
        Self {
            manifest: files.get(MANIFEST).cloned(),
            lockfile: files.get(LOCKFILE).cloned(),
        }
    }

    /// [`Self::of_own_app`] for an app brought in whole, else [`Self::of_version`].
    pub fn of(files: &BTreeMap<String, String>, own_app: bool) -> Self {
        if own_app {
            Self::of_own_app(files)
        } else {
            Self::of_version(files)
        }
    }

    /// Whether these are the template's packages, which every sandbox image holds.
    pub fn are_the_templates(&self) -> bool {
        *self == Self::template()
    }

    /// Whether a sandbox with `installed` must install to run these: the packages named
    /// differ. A lockfile that only moved (same packages) needs nothing.
    pub fn need_install_over(&self, installed: &Manifests) -> bool {
        self.lockfile != installed.lockfile
            || packages(self.manifest.as_deref()) != packages(installed.manifest.as_deref())
    }
}

/// The `dependencies` and `devDependencies` of a `package.json`.
fn packages(manifest: Option<&str>) -> Option<(serde_json::Value, serde_json::Value)> {
    let json: serde_json::Value = serde_json::from_str(manifest?).ok()?;
    Some((
        json["dependencies"].clone(),
        json["devDependencies"].clone(),
    ))
}

/// After a job: the two files as the sandbox now has them, each `Some` when it is the
/// app's own (differs from the template's) and `None` when the version needs no copy.
pub async fn read_back(
    sandbox: &dyn Sandbox,
) -> Result<Vec<(&'static str, Option<String>)>, SandboxError> {
    let template = Manifests::template();
    let mut files = Vec::new();
    for (name, templates) in [(MANIFEST, template.manifest), (LOCKFILE, template.lockfile)] {
        let content = match sandbox.read_file(&WorkspacePath::parse(name)?).await {
            Ok(bytes) => String::from_utf8(bytes).ok(),
            Err(SandboxError::FileNotFound(_)) => None,
            Err(error) => return Err(error),
        };
        files.push((
            name,
            content.filter(|content| Some(content) != templates.as_ref()),
        ));
    }
    Ok(files)
}

/// How an install went.
#[derive(Debug, Clone)]
pub struct Installed {
    pub command: &'static str,
    pub took: Duration,
    /// The end of npm's output.
    pub log: String,
}

/// Makes the sandbox run `wanted` when it holds `installed`: writes the two files (the
/// template's where the app has none) and installs. `None` when nothing had to change.
/// `exact` installs exactly the lockfile (`npm ci`, for an app that brought its own);
/// otherwise `npm install` adds and removes only what changed, which is far quicker over
/// the template's packages.
pub async fn sync(
    sandbox: &dyn Sandbox,
    installed: &Manifests,
    wanted: &Manifests,
    exact: bool,
    timeout: Duration,
) -> Result<Option<Installed>, PackagesError> {
    if !wanted.need_install_over(installed) {
        return Ok(None);
    }
    let mut writes = Vec::new();
    for (name, content) in [(MANIFEST, &wanted.manifest), (LOCKFILE, &wanted.lockfile)] {
        if let Some(content) = content {
            writes.push(FileWrite {
                path: WorkspacePath::parse(name)?,
                content: content.clone().into_bytes(),
            });
        }
    }
    sandbox.write_files(&writes).await?;
    let command = if exact && wanted.lockfile.is_some() {
        "npm ci --no-audit --no-fund"
    } else {
        "npm install --no-audit --no-fund"
    };
    install(sandbox, command, timeout).await.map(Some)
}

async fn install(
    sandbox: &dyn Sandbox,
    command: &'static str,
    timeout: Duration,
) -> Result<Installed, PackagesError> {
    let started = Instant::now();
    let output = sandbox
        .run(
            &format!(
                "{command} > {LOG} 2>&1; code=$?; tail -n {LOG_LINES} {LOG} | cut -c 1-400; exit $code"
            ),
            timeout,
        )
        .await?;
    let log = output.stdout.trim_end().to_string();
    if !output.success() {
        return Err(PackagesError::Failed {
            command: command.to_string(),
            code: output.exit_code,
            log,
        });
    }
    Ok(Installed {
        command,
        took: started.elapsed(),
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(path, content)| (path.to_string(), content.to_string()))
            .collect()
    }

    #[test]
    fn a_version_without_its_own_files_runs_the_templates_packages() {
        let version = Manifests::of_version(&files(&[("app/page.tsx", "x")]));
        assert!(version.are_the_templates());
        assert!(!version.need_install_over(&Manifests::template()));
    }

    #[test]
    fn an_added_package_needs_an_install_and_a_reformatted_manifest_does_not() {
        let template = Manifests::template();
        let mut manifest: serde_json::Value =
            serde_json::from_str(template.manifest.as_deref().unwrap()).unwrap();
        let reformatted = serde_json::to_string(&manifest).unwrap();
        let same = Manifests::of_version(&files(&[(MANIFEST, &reformatted)]));
        assert!(!same.are_the_templates());
        assert!(!same.need_install_over(&template));

        manifest["dependencies"]["is-odd"] = "^3.0.1".into();
        let added = serde_json::to_string_pretty(&manifest).unwrap();
        let added = Manifests::of_version(&files(&[(MANIFEST, &added), (LOCKFILE, "{}")]));
        assert!(added.need_install_over(&template));
        // Going back to a version without the package installs again.
        assert!(template.need_install_over(&added));
    }

    #[test]
    fn an_own_app_without_a_lockfile_is_never_given_the_templates() {
        let app = files(&[(MANIFEST, r#"{"dependencies":{"next":"14.2.35"}}"#)]);
        let own = Manifests::of(&app, true);
        assert_eq!(own.lockfile, None);
        assert!(own.need_install_over(&Manifests::template()));
        assert!(Manifests::of(&app, false).lockfile.is_some());
    }
}
