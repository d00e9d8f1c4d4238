//! Every project as a git repository: each version a commit on `main`, tagged `v1`, `v2`, …,
//! kept in the data directory and served read-only over git's smart HTTP protocol.
//!
//! It uses the `git` binary: serving a clone needs `git upload-pack` (through
//! `git http-backend`), which no Rust implementation provides, and `git fast-import` writes a
//! version's commit in one process whatever its number of files. The repository is a
//! projection of the store: commits are made from versions, never the other way round, and
//! the same versions always make the same commits, so a lost repository is rebuilt as it was.

mod exchange;
pub mod history;
pub mod http;
pub mod import;
pub mod remote;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use uuid::Uuid;

pub use exchange::Pulled;
pub use history::NewCommit;

/// Who CodeFlux's commits are by.
const AUTHOR: &str = "CodeFlux <codeflux@localhost>";

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git is not installed or does not run ({0}); install git to clone projects")]
    NoGit(String),
    #[error("git {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("could not use the repository folder: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the remote's address is not usable: {0}")]
    BadRemote(String),
    #[error("{0}")]
    Refused(String),
    #[error("the remote has commits this project does not have: pull first, then push")]
    Behind,
    #[error("{0}")]
    Remote(String),
    #[error("the remote's main is too large to take in: {0}")]
    TooLarge(String),
    #[error("this project has no remote; set one first")]
    NoRemote,
}

/// The projects' repositories, one bare repository per project under `root`, and their
/// remotes.
pub struct Repositories {
    root: PathBuf,
    /// One git operation at a time: fast-import, fetches and ref updates must not interleave.
    syncing: tokio::sync::Mutex<()>,
    /// `project_id` → its [`remote::Remote`].
    remotes: sled::Tree,
    /// `project_id` → the versions its pulls made (version number → remote commit). Kept
    /// apart from the remote: these commits stay what they are when the remote goes.
    pulled: sled::Tree,
}

impl Repositories {
    pub fn new(root: PathBuf, store: &crate::store::Store) -> crate::store::StoreResult<Self> {
        Ok(Self {
            root,
            syncing: tokio::sync::Mutex::new(()),
            remotes: store.tree("git_remotes")?,
            pulled: store.tree("git_pulled")?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<project id>.git`
    pub fn dir_of(&self, project_id: Uuid) -> PathBuf {
        self.root.join(format!("{project_id}.git"))
    }

    /// Removes a deleted project's repository (it is made again from versions, so a failure
    /// only leaves files behind).
    pub async fn remove(&self, project_id: Uuid) {
        let _one_at_a_time = self.syncing.lock().await;
        for tree in [&self.remotes, &self.pulled] {
            if let Err(error) = tree.remove(project_id.as_bytes()) {
                tracing::warn!(%error, %project_id, "could not forget a deleted project's remote");
            }
        }
        let dir = self.dir_of(project_id);
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %dir.display(), "could not remove a deleted project's repository");
        }
    }

    /// Makes an empty bare repository with `main` at `dir`, under the root.
    async fn init_bare(&self, dir: &Path) -> Result<(), GitError> {
        std::fs::create_dir_all(&self.root)?;
        let dir = dir.to_string_lossy();
        let args = ["init", "--quiet", "--bare", "--initial-branch=main", &dir];
        git(&self.root, &args, None).await.map(|_| ())
    }

    /// Brings the project's repository up to its versions: commits and tags the ones it does
    /// not have yet. Returns how many commits were made.
    pub async fn sync(&self, project_id: Uuid, commits: &[NewCommit]) -> Result<usize, GitError> {
        let _one_at_a_time = self.syncing.lock().await;
        self.sync_held(project_id, commits).await
    }

    /// [`Self::sync`], for a caller that holds `syncing`.
    async fn sync_held(&self, project_id: Uuid, commits: &[NewCommit]) -> Result<usize, GitError> {
        let dir = self.dir_of(project_id);
        if !dir.join("HEAD").exists() {
            let scratch = self.root.join(format!(".{project_id}.git.new"));
            let _ = std::fs::remove_dir_all(&scratch);
            self.init_bare(&scratch).await?;
            // Made aside and moved in, so a repository is never seen half made.
            std::fs::rename(&scratch, &dir)?;
        }
        let tagged = git(&dir, &["tag", "--list", "v*"], None).await?;
        let have = tagged
            .lines()
            .filter_map(|tag| tag.trim().strip_prefix('v')?.parse::<u32>().ok())
            .max()
            .unwrap_or(0);
        let mut new: Vec<NewCommit> = commits
            .iter()
            .filter(|c| c.version > have)
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(0);
        }
        // A repository made again after it was lost lacks the pulled commits: those
        // versions are then commits of their own.
        for commit in &mut new {
            if let Some(merge) = &commit.merge {
                let object = format!("{merge}^{{commit}}");
                if git(&dir, &["cat-file", "-e", &object], None).await.is_err() {
                    commit.merge = None;
                }
            }
        }
        let new: Vec<&NewCommit> = new.iter().collect();
        let stream = fast_import_stream(&new, have > 0);
        git(&dir, &["fast-import", "--quiet", "--done"], Some(&stream)).await?;
        Ok(new.len())
    }
}

/// The fast-import commands that add `commits` on `main` (after its head when `on_top`),
/// each with its whole tree and a lightweight tag `v<N>`.
fn fast_import_stream(commits: &[&NewCommit], on_top: bool) -> Vec<u8> {
    let mut stream = Vec::new();
    for (index, commit) in commits.iter().enumerate() {
        let mark = index + 1;
        let when = format!("{} +0000", commit.time.timestamp());
        stream.extend_from_slice(
            format!(
                "commit refs/heads/main\nmark :{mark}\nauthor {AUTHOR} {when}\ncommitter {AUTHOR} {when}\n"
            )
            .as_bytes(),
        );
        data(&mut stream, commit.message.as_bytes());
        let follows_main = index == 0 && on_top;
        if follows_main {
            stream.extend_from_slice(b"from refs/heads/main^0\n");
        }
        if let Some(merge) = &commit.merge {
            // The first commit of all has no parent of its own to follow.
            let first_of_all = index == 0 && !on_top;
            let kind = if first_of_all { "from" } else { "merge" };
            stream.extend_from_slice(format!("{kind} {merge}\n").as_bytes());
        }
        stream.extend_from_slice(b"deleteall\n");
        for (path, content) in &commit.files {
            stream.extend_from_slice(format!("M 100644 inline {}\n", quote_path(path)).as_bytes());
            data(&mut stream, content);
        }
        stream.extend_from_slice(
            format!("\nreset refs/tags/v{}\nfrom :{mark}\n\n", commit.version).as_bytes(),
        );
    }
    stream.extend_from_slice(b"done\n");
    stream
}

fn data(stream: &mut Vec<u8>, bytes: &[u8]) {
    stream.extend_from_slice(format!("data {}\n", bytes.len()).as_bytes());
    stream.extend_from_slice(bytes);
    stream.push(b'\n');
}

/// A path as fast-import reads it: C-style quoted when it could be misread.
fn quote_path(path: &str) -> String {
    if !path.starts_with('"') && !path.contains(['\n', '\\']) {
        return path.to_string();
    }
    let mut quoted = String::from("\"");
    for c in path.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The environment every git command here runs in: no user or system configuration, so
/// the same versions make the same commits on every machine.
pub(crate) fn plain_git(dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .kill_on_drop(true);
    command
}

async fn git(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Result<String, GitError> {
    let mut command = plain_git(dir);
    command.args(args);
    let output = output_of(command, input).await?;
    if !output.status.success() {
        return Err(GitError::Failed {
            command: args.first().copied().unwrap_or_default().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a git command to its end, feeding it `input`; its status and output whatever they are.
async fn output_of(
    mut command: tokio::process::Command,
    input: Option<&[u8]>,
) -> Result<std::process::Output, GitError> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|error| GitError::NoGit(error.to_string()))?;
    // Fed while its output is read: a large answer must not block a large question.
    let stdin = child.stdin.take();
    let feed = async move {
        if let (Some(input), Some(mut stdin)) = (input, stdin) {
            stdin.write_all(input).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (fed, output) = tokio::join!(feed, child.wait_with_output());
    let output = output?;
    // A git that stopped early closes its input; its own error says why.
    if output.status.success() {
        fed?;
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_be_misread_are_quoted() {
        assert_eq!(quote_path("app/my page.tsx"), "app/my page.tsx");
        assert_eq!(quote_path("\"odd\".txt"), "\"\\\"odd\\\".txt\"");
        assert_eq!(quote_path("a\\b"), "\"a\\\\b\"");
    }
}
