//! Pushing a project's repository to its remote and taking in what changed there.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::remote::{FETCHED, Outcome, Remote};
use super::tree::{Relation, TreeFiles};
use super::{GitError, Repositories, history};
use crate::store::{Store, StoreError};

/// What a pull found on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    /// The remote has no `main` yet.
    Empty,
    /// The project already holds the remote's `main`.
    UpToDate,
    /// The remote's `main` holds something new: its files are the next version.
    New {
        commit: String,
        /// Whether the project also made versions the remote does not have.
        diverged: bool,
        files: TreeFiles,
    },
}

impl Repositories {
    pub fn remote(&self, project_id: Uuid) -> Result<Option<Remote>, GitError> {
        let Some(bytes) = self
            .remotes
            .get(project_id.as_bytes())
            .map_err(StoreError::from)?
        else {
            return Ok(None);
        };
        Ok(Some(
            serde_json::from_slice(&bytes).map_err(StoreError::from)?,
        ))
    }

    fn put_remote(&self, project_id: Uuid, remote: &Remote) -> Result<(), GitError> {
        let bytes = serde_json::to_vec(remote).map_err(StoreError::from)?;
        self.remotes
            .insert(project_id.as_bytes(), bytes)
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Sets the project's remote once it answered and took the token; a remote that does
    /// not is refused and nothing is stored. A new remote without a token keeps the old
    /// one's token when the address is the same (the form never shows it again).
    pub async fn set_remote(
        &self,
        project_id: Uuid,
        mut remote: Remote,
    ) -> Result<Remote, GitError> {
        if let Some(old) = self.remote(project_id)? {
            if remote.token.is_none() && old.url == remote.url && old.username == remote.username {
                remote.token = old.token;
            }
            if old.url == remote.url {
                remote.last_push = old.last_push;
                remote.last_pull = old.last_pull;
            }
        }
        std::fs::create_dir_all(&self.root)?;
        remote.check_access(&self.root).await?;
        self.put_remote(project_id, &remote)?;
        Ok(remote)
    }

    /// Forgets the remote (and its token). Commits made by earlier pulls stay as they are.
    pub fn remove_remote(&self, project_id: Uuid) -> Result<bool, GitError> {
        Ok(self
            .remotes
            .remove(project_id.as_bytes())
            .map_err(StoreError::from)?
            .is_some())
    }

    fn pulled(&self, project_id: Uuid) -> Result<BTreeMap<u32, String>, GitError> {
        match self
            .pulled
            .get(project_id.as_bytes())
            .map_err(StoreError::from)?
        {
            Some(bytes) => Ok(serde_json::from_slice(&bytes).map_err(StoreError::from)?),
            None => Ok(BTreeMap::new()),
        }
    }

    /// The project's commits as its versions stand, pulled versions with their parents.
    pub fn commits(
        &self,
        store: &Store,
        project_id: Uuid,
    ) -> Result<Vec<history::NewCommit>, GitError> {
        Ok(history::commits_of(
            store,
            project_id,
            &self.pulled(project_id)?,
        )?)
    }

    /// Brings the repository up to the project's versions.
    pub async fn sync_project(&self, store: &Store, project_id: Uuid) -> Result<usize, GitError> {
        let commits = self.commits(store, project_id)?;
        self.sync(project_id, &commits).await
    }

    fn record(&self, project_id: Uuid, change: impl FnOnce(&mut Remote)) -> Result<(), GitError> {
        if let Some(mut remote) = self.remote(project_id)? {
            change(&mut remote);
            self.put_remote(project_id, &remote)?;
        }
        Ok(())
    }

    /// Pushes the project's versions (`main` and every tag) to its remote. Returns what
    /// was pushed, in words; the outcome is kept with the remote either way.
    pub async fn push(&self, store: &Store, project_id: Uuid) -> Result<String, GitError> {
        let remote = self.remote(project_id)?.ok_or(GitError::NoRemote)?;
        let commits = self.commits(store, project_id)?;
        let Some(newest) = commits.last().map(|commit| commit.version) else {
            return Err(GitError::Remote(
                "there is nothing to push yet: the project has no version".into(),
            ));
        };
        let pushed = {
            let _one_at_a_time = self.syncing.lock().await;
            self.sync_held(project_id, &commits).await?;
            remote.push(&self.dir_of(project_id)).await
        };
        let outcome = match &pushed {
            Ok(()) => Outcome::now(true, format!("Pushed v{newest} to {}", remote.url)),
            Err(error) => Outcome::now(false, error.to_string()),
        };
        let message = outcome.message.clone();
        self.record(project_id, |remote| remote.last_push = Some(outcome))?;
        pushed.map(|()| message)
    }

    /// Fetches the remote's `main` and reads what it holds, if it is new to the project.
    pub async fn fetch(&self, store: &Store, project_id: Uuid) -> Result<Pulled, GitError> {
        let remote = self.remote(project_id)?.ok_or(GitError::NoRemote)?;
        let commits = self.commits(store, project_id)?;
        let _one_at_a_time = self.syncing.lock().await;
        self.sync_held(project_id, &commits).await?;
        let dir = self.dir_of(project_id);
        let fetched = remote.fetch(&dir).await;
        let pulled = match fetched {
            Ok(None) => Ok(Pulled::Empty),
            Ok(Some(commit)) => match super::tree::relation(&dir, &commit).await? {
                Relation::UpToDate => Ok(Pulled::UpToDate),
                relation => Ok(Pulled::New {
                    files: super::tree::files_at(&dir, FETCHED).await?,
                    commit,
                    diverged: relation == Relation::Diverged,
                }),
            },
            Err(error) => Err(error),
        };
        if let Err(error) = &pulled {
            let failed = Outcome::now(false, error.to_string());
            self.record(project_id, |remote| remote.last_pull = Some(failed))?;
        }
        pulled
    }

    /// After a pull made `version` from `commit`: its commit gets the remote's as a parent,
    /// and the outcome is kept with the remote.
    pub async fn pulled_into(
        &self,
        store: &Store,
        project_id: Uuid,
        version: u32,
        commit: &str,
        message: &str,
    ) -> Result<(), GitError> {
        self.record_pulled(project_id, version, commit)?;
        self.sync_project(store, project_id).await?;
        let outcome = Outcome::now(true, message);
        self.record(project_id, |remote| remote.last_pull = Some(outcome))
    }

    /// Notes that `version` holds the remote `commit` (its commit gets it as a parent).
    pub(super) fn record_pulled(
        &self,
        project_id: Uuid,
        version: u32,
        commit: &str,
    ) -> Result<(), GitError> {
        let mut pulled = self.pulled(project_id)?;
        pulled.insert(version, commit.to_string());
        let bytes = serde_json::to_vec(&pulled).map_err(StoreError::from)?;
        self.pulled
            .insert(project_id.as_bytes(), bytes)
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Keeps a pull's outcome that made no version (nothing new, or nothing to take).
    pub fn pull_told(&self, project_id: Uuid, ok: bool, message: &str) -> Result<(), GitError> {
        let outcome = Outcome::now(ok, message);
        self.record(project_id, |remote| remote.last_pull = Some(outcome))
    }
}
