//! Versions made without a job: a restore, a quick edit, a pull. Each is stored first,
//! then put in the sandbox; a sandbox that cannot take it is replaced.

use uuid::Uuid;

use super::generation::file_writes;
use super::{Generation, JobError};
use crate::sandbox::{FileWrite, SandboxError, WorkspacePath};
use crate::store::StoreError;
use crate::store::snapshots::SnapshotKind;

impl Generation {
    /// Makes an earlier version the newest and puts its files in the sandbox: written over
    /// what is there, and files it does not have removed. With `with_data`, the data the
    /// version was made with replaces the current data too (which is kept as a snapshot).
    pub async fn restore(
        &self,
        project_id: Uuid,
        version_id: Uuid,
        with_data: bool,
    ) -> Result<super::Restored, StoreError> {
        let data = match with_data {
            true => Some(
                self.store
                    .version_snapshot(project_id, version_id)?
                    .ok_or(StoreError::NotFound("data snapshot of that version"))?,
            ),
            false => None,
        };
        let mut before = self
            .store
            .latest_fragment(project_id)?
            .map(|fragment| fragment.files)
            .unwrap_or_default();
        before.extend(self.store.unsaved_files(project_id)?);
        let (version, fragment) = self.store.restore_version(project_id, version_id)?;
        self.store.flush().await?;
        self.version_made(project_id);
        if self.sandboxes.is_none() {
            let data = data.map(|_| Err("no sandbox backend is configured".to_string()));
            return Ok(super::Restored { version, data });
        }
        if let Err(error) = self.sync_restored(project_id, &before, &fragment).await {
            self.discard_sandbox(project_id, &error).await;
            let data = data.map(|_| Err(error.to_string()));
            return Ok(super::Restored { version, data });
        }
        let data = self.data_after_restore(project_id, &version, data).await;
        Ok(super::Restored { version, data })
    }

    /// Makes `files` the newest version (a pull) and puts them in the sandbox in place of
    /// what it had; the version records the data it was made with.
    pub async fn save_replaced(
        &self,
        project_id: Uuid,
        files: std::collections::BTreeMap<String, String>,
        description: &str,
    ) -> Result<crate::store::Version, StoreError> {
        let before = self.store.current_files(project_id)?;
        let (version, fragment) =
            self.store
                .add_replaced_version(project_id, files, description)?;
        self.store.flush().await?;
        self.version_made(project_id);
        if self.sandboxes.is_none() {
            return Ok(version);
        }
        if let Err(error) = self.sync_restored(project_id, &before, &fragment).await {
            self.discard_sandbox(project_id, &error).await;
            return Ok(version);
        }
        // The data stays; the version records it as it is.
        let _ = self.data_after_restore(project_id, &version, None).await;
        Ok(version)
    }

    pub(super) fn version_made(&self, project_id: Uuid) {
        // Nobody listening is fine: no project has a remote to push to.
        let _ = self.versions_made.send(project_id);
    }

    /// A sandbox that could not be given the newest version's files must not be used
    /// again: without it, the next use starts a fresh one with them.
    pub(super) async fn discard_sandbox(&self, project_id: Uuid, error: &JobError) {
        tracing::warn!(%project_id, %error, "could not put the newest files in the sandbox; replacing it");
        if let Some(provider) = &self.sandboxes
            && let Err(error) = provider.release(project_id).await
        {
            tracing::warn!(%project_id, %error, "could not remove the sandbox either");
        }
    }

    /// Saves a quick edit as the newest version and writes the file into the sandbox, where
    /// the dev server reloads it.
    pub async fn save_edit(
        &self,
        project_id: Uuid,
        edit: &super::FileEdit,
    ) -> Result<crate::store::Version, StoreError> {
        let (version, _) = self.store.add_edited_version(
            project_id,
            &edit.path,
            &edit.content,
            &edit.description,
        )?;
        self.store.flush().await?;
        self.version_made(project_id);
        if self.sandboxes.is_none() {
            return Ok(version);
        }
        let written = async {
            let prepared = self.prepare_sandbox(project_id).await?;
            // A fresh sandbox was given the newest version's files already.
            if !prepared.created {
                let write = FileWrite {
                    path: WorkspacePath::parse(&edit.path)?,
                    content: edit.content.clone().into_bytes(),
                };
                prepared.sandbox.write_files(&[write]).await?;
            }
            // Like every version, this one records the data it was made with.
            let kind = SnapshotKind::Version {
                version_id: version.id,
            };
            if let Err(error) = self
                .save_data(project_id, prepared.sandbox.as_ref(), kind)
                .await
            {
                tracing::warn!(%project_id, %error, "could not save the app's data with the edit");
            }
            Ok::<_, JobError>(())
        };
        if let Err(error) = written.await {
            self.discard_sandbox(project_id, &error).await;
        }
        Ok(version)
    }

    async fn sync_restored(
        &self,
        project_id: Uuid,
        before: &std::collections::BTreeMap<String, String>,
        restored: &crate::store::Fragment,
    ) -> Result<(), JobError> {
        // A fresh sandbox gets the (now newest) restored files anyway.
        let prepared = self.prepare_sandbox(project_id).await?;
        if prepared.created {
            return Ok(());
        }
        prepared
            .sandbox
            .write_files(&file_writes(&restored.files)?)
            .await?;
        let gone = before
            .keys()
            .filter(|path| !restored.files.contains_key(*path))
            .map(|path| WorkspacePath::parse(path))
            .collect::<Result<Vec<_>, SandboxError>>()?;
        prepared.sandbox.remove_files(&gone).await?;
        // The restored version may run other packages than the one it replaced.
        let own = self.store.project(project_id)?.base == crate::store::AppBase::Own;
        let installed = crate::packages::Manifests::of(before, own);
        if let Some(Err(error)) = super::packages::install_for(
            prepared.sandbox.as_ref(),
            &installed,
            &restored.files,
            own,
        )
        .await
        {
            tracing::warn!(%project_id, %error, "the restored version's packages are not installed");
        }
        Ok(())
    }
}
