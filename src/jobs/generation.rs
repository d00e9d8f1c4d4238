//! One job's work: get the project's sandbox (restoring its files if it is fresh), run the
//! agent, and store the answer. Whatever happens, the job ends with an assistant message.

use std::sync::Arc;

use crate::agent::{Agent, AgentSettings, AgentTask};
use crate::events::{EventHub, EventKind};
use crate::llm::{ChatMessage, Llm};
use crate::sandbox::{Acquired, FileWrite, Sandbox, SandboxError, SandboxProvider, WorkspacePath};
use crate::store::snapshots::SnapshotKind;
use crate::store::{
    AppBase, Job, JobKind, Message, MessageType, NewFragment, Role, Store, StoreError,
};
use uuid::Uuid;

/// How many earlier messages the model sees as conversation context.
const HISTORY_MESSAGES: usize = 10;

/// Builds the stable preview URL of a project from a template like
/// `http://{project}.localhost:3001`.
#[derive(Debug, Clone)]
pub struct PreviewAddress {
    pub template: String,
}

impl PreviewAddress {
    pub fn url_for(&self, project_id: uuid::Uuid) -> String {
        self.template.replace("{project}", &project_id.to_string())
    }
}

pub struct Generation {
    pub store: Store,
    /// Files each running job has written so far, so a stopped job's work is not lost.
    pub journals: Journals,
    pub events: EventHub,
    pub llm: Arc<dyn Llm>,
    /// `None` when no backend is configured: jobs then fail with a message saying what to set.
    pub sandboxes: Option<Arc<dyn SandboxProvider>>,
    pub settings: AgentSettings,
    pub preview: PreviewAddress,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How many snapshots of each app's data are kept (`CODEFLUX_DATA_SNAPSHOTS`, `_MB`).
    pub data_limits: crate::store::snapshots::SnapshotLimits,
    /// Saves of one project's data take turns.
    pub(crate) data_saves: super::data::SaveTurns,
    /// Each new version's project, for whoever follows them (pushing to a git remote).
    pub versions_made: tokio::sync::broadcast::Sender<Uuid>,
}

/// A running sandbox with the project's files in place.
pub struct PreparedSandbox {
    pub sandbox: Arc<dyn Sandbox>,
    pub backend: &'static str,
    pub created: bool,
    pub restored_files: usize,
    /// Rows brought back into a fresh sandbox's database.
    pub restored_rows: u64,
    /// The app's own packages, installed into a fresh sandbox: how, or why it failed.
    pub installed: Option<Result<crate::packages::Installed, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(
        "No sandbox backend is configured. Start Docker (CODEFLUX_SANDBOX=docker) or set E2B_API_KEY (CODEFLUX_SANDBOX=e2b)."
    )]
    NoSandbox,
    #[error("The sandbox could not be prepared: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("{0}")]
    Agent(#[from] crate::agent::AgentError),
    #[error("Storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("The app's data could not be brought back: {0}")]
    Data(#[from] crate::data::DataError),
    #[error(
        "The job took longer than its limit of {} s and was stopped (CODEFLUX_JOB_TIMEOUT_SECS).", .0.as_secs()
    )]
    TimedOut(std::time::Duration),
}

impl Generation {
    /// Runs the job and stores its assistant message (result or error). The caller marks
    /// the job finished and then announces it (`EventKind::Finished`), in that order, so
    /// watchers that see the event also see the project idle.
    pub async fn run(&self, job: &Job) -> Result<Message, StoreError> {
        self.publish(
            job,
            EventKind::Started {
                attempt: job.attempts,
            },
        );
        let limit = self.settings.job_timeout;
        let work = async {
            match job.kind {
                JobKind::Agent => self.generate(job).await,
                JobKind::Install => self.install_and_start(job).await,
            }
        };
        let outcome = tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Err(JobError::TimedOut(limit)));
        self.journals.take(job.id);
        match outcome {
            Ok(message) => Ok(message),
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "job failed");
                self.fail(job, &error.to_string())
            }
        }
    }

    /// Ends a job the user stopped: the files it wrote stay in the sandbox and are kept for
    /// the next version.
    pub fn stopped(&self, job: &Job) -> Result<Message, StoreError> {
        let written = self.journals.take(job.id);
        let kept = written.len();
        if kept > 0 {
            self.store.add_unsaved_files(job.project_id, written)?;
        }
        let content = if kept == 0 {
            "Stopped at your request.".to_string()
        } else {
            format!(
                "Stopped at your request. The {kept} file{} written so far stay in the sandbox, and your next prompt continues from them.",
                if kept == 1 { "" } else { "s" }
            )
        };
        let (message, _) = self.store.add_assistant_message(
            job.project_id,
            MessageType::Stopped,
            &content,
            None,
            None,
        )?;
        Ok(message)
    }

    /// Ends a job with an error message the user can act on.
    pub fn fail(&self, job: &Job, reason: &str) -> Result<Message, StoreError> {
        let content = format!("Something went wrong: {reason}");
        let (message, _) = self.store.add_assistant_message(
            job.project_id,
            MessageType::Error,
            &content,
            None,
            None,
        )?;
        Ok(message)
    }

    async fn generate(&self, job: &Job) -> Result<Message, JobError> {
        let mut previous = self.store.latest_fragment(job.project_id)?;
        // Files a stopped job wrote are part of the app from here on.
        let unsaved = self.store.unsaved_files(job.project_id)?;
        let prepared = self.prepare_sandbox(job.project_id).await?;
        self.publish(
            job,
            EventKind::SandboxReady {
                backend: prepared.backend.to_string(),
                created: prepared.created,
                restored_files: prepared.restored_files,
            },
        );
        if let Some(installed) = &prepared.installed {
            self.publish(job, super::packages::event(installed));
        }
        let sandbox = prepared.sandbox;

        let message = self.store.message(job.project_id, job.message_id)?;
        let images = self.images_of(&message)?;
        let own_manifest = match self.store.project(job.project_id)?.base {
            AppBase::Own => previous
                .as_ref()
                .and_then(|fragment| fragment.files.get(crate::packages::MANIFEST).cloned()),
            AppBase::Template => None,
        };
        let task = AgentTask {
            own_manifest,
            history: self.history(job)?,
            prompt: message.content,
            images,
            selected: message.selected,
            existing_files: previous
                .as_ref()
                .map(|fragment| fragment.files.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .chain(unsaved.keys().cloned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        let on_event = |kind: EventKind| self.publish(job, kind);
        let agent = Agent {
            journal: Some(self.journals.start(job.id)),
            llm: self.llm.as_ref(),
            sandbox: sandbox.as_ref(),
            settings: &self.settings,
            on_event: &on_event,
        };
        let result = agent.run(&task).await?;

        let mut files = previous
            .take()
            .map(|fragment| fragment.files)
            .unwrap_or_default();
        files.extend(unsaved);
        files.extend(result.written);
        // Migrations come from `npm run db:push`, not from the model's writes.
        match crate::data::migration_files(sandbox.as_ref()).await {
            Ok(migrations) => files.extend(migrations),
            Err(error) => tracing::warn!(%error, "could not read the app's migrations"),
        }
        // So do the app's packages: `npm install` changed package.json and the lockfile.
        match crate::packages::read_back(sandbox.as_ref()).await {
            Ok(manifests) => {
                for (name, content) in manifests {
                    match content {
                        Some(content) => files.insert(name.to_string(), content),
                        None => files.remove(name),
                    };
                }
            }
            Err(error) => tracing::warn!(%error, "could not read the app's package.json"),
        }
        match super::removed::missing_files(sandbox.as_ref(), files.keys()).await {
            Ok(gone) => {
                for path in gone {
                    files.remove(&path);
                }
            }
            Err(error) => tracing::warn!(%error, "could not tell which files the job removed"),
        }
        let content = match &result.note {
            Some(note) => format!("{}\n\n{note}", result.reply),
            None => result.reply,
        };
        let (message, version) = self.store.add_assistant_message(
            job.project_id,
            MessageType::Result,
            &content,
            Some(result.usage),
            Some(NewFragment {
                title: result.title,
                sandbox_url: self.preview.url_for(job.project_id),
                files,
                verification: result.verification,
            }),
        )?;
        self.store.clear_unsaved_files(job.project_id)?;
        if let Some(version) = &version {
            self.store
                .put_screenshots(job.project_id, version.id, &result.screenshots)?;
            let kind = SnapshotKind::Version {
                version_id: version.id,
            };
            if let Err(error) = self.save_data(job.project_id, sandbox.as_ref(), kind).await {
                tracing::warn!(%error, "could not save the app's data with the version");
            }
        }
        if version.is_some() {
            self.version_made(job.project_id);
        }
        tracing::info!(steps = result.iterations, "job finished");
        Ok(message)
    }

    /// Gets the project's sandbox running. A fresh sandbox gets the files of the project's
    /// latest version back, so an expired sandbox (or a restart) loses nothing.
    pub async fn prepare_sandbox(&self, project_id: Uuid) -> Result<PreparedSandbox, JobError> {
        let provider = self.sandboxes.as_ref().ok_or(JobError::NoSandbox)?;
        let Acquired { sandbox, created } = provider.acquire(project_id).await?;
        let mut restored_files = 0;
        let mut restored_rows = 0;
        let mut installed = None;
        if created {
            if let Some(fragment) = self.store.latest_fragment(project_id)? {
                let own = self.store.project(project_id)?.base == AppBase::Own;
                if own {
                    super::packages::clear_template(sandbox.as_ref()).await?;
                }
                let writes = file_writes(&fragment.files)?;
                sandbox.write_files(&writes).await?;
                restored_files = writes.len();
                // Before the data: the app's own packages may be what opens its database.
                installed = super::packages::install_for(
                    sandbox.as_ref(),
                    &crate::packages::Manifests::template(),
                    &fragment.files,
                    own,
                )
                .await;
            }
            // Files first: the database is rebuilt from the code's migrations.
            match self.put_data_back(project_id, sandbox.as_ref()).await {
                Ok(counts) => restored_rows = counts.map_or(0, |counts| counts.rows),
                // The database refused the saved rows: another sandbox would refuse them
                // too. This one stays (the app runs), and it never saves over the project's
                // copy, which is kept as it was.
                Err(JobError::Data(crate::data::DataError::Refused(reason))) => {
                    tracing::error!(%project_id, %reason, "the app's saved data could not be brought back; it is kept, and this sandbox's data is not saved");
                }
                Err(error) => {
                    self.discard_sandbox(project_id, &error).await;
                    return Err(error);
                }
            }
        }
        Ok(PreparedSandbox {
            sandbox,
            backend: provider.name(),
            created,
            restored_files,
            restored_rows,
            installed,
        })
    }

    /// The conversation before this job's prompt, as model messages (errors left out).
    fn history(&self, job: &Job) -> Result<Vec<ChatMessage>, StoreError> {
        let messages: Vec<Message> = self
            .store
            .messages(job.project_id)?
            .into_iter()
            .take_while(|message| message.id != job.message_id)
            .filter(|message| message.kind == MessageType::Result)
            .collect();
        let skip = messages.len().saturating_sub(HISTORY_MESSAGES);
        Ok(messages
            .into_iter()
            .skip(skip)
            .map(|message| match message.role {
                // Earlier images are not sent again; the model is told they were there.
                Role::User => {
                    let mut text = message.content;
                    if !message.selected.is_empty() {
                        let places: Vec<String> = message
                            .selected
                            .iter()
                            .map(|element| element.label())
                            .collect();
                        text.push_str(&format!(
                            "\n\n[selected in the preview: {}]",
                            places.join(", ")
                        ));
                    }
                    if !message.images.is_empty() {
                        text.push_str(&format!(
                            "\n\n[{} image(s) were attached to this request]",
                            message.images.len()
                        ));
                    }
                    ChatMessage::user(text)
                }
                Role::Assistant => ChatMessage::assistant(message.content),
            })
            .collect())
    }

    /// The prompt's images as `data:` URLs, for the model.
    fn images_of(&self, message: &Message) -> Result<Vec<String>, StoreError> {
        use base64::Engine as _;
        let mut urls = Vec::with_capacity(message.images.len());
        for index in 0..message.images.len() {
            if let Some((media_type, bytes)) =
                self.store.image(message.project_id, message.id, index)?
            {
                let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                urls.push(format!("data:{media_type};base64,{data}"));
            }
        }
        Ok(urls)
    }

    pub fn publish(&self, job: &Job, kind: EventKind) {
        if let Err(error) = self.events.publish(job.project_id, job.id, kind) {
            tracing::error!(%error, "could not record a progress event");
        }
    }
}

/// A version's files as writes into the workspace.
pub(super) fn file_writes(
    files: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<FileWrite>, SandboxError> {
    files
        .iter()
        .map(|(path, content)| {
            Ok(FileWrite {
                path: WorkspacePath::parse(path)?,
                content: content.clone().into_bytes(),
            })
        })
        .collect()
}

/// What each running job has written so far, by job id.
#[derive(Default)]
pub struct Journals {
    jobs: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, Journal>>,
}

pub use crate::agent::Journal;

impl Journals {
    pub fn start(&self, job_id: uuid::Uuid) -> Journal {
        let journal = Journal::default();
        self.lock().insert(job_id, journal.clone());
        journal
    }

    /// The files the job wrote, and forgets the job.
    pub fn take(&self, job_id: uuid::Uuid) -> std::collections::BTreeMap<String, String> {
        self.lock()
            .remove(&job_id)
            .map(|journal| {
                std::mem::take(
                    &mut *journal
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()),
                )
            })
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<uuid::Uuid, Journal>> {
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
