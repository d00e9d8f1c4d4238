//! The records CodeFlux keeps. They are serialised as JSON into sled and are also the
//! shapes the JSON API returns.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    pub id: Uuid,
    /// A random two-word kebab slug, e.g. `brave-otter`.
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the project's files are laid over in a sandbox.
    #[serde(default)]
    pub base: AppBase,
}

/// What a project's versions are laid over in its sandbox.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AppBase {
    /// The bundled template: versions hold what the agent wrote, over the template's files
    /// and packages.
    #[default]
    Template,
    /// An app brought in whole (an import): each version is the whole app, a sandbox is
    /// cleared of the template's files before it is written, and its packages are its own.
    Own,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Result,
    Error,
    /// The user stopped the job before it finished.
    Stopped,
}

/// Tokens spent on the model calls behind one assistant message.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub model_calls: u32,
    /// What the calls cost in US dollars, where it is known: as the server reported it
    /// (`usage.cost`, as OpenRouter sends), or from the prices set (`CODEFLUX_PRICE_INPUT`,
    /// `CODEFLUX_PRICE_OUTPUT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Each call's ids, to find it in the server's own records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallId>,
}

/// How the server names one model call.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallId {
    /// The response's `id` (`chatcmpl-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The `x-request-id` header, where the server sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl TokenUsage {
    /// Prompt and completion tokens together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub fn add(&mut self, other: TokenUsage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.model_calls += other.model_calls;
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (None, None) => None,
            (one, other) => Some(one.unwrap_or(0.0) + other.unwrap_or(0.0)),
        };
        self.calls.extend(other.calls);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub project_id: Uuid,
    pub role: Role,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub content: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// Images attached to a prompt, in order (their bytes are stored apart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<super::images::ImageInfo>,
    /// Elements picked in the preview to say where the change goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected: Vec<SelectedElement>,
}

/// An element picked in the preview: where its JSX is, and the lines around it as they
/// stood when the prompt was sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SelectedElement {
    /// Relative to the app's folder, e.g. `components/habit-list.tsx`.
    pub file: String,
    pub line: u32,
    #[serde(default)]
    pub column: u32,
    /// The JSX tag, e.g. `Button` or `div`.
    pub name: String,
    /// Its visible text when it was picked (shortened), which tells apart the items of a
    /// list that one line of JSX renders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl SelectedElement {
    /// "`<Button>` in components/habit-list.tsx:42", as chips and the model see it.
    pub fn label(&self) -> String {
        format!("<{}> in {}:{}", self.name, self.file, self.line)
    }

    /// `file:line:column:Name`, the form the picker sends and the follow-up form keeps.
    pub fn tag(&self) -> String {
        format!("{}:{}:{}:{}", self.file, self.line, self.column, self.name)
    }

    /// What the follow-up form sends for it: the tag, or `{"loc", "text"}` with its text.
    pub fn form_value(&self) -> String {
        match &self.text {
            Some(text) => serde_json::json!({ "loc": self.tag(), "text": text }).to_string(),
            None => self.tag(),
        }
    }
}

/// A version of the generated app: the files as they stood when an assistant answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fragment {
    pub id: Uuid,
    pub message_id: Uuid,
    pub title: String,
    pub sandbox_url: String,
    pub files: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    /// Whether the app was checked to compile and render, and what failed if not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    pub status: VerificationStatus,
    /// What still fails (empty when it passed).
    #[serde(default)]
    pub errors: Vec<String>,
    /// The last browser check: its pages (with their screenshots) or why there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserCheck>,
}

/// What the browser check saw when the version was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct BrowserCheck {
    /// Why the app was not opened in a browser (no Chromium in the sandbox), when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    #[serde(default)]
    pub pages: Vec<CheckedPage>,
}

/// One page the browser check opened. Its screenshot, when there is one, is kept with the
/// version under the page's index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckedPage {
    pub route: String,
    pub clicks: u32,
    /// Problems the browser found on it (exceptions, failed requests, nothing visible).
    pub problems: u32,
    /// How long opening, watching and clicking it took.
    pub millis: u64,
    pub screenshot: bool,
}

impl BrowserCheck {
    pub fn clicks(&self) -> u32 {
        self.pages.iter().map(|page| page.clicks).sum()
    }

    pub fn problems(&self) -> u32 {
        self.pages.iter().map(|page| page.problems).sum()
    }

    /// "Checked in a browser: 3 pages, 14 clicks, no errors".
    pub fn describe(&self) -> String {
        if let Some(reason) = &self.unavailable {
            return format!("Not checked in a browser: {reason}");
        }
        let plural =
            |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let problems = match self.problems() {
            0 => "no errors".to_string(),
            n => plural(n, "error", "errors"),
        };
        format!(
            "Checked in a browser: {}, {}, {problems}",
            plural(self.pages.len() as u32, "page", "pages"),
            plural(self.clicks(), "click", "clicks"),
        )
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VerificationStatus {
    Passed,
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    /// Stopped at the user's request.
    Cancelled,
}

/// What a job does.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// The agent answers a prompt.
    #[default]
    Agent,
    /// An imported app's packages are installed and it is started, with no model.
    Install,
}

/// One generation request, recorded before the API answers so that it survives a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub project_id: Uuid,
    /// The user message this job answers (for an install, the message of the version it
    /// installs).
    pub message_id: Uuid,
    #[serde(default)]
    pub kind: JobKind,
    pub status: JobStatus,
    /// How many times a worker has started this job.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 10_000;

/// A message as the API and the pages show it: with the version its answer made, if any.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    #[serde(flatten)]
    pub message: Message,
    pub fragment: Option<Fragment>,
    /// The number of the version this answer made (v1, v2, …), when it made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// A version of the app as the API lists it: a fragment with its number (v1, v2, …).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Version {
    /// The fragment's id, used to restore it.
    pub id: Uuid,
    pub version: u32,
    pub message_id: Uuid,
    pub title: String,
    pub files: usize,
    pub created_at: DateTime<Utc>,
}

impl Version {
    pub fn of(fragment: &Fragment, version: u32) -> Self {
        Self {
            id: fragment.id,
            version,
            message_id: fragment.message_id,
            title: fragment.title.clone(),
            files: fragment.files.len(),
            created_at: fragment.created_at,
        }
    }
}

/// What a project is doing right now, derived from its unfinished jobs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProjectStatus {
    Idle,
    Queued,
    Running,
}
