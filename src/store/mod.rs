//! Typed access to everything CodeFlux keeps, on sled.
//!
//! Keys are chosen so that listing is a range scan, never a full scan: ids are UUID v7
//! (time-ordered), so a project's messages sit together under `project_id ++ message_id` in
//! creation order, and projects list newest-first by iterating the projects tree backwards.

mod flusher;
pub mod images;
mod models;
mod private_dir;
mod slug;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

pub use models::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("writing to disk failed: {0}")]
    Flush(String),
    #[error("the store is closed")]
    Closed,
    #[error(
        "the data directory {0} is in use: a CodeFlux server is already running on it (stop it, or choose another CODEFLUX_DATA_DIR)"
    )]
    InUse(String),
    #[error("cannot prepare the data directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Key (in the default tree) of the sign-in session generation.
const SESSION_GENERATION: &[u8] = b"session_generation";

/// How long opening waits for a lock that an earlier store in this process may still hold.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// sled reports a held lock only in its message (an `io::Error` of kind `Other`).
fn is_lock_conflict(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// A page of projects, newest first; `next` is the cursor for the following page.
#[derive(Debug, Clone)]
pub struct ProjectPage {
    pub projects: Vec<Project>,
    pub next: Option<Uuid>,
}

/// What a prompt carries besides its text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attachments<'a> {
    pub images: &'a [images::NewImage],
    pub selected: &'a [SelectedElement],
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    projects: sled::Tree,
    /// `project_id ++ message_id` → Message
    messages: sled::Tree,
    /// `message_id` → Fragment
    fragments: sled::Tree,
    /// `job_id` → Job
    jobs: sled::Tree,
    /// `project_id ++ job_id` → () for every job not yet finished
    open_jobs: sled::Tree,
    /// `job_id` → () for every job not yet finished: the queue in submission order
    queue: sled::Tree,
    /// `project_id ++ seq` → stored progress event (owned by `events`)
    events: sled::Tree,
    /// `project_id` → files written by a stopped job, not yet part of a version
    unsaved: sled::Tree,
    /// `project_id ++ message_id ++ index` → an image attached to that prompt
    images: sled::Tree,
    flusher: Arc<flusher::Flusher>,
}

impl Store {
    ///
    /// The directory is made private to this user (0700, files 0600): it holds every
    /// project's code and prompts. When the database is locked, opening waits a little:
    /// sled's background thread keeps the lock for a moment after the last handle of an
    /// earlier store is dropped. A lock still held after that belongs to another server.
    pub fn open(path: &std::path::Path) -> StoreResult<Self> {
        private_dir::prepare(path).map_err(|source| StoreError::Directory {
            path: path.display().to_string(),
            source,
        })?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::open(path) {
                Ok(db) => break db,
                Err(error) if is_lock_conflict(&error) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::InUse(path.display().to_string()));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(error) => return Err(error.into()),
            }
        };
        private_dir::restrict_files(path).map_err(|source| StoreError::Directory {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_db(db)
    }

    /// A store that lives in memory only (tests, `generate` without a data dir).
    pub fn temporary() -> StoreResult<Self> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> StoreResult<Self> {
        let store = Self {
            projects: db.open_tree("projects")?,
            messages: db.open_tree("messages")?,
            fragments: db.open_tree("fragments")?,
            jobs: db.open_tree("jobs")?,
            open_jobs: db.open_tree("open_jobs")?,
            queue: db.open_tree("queue")?,
            events: db.open_tree("events")?,
            unsaved: db.open_tree("unsaved_files")?,
            images: db.open_tree("images")?,
            flusher: Arc::new(flusher::Flusher::start(db.clone())),
            db,
        };
        // Data written before the queue index existed: derive it once.
        if store.queue.is_empty() {
            for key in store.open_jobs.iter().keys() {
                store.queue.insert(&key?[16..32], &[])?;
            }
        }
        Ok(store)
    }

    /// A tree for a component's own small state (e.g. a sandbox backend's ids).
    pub fn tree(&self, name: &str) -> StoreResult<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// The generation of sign-in sessions: a session made under an older one is over.
    pub fn session_generation(&self) -> StoreResult<u64> {
        Ok(self
            .db
            .get(SESSION_GENERATION)?
            .and_then(|bytes| bytes.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Ends every session signed so far (sign-out); durable before it returns.
    pub async fn end_sessions(&self) -> StoreResult<u64> {
        let next = self
            .db
            .update_and_fetch(SESSION_GENERATION, |old| {
                let current = old
                    .and_then(|bytes| bytes.try_into().ok())
                    .map_or(0, u64::from_be_bytes);
                Some((current + 1).to_be_bytes().to_vec())
            })?
            .and_then(|bytes| bytes.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes);
        self.flush().await?;
        Ok(next)
    }

    pub(crate) fn events_tree(&self) -> &sled::Tree {
        &self.events
    }

    /// Makes every write so far durable. Called before the API answers a write. Concurrent
    /// callers share one disk sync (see `flusher`).
    pub async fn flush(&self) -> StoreResult<()> {
        self.flusher.flush().await
    }

    // --- projects ---

    /// Creates a project with its first user message and a queued job. The job is written
    /// last; the API flushes before it answers, so an acknowledged prompt is never lost.
    pub fn create_project(&self, prompt: &str) -> StoreResult<(Project, Message, Job)> {
        self.create_project_with(prompt, Attachments::default())
    }

    /// A new project whose first prompt carries images.
    pub fn create_project_with(
        &self,
        prompt: &str,
        attachments: Attachments,
    ) -> StoreResult<(Project, Message, Job)> {
        let now = Utc::now();
        let project = Project {
            id: Uuid::now_v7(),
            name: slug::random_slug(),
            created_at: now,
            updated_at: now,
        };
        put(&self.projects, project.id.as_bytes(), &project)?;
        let (message, job) = self.add_user_message_with(project.id, prompt, attachments)?;
        Ok((project, message, job))
    }

    pub fn project(&self, id: Uuid) -> StoreResult<Project> {
        get(&self.projects, id.as_bytes())?.ok_or(StoreError::NotFound("project"))
    }

    pub fn project_exists(&self, id: Uuid) -> StoreResult<bool> {
        Ok(self.projects.contains_key(id.as_bytes())?)
    }

    /// Projects newest first, `limit` at a time, starting after the `before` cursor.
    pub fn list_projects(&self, limit: usize, before: Option<Uuid>) -> StoreResult<ProjectPage> {
        let range = match before {
            Some(cursor) => self.projects.range(..cursor.as_bytes().to_vec()),
            None => self.projects.range::<Vec<u8>, _>(..),
        };
        let mut projects = Vec::with_capacity(limit);
        let mut next = None;
        for entry in range.rev() {
            let (_, value) = entry?;
            if projects.len() == limit {
                next = projects.last().map(|project: &Project| project.id);
                break;
            }
            projects.push(serde_json::from_slice(&value)?);
        }
        Ok(ProjectPage { projects, next })
    }

    pub fn all_project_ids(&self) -> StoreResult<Vec<Uuid>> {
        self.projects
            .iter()
            .keys()
            .map(|key| Ok(uuid_from(&key?)))
            .collect()
    }

    /// Removes a project with its messages, fragments, jobs and events.
    pub fn delete_project(&self, id: Uuid) -> StoreResult<()> {
        self.project(id)?;
        for message in self.messages(id)? {
            self.fragments.remove(message.id.as_bytes())?;
        }
        // Deleting is rare, so finding the project's jobs by a scan is fine.
        for entry in self.jobs.iter() {
            let (key, value) = entry?;
            let job: Job = serde_json::from_slice(&value)?;
            if job.project_id == id {
                self.jobs.remove(key)?;
            }
        }
        for key in self.open_jobs.scan_prefix(id.as_bytes()).keys() {
            self.queue.remove(&key?[16..32])?;
        }
        for tree in [&self.messages, &self.open_jobs, &self.events, &self.images] {
            for key in tree.scan_prefix(id.as_bytes()).keys() {
                tree.remove(key?)?;
            }
        }
        self.unsaved.remove(id.as_bytes())?;
        self.projects.remove(id.as_bytes())?;
        Ok(())
    }

    // --- files written by stopped jobs ---

    /// Keeps files a stopped job wrote (they are in the sandbox) so the next version
    /// includes them.
    pub fn add_unsaved_files(
        &self,
        project_id: Uuid,
        files: BTreeMap<String, String>,
    ) -> StoreResult<()> {
        let mut all = self.unsaved_files(project_id)?;
        all.extend(files);
        put(&self.unsaved, project_id.as_bytes(), &all)
    }

    pub fn unsaved_files(&self, project_id: Uuid) -> StoreResult<BTreeMap<String, String>> {
        Ok(get(&self.unsaved, project_id.as_bytes())?.unwrap_or_default())
    }

    pub fn clear_unsaved_files(&self, project_id: Uuid) -> StoreResult<()> {
        self.unsaved.remove(project_id.as_bytes())?;
        Ok(())
    }

    fn touch_project(&self, id: Uuid) -> StoreResult<()> {
        let mut project = self.project(id)?;
        project.updated_at = Utc::now();
        put(&self.projects, id.as_bytes(), &project)
    }

    // --- messages and fragments ---

    /// Records a follow-up prompt and queues the job that answers it.
    pub fn add_user_message(&self, project_id: Uuid, prompt: &str) -> StoreResult<(Message, Job)> {
        self.add_user_message_with(project_id, prompt, Attachments::default())
    }

    /// A follow-up prompt with images and picked elements; the images are stored before the
    /// message names them.
    pub fn add_user_message_with(
        &self,
        project_id: Uuid,
        prompt: &str,
        attachments: Attachments,
    ) -> StoreResult<(Message, Job)> {
        self.project(project_id)?;
        let message = self.put_message(
            project_id,
            Role::User,
            MessageType::Result,
            prompt,
            None,
            attachments,
        )?;
        let job = Job {
            id: Uuid::now_v7(),
            project_id,
            message_id: message.id,
            status: JobStatus::Queued,
            attempts: 0,
            created_at: Utc::now(),
            finished_at: None,
        };
        self.put_job(&job)?;
        Ok((message, job))
    }

    /// Records the assistant's answer, with the fragment when the job produced an app.
    pub fn add_assistant_message(
        &self,
        project_id: Uuid,
        kind: MessageType,
        content: &str,
        usage: Option<TokenUsage>,
        fragment: Option<NewFragment>,
    ) -> StoreResult<(Message, Option<Fragment>)> {
        let message = self.put_message(
            project_id,
            Role::Assistant,
            kind,
            content,
            usage,
            Attachments::default(),
        )?;
        let fragment = fragment
            .map(|new| {
                let fragment = Fragment {
                    id: Uuid::now_v7(),
                    message_id: message.id,
                    title: new.title,
                    sandbox_url: new.sandbox_url,
                    files: new.files,
                    created_at: message.created_at,
                    verification: new.verification,
                };
                put(&self.fragments, message.id.as_bytes(), &fragment).map(|_| fragment)
            })
            .transpose()?;
        Ok((message, fragment))
    }

    fn put_message(
        &self,
        project_id: Uuid,
        role: Role,
        kind: MessageType,
        content: &str,
        usage: Option<TokenUsage>,
        Attachments { images, selected }: Attachments,
    ) -> StoreResult<Message> {
        let id = Uuid::now_v7();
        // The images first, so a message never names an image that is not there.
        for (index, image) in images.iter().enumerate() {
            let mut value = Vec::with_capacity(image.bytes.len() + 16);
            value.extend_from_slice(image.kind.media_type().as_bytes());
            value.push(b'\n');
            value.extend_from_slice(&image.bytes);
            self.images
                .insert(image_key(project_id, id, index), value)?;
        }
        let message = Message {
            id,
            project_id,
            role,
            kind,
            content: content.to_string(),
            created_at: Utc::now(),
            usage,
            images: images
                .iter()
                .map(|image| images::ImageInfo {
                    kind: image.kind,
                    bytes: image.bytes.len(),
                })
                .collect(),
            selected: selected.to_vec(),
        };
        put(&self.messages, &pair_key(project_id, message.id), &message)?;
        self.touch_project(project_id)?;
        Ok(message)
    }

    /// One image of a prompt: its media type and bytes.
    pub fn image(
        &self,
        project_id: Uuid,
        message_id: Uuid,
        index: usize,
    ) -> StoreResult<Option<(String, Vec<u8>)>> {
        if index >= images::MAX_IMAGES {
            return Ok(None);
        }
        let Some(value) = self.images.get(image_key(project_id, message_id, index))? else {
            return Ok(None);
        };
        let split = value.iter().position(|byte| *byte == b'\n').unwrap_or(0);
        let media_type = String::from_utf8_lossy(&value[..split]).into_owned();
        Ok(Some((media_type, value[split + 1..].to_vec())))
    }

    /// A project's messages, oldest first.
    pub fn messages(&self, project_id: Uuid) -> StoreResult<Vec<Message>> {
        self.messages
            .scan_prefix(project_id.as_bytes())
            .values()
            .map(|value| Ok(serde_json::from_slice(&value?)?))
            .collect()
    }

    pub fn message(&self, project_id: Uuid, message_id: Uuid) -> StoreResult<Message> {
        get(&self.messages, &pair_key(project_id, message_id))?
            .ok_or(StoreError::NotFound("message"))
    }

    pub fn fragment(&self, message_id: Uuid) -> StoreResult<Option<Fragment>> {
        get(&self.fragments, message_id.as_bytes())
    }

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

    // --- jobs ---

    pub fn job(&self, id: Uuid) -> StoreResult<Job> {
        get(&self.jobs, id.as_bytes())?.ok_or(StoreError::NotFound("job"))
    }

    /// Saves a job and keeps the open-jobs index in step with its status.
    pub fn put_job(&self, job: &Job) -> StoreResult<()> {
        put(&self.jobs, job.id.as_bytes(), job)?;
        let index_key = pair_key(job.project_id, job.id);
        match job.status {
            JobStatus::Queued | JobStatus::Running => {
                self.open_jobs.insert(index_key, &[])?;
                self.queue.insert(job.id.as_bytes(), &[])?;
            }
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled => {
                self.open_jobs.remove(index_key)?;
                self.queue.remove(job.id.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Every job that is queued or running, oldest first, read lazily: the dispatcher stops
    /// as soon as its workers are busy, however long the queue.
    pub fn open_jobs(&self) -> impl Iterator<Item = StoreResult<Job>> + '_ {
        self.queue
            .iter()
            .keys()
            .map(|key| self.job(uuid_from(&key?)))
    }

    /// The project's queued or running jobs, oldest first.
    pub fn open_jobs_of(&self, project_id: Uuid) -> StoreResult<Vec<Job>> {
        let mut jobs = self
            .open_jobs
            .scan_prefix(project_id.as_bytes())
            .keys()
            .map(|key| self.job(uuid_from(&key?[16..])))
            .collect::<StoreResult<Vec<Job>>>()?;
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    pub fn project_status(&self, project_id: Uuid) -> StoreResult<ProjectStatus> {
        self.project_status_besides(project_id, None)
    }

    /// The project's status if the job `finishing` were already over (it announces its end
    /// just before its status is stored).
    pub fn project_status_besides(
        &self,
        project_id: Uuid,
        finishing: Option<Uuid>,
    ) -> StoreResult<ProjectStatus> {
        let mut status = ProjectStatus::Idle;
        for key in self.open_jobs.scan_prefix(project_id.as_bytes()).keys() {
            let job_id = uuid_from(&key?[16..]);
            if Some(job_id) == finishing {
                continue;
            }
            match self.job(job_id)?.status {
                JobStatus::Running => return Ok(ProjectStatus::Running),
                JobStatus::Queued => status = ProjectStatus::Queued,
                _ => {}
            }
        }
        Ok(status)
    }
}

/// The parts of a fragment the job decides; the store adds ids and timestamps.
#[derive(Debug, Clone)]
pub struct NewFragment {
    pub title: String,
    pub sandbox_url: String,
    pub files: BTreeMap<String, String>,
    pub verification: Option<Verification>,
}

pub(crate) fn pair_key(first: Uuid, second: Uuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(first.as_bytes());
    key.extend_from_slice(second.as_bytes());
    key
}

fn image_key(project_id: Uuid, message_id: Uuid, index: usize) -> Vec<u8> {
    let mut key = pair_key(project_id, message_id);
    key.push(index as u8);
    key
}

fn uuid_from(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(&bytes[..16]).unwrap_or_default()
}

fn put<T: Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> StoreResult<()> {
    tree.insert(key, serde_json::to_vec(value)?)?;
    Ok(())
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> StoreResult<Option<T>> {
    tree.get(key)?
        .map(|value| serde_json::from_slice(&value).map_err(StoreError::from))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many tasks writing and flushing at once: sled's own `flush_async` wedges under this.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_and_flushes_never_wedge() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..100 {
                        let (project, _, _) = store.create_project("hammer").unwrap();
                        store.flush().await.unwrap();
                        assert!(store.project_exists(project.id).unwrap());
                    }
                })
            })
            .collect();
        let all = futures::future::join_all(tasks);
        let results = tokio::time::timeout(std::time::Duration::from_secs(120), all)
            .await
            .expect("concurrent flushes finished instead of wedging");
        assert!(results.into_iter().all(|result| result.is_ok()));
        assert_eq!(store.all_project_ids().unwrap().len(), 3200);
        assert_eq!(store.open_jobs().count(), 3200);
    }

    #[tokio::test]
    async fn acknowledged_writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = Store::open(dir.path()).unwrap();
            let (project, _, _) = store.create_project("keep me").unwrap();
            store.flush().await.unwrap();
            project.id
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.messages(id).unwrap()[0].content, "keep me");
        let queued: Vec<Job> = store.open_jobs().collect::<Result<_, _>>().unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].project_id, id);
    }

    /// sled's background thread may hold the lock a moment after the store is dropped:
    /// reopening at once, many times over, must wait for it rather than fail.
    #[test]
    fn reopening_right_after_closing_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let store =
                Store::open(dir.path()).unwrap_or_else(|error| panic!("round {round}: {error}"));
            store.create_project("again").unwrap();
        }
    }

    #[test]
    fn a_directory_held_by_another_store_is_named_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        let Err(error) = Store::open(dir.path()) else {
            panic!("a second store opened a locked directory");
        };
        assert!(matches!(error, StoreError::InUse(_)), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("already running"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn the_data_directory_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("data");
        drop(Store::open(&path).unwrap());
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        // An existing directory (and its files) made by hand with the usual umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(path.join("notes"), "x").unwrap();
        std::fs::set_permissions(path.join("notes"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        drop(Store::open(&path).unwrap());
        assert_eq!(mode(&path), 0o700);
        let files: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(files.len() > 1, "sled wrote files: {files:?}");
        for file in files.iter().filter(|file| file.is_file()) {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }
}
