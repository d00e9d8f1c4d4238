//! A git repository brought in as a new project: fetched with its history into a repository
//! of its own, whose files become v1 and whose commit becomes v1's parent, so the project's
//! history continues the imported one.

use std::path::PathBuf;

use uuid::Uuid;

use super::remote::Remote;
use super::tree::TreeFiles;
use super::{GitError, Repositories, git};

/// Where the imported commit is kept until v1's commit holds it.
const IMPORTED: &str = "refs/imported/head";

/// A fetched repository waiting for its project.
pub struct Fetched {
    scratch: PathBuf,
    pub commit: String,
    pub files: TreeFiles,
}

impl Repositories {
    /// Fetches `reference` (a branch or tag; the remote's default branch when `None`) from
    /// `url` with `token`, and reads its files. Nothing is kept when it fails.
    pub async fn fetch_for_import(
        &self,
        url: &str,
        token: Option<String>,
        reference: Option<&str>,
    ) -> Result<Fetched, GitError> {
        let remote = Remote::new(url, token, false)?;
        let reference = reference
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or("HEAD");
        if reference.starts_with('-') || reference.contains(char::is_whitespace) {
            return Err(GitError::BadRemote(format!(
                "{reference:?} is not a branch or tag name"
            )));
        }
        let scratch = self
            .root
            .join(format!(".import-{}.git", Uuid::now_v7().simple()));
        let fetched = async {
            self.init_bare(&scratch).await?;
            remote.fetch_reference(&scratch, reference).await?;
            let commit = git(
                &scratch,
                &["rev-parse", "--verify", "FETCH_HEAD^{commit}"],
                None,
            )
            .await?;
            let commit = commit.trim().to_string();
            git(&scratch, &["update-ref", IMPORTED, &commit], None).await?;
            let files = super::tree::files_at(&scratch, &commit).await?;
            Ok::<_, GitError>((commit, files))
        }
        .await;
        match fetched {
            Ok((commit, files)) => Ok(Fetched {
                scratch,
                commit,
                files,
            }),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&scratch);
                Err(error)
            }
        }
    }

    /// Makes a fetched repository the project's, its commit v1's parent.
    pub async fn adopt(&self, project_id: Uuid, fetched: Fetched) -> Result<(), GitError> {
        let _one_at_a_time = self.syncing.lock().await;
        std::fs::rename(&fetched.scratch, self.dir_of(project_id))?;
        self.record_pulled(project_id, 1, &fetched.commit)
    }

    /// Forgets a fetched repository whose import was refused.
    pub fn discard(&self, fetched: Fetched) {
        let _ = std::fs::remove_dir_all(&fetched.scratch);
    }
}
