//! The durable job queue. A job is stored before the API answers; a dispatcher hands queued
//! jobs to at most `max_jobs` workers, one job per project at a time (follow-ups build on
//! the files of the job before them). Jobs found `running` at start-up were cut off by a
//! crash: they run once more, then fail with a clear message.

mod data;
pub use data::DataSource;
mod generation;
mod packages;
mod removed;
mod revival;
mod versions;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

pub use generation::{Generation, JobError, Journal, Journals, PreparedSandbox, PreviewAddress};
pub use packages::offers_install_fix;
pub use revival::Revival;

use crate::events::EventKind;
use crate::quick_edit::QuickEditError;
use crate::store::{Job, JobStatus, Message, MessageType, StoreError};

/// One file's new content from a quick edit, and what the new version says it did.
#[derive(Debug, Clone)]
pub struct FileEdit {
    pub path: String,
    pub content: String,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Edit(#[from] QuickEditError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many times a job may be started before a crash during it counts as a failure.
const MAX_ATTEMPTS: u32 = 2;

/// A restored version, and what became of its data when it was asked back too.
#[derive(Debug, Clone)]
pub struct Restored {
    pub version: crate::store::Version,
    /// `None`: only the code was restored. Otherwise the rows brought back, or why not.
    pub data: Option<Result<crate::data::Counts, String>>,
}

#[derive(Clone)]
pub struct JobQueue {
    inner: Arc<Inner>,
}

struct Inner {
    generation: Arc<Generation>,
    workers: Arc<Semaphore>,
    busy_projects: Mutex<HashSet<Uuid>>,
    /// The task of every running job, so a shutdown can stop it.
    running: Mutex<HashMap<Uuid, tokio::task::AbortHandle>>,
    /// Jobs the user asked to stop (as opposed to a shutdown, which requeues them).
    cancelled: Mutex<HashSet<Uuid>>,
    wake: Notify,
    /// Signalled whenever a job finishes (tests and `generate` wait on it).
    finished: Notify,
    shutdown: CancellationToken,
}

/// What start-up recovery did with jobs a previous process left running.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub requeued: usize,
    pub failed: usize,
}

impl JobQueue {
    pub fn new(generation: Arc<Generation>, max_jobs: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                generation,
                workers: Arc::new(Semaphore::new(max_jobs.max(1))),
                busy_projects: Mutex::default(),
                running: Mutex::default(),
                cancelled: Mutex::default(),
                wake: Notify::new(),
                finished: Notify::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// How many jobs run right now.
    pub fn running_count(&self) -> usize {
        lock(&self.inner.running).len()
    }

    pub fn generation(&self) -> &Arc<Generation> {
        &self.inner.generation
    }

    /// Deals with jobs a killed process left `running`. Call once, before [`JobQueue::start`].
    pub async fn recover(&self) -> Result<Recovery, StoreError> {
        let store = &self.inner.generation.store;
        let mut recovery = Recovery::default();
        let open: Vec<Job> = store.open_jobs().collect::<Result<_, _>>()?;
        for mut job in open {
            if job.status != JobStatus::Running {
                continue;
            }
            if job.attempts < MAX_ATTEMPTS {
                tracing::info!(job = %job.id, attempt = job.attempts, "re-queueing a job interrupted by a restart");
                job.status = JobStatus::Queued;
                store.put_job(&job)?;
                recovery.requeued += 1;
            } else {
                tracing::warn!(job = %job.id, "failing a job interrupted twice");
                let message = self.inner.generation.fail(
                    &job,
                    "CodeFlux stopped twice while working on this request, so it was given up. Send the prompt again to retry.",
                )?;
                announce(&self.inner, &job, &message);
                finish(&self.inner, &mut job, JobStatus::Failed)?;
                recovery.failed += 1;
            }
        }
        store.flush().await?;
        Ok(recovery)
    }

    /// Starts the dispatcher in the background.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let queue = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = queue.dispatch().await {
                    tracing::error!(%error, "job dispatch failed");
                }
                tokio::select! {
                    _ = queue.inner.wake.notified() => {}
                    _ = queue.inner.shutdown.cancelled() => break,
                }
            }
        })
    }

    /// Tells the dispatcher a new job is stored.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops handing out jobs, stops the running ones and puts them back in the queue (a
    /// clean shutdown does not count as an attempt), then makes that durable. Returns once
    /// every running job is recorded.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let running: Vec<_> = lock(&self.inner.running).values().cloned().collect();
        for task in running {
            task.abort();
        }
        loop {
            let finished = self.inner.finished.notified();
            if lock(&self.inner.busy_projects).is_empty() {
                break;
            }
            finished.await;
        }
        if let Err(error) = self.inner.generation.store.flush().await {
            tracing::error!(%error, "could not flush storage at shutdown");
        }
    }

    /// Waits until some job finishes.
    pub async fn job_finished(&self) {
        self.inner.finished.notified().await;
    }

    /// Kills a deleted project's sandbox in the background.
    pub fn release_sandbox(&self, project_id: Uuid) {
        if let Some(provider) = self.inner.generation.sandboxes.clone() {
            tokio::spawn(async move {
                if let Err(error) = provider.release(project_id).await {
                    tracing::warn!(%project_id, %error, "could not remove the sandbox of a deleted project");
                }
            });
        }
    }

    async fn dispatch(&self) -> Result<(), StoreError> {
        let store = &self.inner.generation.store;
        for job in store.open_jobs() {
            if self.inner.shutdown.is_cancelled() {
                break;
            }
            let Ok(permit) = self.inner.workers.clone().try_acquire_owned() else {
                break;
            };
            let job = job?;
            if job.status != JobStatus::Queued || !self.claim(job.project_id) {
                continue;
            }
            // Read again under the claim: a stop may have ended it since it was listed.
            let mut job = store.job(job.id)?;
            if job.status != JobStatus::Queued {
                self.set_busy(job.project_id, false);
                continue;
            }
            job.status = JobStatus::Running;
            job.attempts += 1;
            store.put_job(&job)?;
            store.flush().await?;
            let queue = self.clone();
            tokio::spawn(async move {
                queue.execute(job).await;
                drop(permit);
                queue.inner.wake.notify_one();
                queue.inner.finished.notify_waiters();
            });
        }
        Ok(())
    }

    /// Runs one job to its end. A panic inside the job still ends it with an error message.
    async fn execute(&self, mut job: Job) {
        let generation = self.inner.generation.clone();
        let running = job.clone();
        let span = tracing::info_span!("job", job = %job.id, project = %job.project_id, attempt = job.attempts);
        let task = tokio::spawn(async move { generation.run(&running).await }.instrument(span));
        lock(&self.inner.running).insert(job.id, task.abort_handle());
        // A shutdown or a stop that came while this job was being handed out stops it too.
        if self.inner.shutdown.is_cancelled() || lock(&self.inner.cancelled).contains(&job.id) {
            task.abort();
        }
        let outcome = task.await;
        lock(&self.inner.running).remove(&job.id);
        let stopped_by_user = lock(&self.inner.cancelled).remove(&job.id);
        if outcome.as_ref().is_err_and(|error| error.is_cancelled()) && !stopped_by_user {
            self.requeue(&mut job);
            self.set_busy(job.project_id, false);
            return;
        }
        let message = match outcome {
            _ if stopped_by_user => self
                .inner
                .generation
                .stopped(&job)
                .inspect_err(|error| tracing::error!(%error, "could not store the stop"))
                .ok(),
            Ok(Ok(message)) => Some(message),
            Ok(Err(error)) => {
                tracing::error!(job = %job.id, %error, "could not store the job's answer");
                None
            }
            Err(panic) => {
                tracing::error!(job = %job.id, %panic, "job crashed");
                self.inner
                    .generation
                    .fail(
                        &job,
                        "an internal error stopped the job; see the server log.",
                    )
                    .inspect_err(
                        |error| tracing::error!(%error, "could not store the crash message"),
                    )
                    .ok()
            }
        };
        let status = match message.as_ref().map(|message| message.kind) {
            Some(MessageType::Result) => JobStatus::Done,
            Some(MessageType::Stopped) => JobStatus::Cancelled,
            _ => JobStatus::Failed,
        };
        // Announced before the status changes, so whoever sees the project idle also finds
        // the job's last event stored.
        if let Some(message) = &message {
            announce(&self.inner, &job, message);
        }
        if let Err(error) = finish(&self.inner, &mut job, status) {
            tracing::error!(job = %job.id, %error, "could not record the job's end");
        }
        if let Err(error) = self.inner.generation.store.flush().await {
            tracing::error!(%error, "could not flush storage");
        }
        self.set_busy(job.project_id, false);
    }

    /// Stops the project's running or queued job at the user's request. Returns whether
    /// there was one. The running job's task is aborted at once (its model call abandoned,
    /// its sandbox command killed) and ends with a message saying it was stopped.
    pub fn cancel(&self, project_id: Uuid) -> Result<bool, StoreError> {
        let store = &self.inner.generation.store;
        let mut found = false;
        for job in store.open_jobs_of(project_id)? {
            found = true;
            match job.status {
                JobStatus::Running => {
                    lock(&self.inner.cancelled).insert(job.id);
                    if let Some(task) = lock(&self.inner.running).get(&job.id) {
                        task.abort();
                    }
                }
                _ => {
                    // Not started yet: it ends here, unless the dispatcher holds its project
                    // (then it is stopped as soon as it is handed out).
                    lock(&self.inner.cancelled).insert(job.id);
                    if !self.claim(job.project_id) {
                        continue;
                    }
                    let mut job = job;
                    let stopped = self.inner.generation.stopped(&job).and_then(|message| {
                        announce(&self.inner, &job, &message);
                        finish(&self.inner, &mut job, JobStatus::Cancelled)
                    });
                    lock(&self.inner.cancelled).remove(&job.id);
                    self.set_busy(job.project_id, false);
                    stopped?;
                }
            }
        }
        Ok(found)
    }

    /// Restores an earlier version (see [`Generation::restore`]) while no job works on the
    /// project. `Ok(None)`: a job is running or queued, so nothing was changed.
    pub async fn restore(
        &self,
        project_id: Uuid,
        version_id: Uuid,
        with_data: bool,
    ) -> Result<Option<Restored>, StoreError> {
        let generation = self.inner.generation.clone();
        self.while_idle(project_id, async move {
            generation.restore(project_id, version_id, with_data).await
        })
        .await
    }

    /// Puts a kept snapshot's data in place of the app's current data while no job works
    /// on the project (the current data is kept as a snapshot first). `Ok(None)`: busy.
    pub async fn restore_data(
        &self,
        project_id: Uuid,
        snapshot_id: Uuid,
    ) -> Result<Option<Result<crate::data::Counts, String>>, StoreError> {
        let generation = self.inner.generation.clone();
        self.while_idle(project_id, async move {
            generation.restore_snapshot(project_id, snapshot_id).await
        })
        .await
    }

    /// Changes or deletes one row of the running app's data while no job works on the
    /// project. `Ok(None)`: busy.
    pub async fn edit_row(
        &self,
        project_id: Uuid,
        edit: crate::data::RowEdit,
    ) -> Result<Option<Result<(), crate::data::DataError>>, StoreError> {
        let generation = self.inner.generation.clone();
        self.while_idle(project_id, async move {
            Ok::<_, StoreError>(generation.edit_row(project_id, &edit).await)
        })
        .await
    }

    /// A quick edit (see [`crate::quick_edit`]) while no job works on the project: `edit`
    /// gets the app's current files and says which file becomes what, and the result is a
    /// new version, also written to the sandbox. `Ok(None)`: a job is running or queued.
    pub async fn quick_edit(
        &self,
        project_id: Uuid,
        edit: impl FnOnce(&BTreeMap<String, String>) -> Result<FileEdit, QuickEditError> + Send,
    ) -> Result<Option<crate::store::Version>, EditError> {
        let generation = self.inner.generation.clone();
        self.while_idle(project_id, async move {
            let files = generation.store.current_files(project_id)?;
            let change = edit(&files)?;
            Ok(generation.save_edit(project_id, &change).await?)
        })
        .await
    }

    /// Makes `files` the project's newest version (a pull) while no job works on it.
    /// `Ok(None)`: a job is running or queued, so nothing was changed.
    pub async fn replace_files(
        &self,
        project_id: Uuid,
        files: BTreeMap<String, String>,
        description: &str,
    ) -> Result<Option<crate::store::Version>, StoreError> {
        let generation = self.inner.generation.clone();
        self.while_idle(project_id, async move {
            generation
                .save_replaced(project_id, files, description)
                .await
        })
        .await
    }

    /// Runs `work` holding the project, so that no job starts on it meanwhile; `Ok(None)`
    /// without running it when a job is running or queued.
    async fn while_idle<T, E: From<StoreError>>(
        &self,
        project_id: Uuid,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Option<T>, E> {
        let generation = &self.inner.generation;
        // A job that just finished lets go of its project a moment after its status says so.
        let mut tries = 0;
        loop {
            if !generation.store.open_jobs_of(project_id)?.is_empty() {
                return Ok(None);
            }
            if self.claim(project_id) {
                break;
            }
            tries += 1;
            if tries == 100 {
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let done = work.await;
        self.set_busy(project_id, false);
        self.inner.wake.notify_one();
        done.map(Some)
    }

    /// Puts a job stopped by a shutdown back in the queue; it runs again from the start.
    fn requeue(&self, job: &mut Job) {
        tracing::info!(job = %job.id, "job stopped by the shutdown; it runs again on the next start");
        job.status = JobStatus::Queued;
        job.attempts = job.attempts.saturating_sub(1);
        if let Err(error) = self.inner.generation.store.put_job(job) {
            tracing::error!(job = %job.id, %error, "could not put the job back in the queue");
        }
        self.inner.generation.publish(
            job,
            EventKind::Requeued {
                reason: "CodeFlux is restarting; this request starts again when it is back.".into(),
            },
        );
    }

    /// Takes the project unless a job (or a restore) holds it. Dispatching, stopping a
    /// queued job and restoring all claim, so no two of them act on one project at once.
    fn claim(&self, project_id: Uuid) -> bool {
        lock(&self.inner.busy_projects).insert(project_id)
    }

    fn set_busy(&self, project_id: Uuid, busy: bool) {
        let mut projects = lock(&self.inner.busy_projects);
        if busy {
            projects.insert(project_id);
        } else {
            projects.remove(&project_id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tells watchers the job ended, once its status is stored.
fn announce(inner: &Inner, job: &Job, message: &Message) {
    let ok = message.kind == MessageType::Result;
    let detail = if ok {
        "your app is ready".to_string()
    } else {
        message
            .content
            .trim_start_matches("Something went wrong: ")
            .to_string()
    };
    inner.generation.publish(
        job,
        EventKind::Finished {
            message_id: message.id,
            ok,
            detail,
            stopped: message.kind == MessageType::Stopped,
        },
    );
}

fn finish(inner: &Inner, job: &mut Job, status: JobStatus) -> Result<(), StoreError> {
    let now = Utc::now();
    job.status = status;
    job.finished_at = Some(now);
    inner.generation.store.put_job(job)?;
    let seconds = (now - job.created_at).num_milliseconds() as f64 / 1000.0;
    inner.generation.metrics.job_finished(status, seconds);
    Ok(())
}
