//! Versions: every answer's files, restoring an earlier one, and quick edits.

use super::*;

impl Store {
    /// Every version of a project's app, oldest first, numbered from 1.
    pub fn versions(&self, project_id: Uuid) -> StoreResult<Vec<(Version, Fragment)>> {
        let mut versions = Vec::new();
        for message in self.messages(project_id)? {
            if let Some(fragment) = self.fragment(message.id)? {
                versions.push((Version::of(&fragment, versions.len() as u32 + 1), fragment));
            }
        }
        Ok(versions)
    }

    /// Makes an earlier version the newest one: a new assistant message whose fragment
    /// holds the same files. Nothing newer is removed.
    pub fn restore_version(
        &self,
        project_id: Uuid,
        version_id: Uuid,
    ) -> StoreResult<(Version, Fragment)> {
        let versions = self.versions(project_id)?;
        let (chosen, fragment) = versions
            .iter()
            .find(|(version, _)| version.id == version_id)
            .ok_or(StoreError::NotFound("version"))?;
        let number = versions.len() as u32 + 1;
        self.add_version(
            project_id,
            number,
            &format!(
                "Restored version {} (\u{201c}{}\u{201d}) as version {number}.",
                chosen.version, chosen.title
            ),
            NewFragment {
                title: fragment.title.clone(),
                sandbox_url: fragment.sandbox_url.clone(),
                files: fragment.files.clone(),
                verification: fragment.verification.clone(),
            },
        )
    }

    /// A version made without a job (restore, quick edit): an assistant message with its
    /// fragment, which also takes in what a stopped job left unsaved.
    fn add_version(
        &self,
        project_id: Uuid,
        number: u32,
        description: &str,
        fragment: NewFragment,
    ) -> StoreResult<(Version, Fragment)> {
        let (_, added) = self.add_assistant_message(
            project_id,
            MessageType::Result,
            description,
            None,
            Some(fragment),
        )?;
        let added = added.expect("a fragment was given");
        self.clear_unsaved_files(project_id)?;
        Ok((Version::of(&added, number), added))
    }

    /// The app's files as they stand: the newest version's, with what a stopped job wrote
    /// since on top.
    pub fn current_files(&self, project_id: Uuid) -> StoreResult<BTreeMap<String, String>> {
        let mut files = self
            .latest_fragment(project_id)?
            .map(|fragment| fragment.files)
            .unwrap_or_default();
        files.extend(self.unsaved_files(project_id)?);
        Ok(files)
    }

    /// A new version made without the model (a quick edit): the current files with `path`
    /// set to `content`, said in `description`.
    pub fn add_edited_version(
        &self,
        project_id: Uuid,
        path: &str,
        content: &str,
        description: &str,
    ) -> StoreResult<(Version, Fragment)> {
        let latest = self
            .latest_fragment(project_id)?
            .ok_or(StoreError::NotFound("version"))?;
        let mut files = latest.files;
        files.extend(self.unsaved_files(project_id)?);
        files.insert(path.to_string(), content.to_string());
        let number = self.versions(project_id)?.len() as u32 + 1;
        self.add_version(
            project_id,
            number,
            description,
            NewFragment {
                title: latest.title,
                sandbox_url: latest.sandbox_url,
                files,
                verification: None,
            },
        )
    }

    /// A new version made of `files` as they are given (a pull): whatever the app had
    /// that they do not have is gone from it, said in `description`.
    pub fn add_replaced_version(
        &self,
        project_id: Uuid,
        files: BTreeMap<String, String>,
        description: &str,
    ) -> StoreResult<(Version, Fragment)> {
        let latest = self.latest_fragment(project_id)?;
        let number = self.versions(project_id)?.len() as u32 + 1;
        self.add_version(
            project_id,
            number,
            description,
            NewFragment {
                title: latest
                    .as_ref()
                    .map_or_else(|| "Pulled app".to_string(), |latest| latest.title.clone()),
                sandbox_url: latest.map(|latest| latest.sandbox_url).unwrap_or_default(),
                files,
                verification: None,
            },
        )
    }

    /// The newest fragment of a project: the app as it currently stands.
    pub fn latest_fragment(&self, project_id: Uuid) -> StoreResult<Option<Fragment>> {
        for value in self
            .messages
            .scan_prefix(project_id.as_bytes())
            .values()
            .rev()
        {
            let message: Message = serde_json::from_slice(&value?)?;
            if let Some(fragment) = self.fragment(message.id)? {
                return Ok(Some(fragment));
            }
        }
        Ok(None)
    }
}
