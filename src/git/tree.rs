//! Reading a commit that came from elsewhere (a pull): the files it holds that may become a
//! version, and how it stands to the project's own `main`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{GitError, git};

/// Most files a pulled commit may hold.
pub const MAX_FILES: usize = 5_000;
/// Most bytes of text a pulled commit may hold in all.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// What a commit gives a version: its text files, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeFiles {
    pub files: BTreeMap<String, String>,
    /// `(path, why)`, in path order.
    pub skipped: Vec<(String, &'static str)>,
}

/// How a fetched commit stands to the project's `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// `main` already holds it.
    UpToDate,
    /// It only adds to `main` (or `main` has no commit yet).
    Ahead,
    /// Both moved on since they last met, or they never did.
    Diverged,
}

/// How `theirs` stands to `refs/heads/main` in the repository at `dir`.
pub async fn relation(dir: &Path, theirs: &str) -> Result<Relation, GitError> {
    if git(
        dir,
        &["rev-parse", "--verify", "--quiet", "refs/heads/main"],
        None,
    )
    .await
    .is_err()
    {
        return Ok(Relation::Ahead);
    }
    let is_ancestor = |older: String, newer: String| async move {
        // Exit code 1 means "no"; anything else is an error.
        match git(dir, &["merge-base", "--is-ancestor", &older, &newer], None).await {
            Ok(_) => Ok(true),
            Err(GitError::Failed { stderr, .. }) if stderr.is_empty() => Ok(false),
            Err(error) => Err(error),
        }
    };
    if is_ancestor(theirs.to_string(), "refs/heads/main".into()).await? {
        Ok(Relation::UpToDate)
    } else if is_ancestor("refs/heads/main".into(), theirs.to_string()).await? {
        Ok(Relation::Ahead)
    } else {
        Ok(Relation::Diverged)
    }
}

/// Why a path is not taken in, or `None` to take it.
fn left_out(path: &str, mode: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if path.split('/').any(|part| part == "node_modules") {
        Some("node_modules is installed, not kept")
    } else if name.starts_with(".env") {
        Some("environment files may hold secrets and are never taken in")
    } else if mode == "120000" {
        Some("a symbolic link")
    } else if mode == "160000" {
        Some("a submodule")
    } else {
        None
    }
}

/// The files of `commit`. Binary files are left out (versions hold text), as are links,
/// submodules, `node_modules` and `.env*` files; a commit over [`MAX_FILES`] or
/// [`MAX_BYTES`] is refused whole.
pub async fn files_at(dir: &Path, commit: &str) -> Result<TreeFiles, GitError> {
    let listing = git(dir, &["ls-tree", "-r", "-z", "--full-tree", commit], None).await?;
    let mut taken = Vec::new();
    let mut result = TreeFiles::default();
    for entry in listing.split('\0').filter(|entry| !entry.is_empty()) {
        let (meta, path) = entry.split_once('\t').ok_or_else(|| GitError::Failed {
            command: "ls-tree".into(),
            stderr: format!("an entry without a path: {entry}"),
        })?;
        let mut fields = meta.split(' ');
        let (mode, object) = match (fields.next(), fields.next(), fields.next()) {
            (Some(mode), Some(_kind), Some(object)) => (mode, object),
            _ => {
                return Err(GitError::Failed {
                    command: "ls-tree".into(),
                    stderr: format!("an entry that cannot be read: {entry}"),
                });
            }
        };
        match left_out(path, mode) {
            Some(why) => result.skipped.push((path.to_string(), why)),
            None => taken.push((path.to_string(), object.to_string())),
        }
    }
    if taken.len() > MAX_FILES {
        return Err(GitError::TooLarge(format!(
            "{} files, more than {MAX_FILES}",
            taken.len()
        )));
    }
    let question: String = taken
        .iter()
        .map(|(_, object)| format!("{object}\n"))
        .collect();
    let mut command = super::plain_git(dir);
    command.args(["cat-file", "--batch"]);
    let output = super::output_of(command, Some(question.as_bytes())).await?;
    if !output.status.success() {
        return Err(GitError::Failed {
            command: "cat-file".into(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let mut rest = output.stdout.as_slice();
    let mut total = 0;
    for (path, _) in taken {
        let (content, after) = next_blob(rest).ok_or_else(|| GitError::Failed {
            command: "cat-file".into(),
            stderr: format!("no content for {path}"),
        })?;
        rest = after;
        total += content.len();
        if total > MAX_BYTES {
            return Err(GitError::TooLarge(format!(
                "more than {} MB of files",
                MAX_BYTES / (1024 * 1024)
            )));
        }
        match String::from_utf8(content.to_vec()) {
            Ok(text) if !text.contains('\0') => {
                result.files.insert(path, text);
            }
            _ => result
                .skipped
                .push((path, "a binary file (versions hold text)")),
        }
    }
    result.skipped.sort();
    Ok(result)
}

/// One `cat-file --batch` answer: `<object> <type> <size>\n<content>\n`, and what follows.
fn next_blob(output: &[u8]) -> Option<(&[u8], &[u8])> {
    let header_end = output.iter().position(|byte| *byte == b'\n')?;
    let header = std::str::from_utf8(&output[..header_end]).ok()?;
    let size: usize = header.rsplit(' ').next()?.parse().ok()?;
    let start = header_end + 1;
    let content = output.get(start..start + size)?;
    let after = output.get(start + size + 1..)?;
    Some((content, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_answers_are_read_one_after_another() {
        let output = b"aaa blob 5\nhello\nbbb blob 0\n\n";
        let (first, rest) = next_blob(output).unwrap();
        assert_eq!(first, b"hello");
        let (second, rest) = next_blob(rest).unwrap();
        assert_eq!(second, b"");
        assert!(rest.is_empty());
        assert!(next_blob(b"ccc blob 10\nshort\n").is_none());
    }

    #[test]
    fn secrets_installs_links_and_submodules_stay_out() {
        assert!(left_out("app/page.tsx", "100644").is_none());
        assert!(left_out("scripts/run.sh", "100755").is_none());
        assert!(left_out(".env", "100644").is_some());
        assert!(left_out("apps/web/.env.local", "100644").is_some());
        assert!(left_out("node_modules/react/index.js", "100644").is_some());
        assert!(left_out("public/logo", "120000").is_some());
        assert!(left_out("vendor/lib", "160000").is_some());
    }
}
