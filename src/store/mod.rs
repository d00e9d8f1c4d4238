//! Typed access to everything CodeFlux keeps, on sled.
//!
//! Keys are chosen so that listing is a range scan, never a full scan: ids are UUID v7
//! (time-ordered), so a project's messages sit together under `project_id ++ message_id` in
//! creation order, and projects list newest-first by iterating the projects tree backwards.

mod flusher;
pub mod images;
mod jobs;
mod models;
mod opening;
mod private_dir;
mod screenshots;
mod sessions;
mod slug;
pub mod snapshots;
mod versions;

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
    #[error(
        "this project already has {0} requests running or waiting: wait for one to finish, or stop them"
    )]
    TooManyWaiting(usize),
    #[error("cannot prepare the data directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Most jobs (running and queued) one project may have: whoever can send prompts cannot
/// grow the queue without bound.
pub const MAX_OPEN_JOBS: usize = 5;

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
    /// `project_id ++ version_id ++ index` → the browser check's screenshot of that page
    screenshots: sled::Tree,
    /// `project_id ++ snapshot_id` → DataSnapshot (kept snapshots of the app's data)
    snapshots: sled::Tree,
    /// `snapshot_id` → gzipped snapshot
    snapshot_bytes: sled::Tree,
    /// `project_id` → DataSnapshot / gzipped bytes: the app's data as last seen
    latest_data: sled::Tree,
    latest_data_bytes: sled::Tree,
    flusher: Arc<flusher::Flusher>,
}

impl Store {
    /// A tree for a component's own small state (e.g. a sandbox backend's ids).
    pub fn tree(&self, name: &str) -> StoreResult<sled::Tree> {
        Ok(self.db.open_tree(name)?)
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
        let project = self.create_empty_project(AppBase::Template)?;
        let (message, job) = self.add_user_message_with(project.id, prompt, attachments)?;
        Ok((project, message, job))
    }

    /// A new project with no message yet (an import adds its first version).
    pub fn create_empty_project(&self, base: AppBase) -> StoreResult<Project> {
        let now = Utc::now();
        let project = Project {
            id: Uuid::now_v7(),
            name: slug::random_slug(),
            created_at: now,
            updated_at: now,
            base,
        };
        put(&self.projects, project.id.as_bytes(), &project)?;
        Ok(project)
    }

    /// Queues the job that installs an imported app's packages and starts it; `message_id`
    /// is the message of the version it installs.
    pub fn add_install_job(&self, project_id: Uuid, message_id: Uuid) -> StoreResult<Job> {
        let job = Job {
            id: Uuid::now_v7(),
            project_id,
            message_id,
            kind: JobKind::Install,
            status: JobStatus::Queued,
            attempts: 0,
            created_at: Utc::now(),
            finished_at: None,
        };
        self.put_job(&job)?;
        Ok(job)
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
        for tree in [
            &self.messages,
            &self.open_jobs,
            &self.events,
            &self.images,
            &self.screenshots,
        ] {
            for key in tree.scan_prefix(id.as_bytes()).keys() {
                tree.remove(key?)?;
            }
        }
        self.unsaved.remove(id.as_bytes())?;
        self.delete_data(id)?;
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
        if self.open_jobs.scan_prefix(project_id.as_bytes()).count() >= MAX_OPEN_JOBS {
            return Err(StoreError::TooManyWaiting(MAX_OPEN_JOBS));
        }
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
            kind: JobKind::Agent,
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
}
