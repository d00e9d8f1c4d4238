//! Live progress of a project's jobs. Every event is stored (so a client that connects late
//! can replay it) and broadcast to whoever is watching the project right now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// How many events a slow watcher may fall behind before it has to re-sync from storage.
const CHANNEL_CAPACITY: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Position in the project's event log; strictly increasing.
    pub seq: u64,
    pub project_id: Uuid,
    pub job_id: Uuid,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The job is waiting for a free worker.
    Queued,
    /// A worker picked the job up (`attempt` counts restarts after a crash).
    Started { attempt: u32 },
    /// The sandbox answers; `restored_files` were put back from the last version.
    SandboxReady {
        backend: String,
        created: bool,
        restored_files: usize,
    },
    /// A fresh sandbox (or a restore) installed the app's own packages, or could not.
    PackagesInstalled { ok: bool, detail: String },
    /// The agent asks the model for its next step.
    ModelTurn {
        iteration: u32,
        max_iterations: u32,
        /// Tokens the request has spent before this turn.
        #[serde(default)]
        tokens: u64,
        /// What it may spend (`CODEFLUX_REQUEST_TOKEN_BUDGET`), when there is a limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_budget: Option<u64>,
    },
    /// The model said something besides calling tools (shortened).
    ModelText { text: String },
    /// What a reasoning model thought before answering (shortened; shown folded).
    ModelThinking { text: String },
    /// The answer as it streams in (a few snapshots a second): the text so far and, while a
    /// file is being written, its path and the code so far (both shortened to their ends).
    ModelStreaming {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
    /// A tool call started, with its arguments summarised ("npm install zod").
    ToolStarted { tool: String, summary: String },
    /// A tool call finished ("wrote app/page.tsx (42 lines)").
    ToolFinished {
        tool: String,
        summary: String,
        ok: bool,
        elapsed_ms: u64,
    },
    /// The app is being checked (type check, dev server output, every page rendered).
    Checking,
    /// The check passed: the app compiles and renders.
    CheckPassed,
    /// Each page was opened in the sandbox's browser: "Checked in a browser: 3 pages, 14
    /// clicks, no errors", or why it could not be.
    BrowserChecked {
        summary: String,
        pages: usize,
        clicks: usize,
        problems: usize,
    },
    /// The model is shown the front page's screenshot, to judge whether it looks as asked.
    LookingAtScreenshot,
    /// The server said the conversation no longer fits the model's context window: older
    /// traffic was cut (round `round`, `saved_bytes` fewer) and the turn is tried again.
    Compacted { round: u32, saved_bytes: u64 },
    /// The check found problems ("2 type errors"); `fixing` when the agent gets another go.
    CheckFailed { summary: String, fixing: bool },
    /// The agent's final `<task_summary>`.
    Summary { text: String },
    /// CodeFlux is shutting down: the job was put back in the queue and runs again, from
    /// the start, when the server is back.
    Requeued { reason: String },
    /// The job ended and its assistant message is stored.
    Finished {
        message_id: Uuid,
        ok: bool,
        detail: String,
        /// Stopped at the user's request rather than failed.
        #[serde(default)]
        stopped: bool,
    },
}

impl EventKind {
    /// True for the event that closes a job.
    pub fn is_terminal(&self) -> bool {
        matches!(self, EventKind::Finished { .. })
    }
}

/// Jobs per project whose progress events are kept (the newest one is the one shown).
pub const KEPT_JOBS: usize = 3;

#[derive(Clone)]
pub struct EventHub {
    store: Store,
    /// Events go out shared: a watcher receives a pointer, never its own copy of the payload.
    channels: Arc<Mutex<HashMap<Uuid, broadcast::Sender<Arc<Event>>>>>,
    /// Serialises sequence allocation so stored order equals broadcast order.
    append_lock: Arc<Mutex<()>>,
}

impl EventHub {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            channels: Arc::default(),
            append_lock: Arc::default(),
        }
    }

    /// Stores the event and tells everyone watching the project.
    pub fn publish(
        &self,
        project_id: Uuid,
        job_id: Uuid,
        kind: EventKind,
    ) -> Result<Event, StoreError> {
        let tree = self.store.events_tree();
        let _guard = self
            .append_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (seq, new_job) = match tree.scan_prefix(project_id.as_bytes()).next_back() {
            Some(entry) => {
                let (key, value) = entry?;
                let last: Event = serde_json::from_slice(&value)?;
                (seq_from_key(&key) + 1, last.job_id != job_id)
            }
            None => (1, true),
        };
        if new_job {
            self.prune(project_id)?;
        }
        let event = Event {
            seq,
            project_id,
            job_id,
            at: Utc::now(),
            kind,
        };
        tree.insert(event_key(project_id, seq), serde_json::to_vec(&event)?)?;
        if let Some(sender) = self.channel_if_watched(project_id) {
            // No receiver left is fine: nobody is watching.
            let _ = sender.send(Arc::new(event.clone()));
        }
        Ok(event)
    }

    /// Before a new job's first event: drops the events of all but the newest
    /// [`KEPT_JOBS`]` - 1` jobs of the project, so that
    /// whoever can start jobs cannot grow the store without bound. Only the latest job's
    /// events are ever shown; the newest key stays, so sequence numbers keep rising.
    fn prune(&self, project_id: Uuid) -> Result<(), StoreError> {
        let tree = self.store.events_tree();
        let mut jobs_seen: Vec<Uuid> = Vec::new();
        let mut doomed = Vec::new();
        for entry in tree.scan_prefix(project_id.as_bytes()).rev() {
            let (key, value) = entry?;
            let event: Event = serde_json::from_slice(&value)?;
            if !jobs_seen.contains(&event.job_id) {
                jobs_seen.push(event.job_id);
            }
            // The job about to start is the newest of the kept ones.
            if jobs_seen.len() >= KEPT_JOBS {
                doomed.push(key);
            }
        }
        for key in doomed {
            tree.remove(key)?;
        }
        Ok(())
    }

    /// Starts watching a project: returns the events of its latest job so far, then a
    /// receiver for what comes next. Subscribing before reading storage means nothing falls
    /// between the two; the caller drops live events whose `seq` it already replayed.
    pub fn watch(
        &self,
        project_id: Uuid,
    ) -> Result<(Vec<Event>, broadcast::Receiver<Arc<Event>>), StoreError> {
        let receiver = self.channel(project_id).subscribe();
        Ok((self.latest_job_events(project_id)?, receiver))
    }

    /// The stored events of the project's most recent job, oldest first.
    pub fn latest_job_events(&self, project_id: Uuid) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        for value in self
            .store
            .events_tree()
            .scan_prefix(project_id.as_bytes())
            .values()
            .rev()
        {
            let event: Event = serde_json::from_slice(&value?)?;
            if events
                .last()
                .is_some_and(|last: &Event| last.job_id != event.job_id)
            {
                break;
            }
            events.push(event);
        }
        events.reverse();
        Ok(events)
    }

    fn channel(&self, project_id: Uuid) -> broadcast::Sender<Arc<Event>> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget channels nobody listens to any more, so the map does not grow forever.
        channels.retain(|_, sender| sender.receiver_count() > 0);
        channels
            .entry(project_id)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .clone()
    }

    fn channel_if_watched(&self, project_id: Uuid) -> Option<broadcast::Sender<Arc<Event>>> {
        let channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channels.get(&project_id).cloned()
    }
}

fn event_key(project_id: Uuid, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(24);
    key.extend_from_slice(project_id.as_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn seq_from_key(key: &[u8]) -> u64 {
    key.get(16..24)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn late_watcher_replays_latest_job_then_streams() {
        let store = Store::temporary().unwrap();
        let hub = EventHub::new(store);
        let project = Uuid::now_v7();
        let (old_job, new_job) = (Uuid::now_v7(), Uuid::now_v7());
        hub.publish(project, old_job, EventKind::Queued).unwrap();
        hub.publish(project, new_job, EventKind::Queued).unwrap();
        hub.publish(project, new_job, EventKind::Started { attempt: 1 })
            .unwrap();

        let (replayed, mut live) = hub.watch(project).unwrap();
        assert_eq!(
            replayed.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(replayed.iter().all(|e| e.job_id == new_job));

        hub.publish(
            project,
            new_job,
            EventKind::Summary {
                text: "done".into(),
            },
        )
        .unwrap();
        let next = live.recv().await.unwrap();
        assert_eq!(next.seq, 4);
        assert_eq!(
            next.kind,
            EventKind::Summary {
                text: "done".into()
            }
        );
    }

    #[tokio::test]
    async fn every_watcher_gets_the_same_shared_event_not_a_copy() {
        let hub = EventHub::new(Store::temporary().unwrap());
        let (project, job) = (Uuid::now_v7(), Uuid::now_v7());
        let (_, mut first) = hub.watch(project).unwrap();
        let (_, mut second) = hub.watch(project).unwrap();
        hub.publish(
            project,
            job,
            EventKind::ModelText {
                text: "a long answer".repeat(100),
            },
        )
        .unwrap();
        let (a, b) = (first.recv().await.unwrap(), second.recv().await.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "one payload fanned out");
    }

    #[test]
    fn sequences_are_per_project() {
        let hub = EventHub::new(Store::temporary().unwrap());
        let (a, b, job) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(hub.publish(a, job, EventKind::Queued).unwrap().seq, 1);
        assert_eq!(hub.publish(b, job, EventKind::Queued).unwrap().seq, 1);
        assert_eq!(hub.publish(a, job, EventKind::Queued).unwrap().seq, 2);
    }

    #[test]
    fn only_the_newest_jobs_events_are_kept() {
        let store = Store::temporary().unwrap();
        let hub = EventHub::new(store.clone());
        let project = Uuid::now_v7();
        let jobs: Vec<Uuid> = (0..KEPT_JOBS + 3).map(|_| Uuid::now_v7()).collect();
        let mut last = 0;
        for job in &jobs {
            for _ in 0..4 {
                last = hub.publish(project, *job, EventKind::Queued).unwrap().seq;
            }
        }
        assert_eq!(
            last,
            (jobs.len() * 4) as u64,
            "sequence numbers keep rising"
        );
        let kept: Vec<Event> = store
            .events_tree()
            .scan_prefix(project.as_bytes())
            .values()
            .map(|value| serde_json::from_slice(&value.unwrap()).unwrap())
            .collect();
        assert_eq!(kept.len(), KEPT_JOBS * 4);
        let kept_jobs: std::collections::BTreeSet<Uuid> =
            kept.iter().map(|event| event.job_id).collect();
        assert_eq!(
            kept_jobs,
            jobs[jobs.len() - KEPT_JOBS..].iter().copied().collect()
        );
        assert!(
            hub.latest_job_events(project)
                .unwrap()
                .iter()
                .all(|e| e.job_id == jobs[jobs.len() - 1])
        );
    }
}
