//! The coding agent: asks the model for the next step, runs the tools it calls in the
//! sandbox, and repeats until the model hands in a `<task_summary>` or the step cap is hit.

pub mod browser_check;
mod compaction;
pub mod dev_server;
mod edit_file;
pub mod installs;
mod live;
mod markup;
pub mod prompt;
pub mod reply;
mod settings;
mod text_calls;
pub mod tools;
pub mod verify;

pub use settings::AgentSettings;

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::Instrument;

use crate::events::EventKind;
use crate::llm::{ChatMessage, ChatRequest, Llm, LlmError};
use crate::sandbox::Sandbox;
use crate::store::{SelectedElement, TokenUsage, Verification, VerificationStatus};

pub use tools::{Journal, Toolbox};

/// Low temperature: the agent should write code, not improvise.
const AGENT_TEMPERATURE: f32 = 0.1;
const NUDGE: &str = "Keep going: use the tools to build the app. When it is complete, reply with only the <task_summary> block.";
/// After an answer cut off by the model's output limit (`finish_reason: "length"`).
const CONTINUE: &str = "Your last answer was cut off by the output limit. Continue where you stopped; write large files in several smaller tool calls.";

/// What the agent is asked to do.
#[derive(Debug, Clone)]
pub struct AgentTask {
    /// Earlier conversation turns (user and assistant text), oldest first.
    pub history: Vec<ChatMessage>,
    /// The new request.
    pub prompt: String,
    /// Files the app already has (restored from its last version), for context.
    pub existing_files: Vec<String>,
    /// Images attached to the new request, as `data:` URLs.
    pub images: Vec<String>,
    /// Elements the person picked in the preview: where the change goes.
    pub selected: Vec<SelectedElement>,
    /// An imported app's own `package.json`: the app is not the template, and the versions
    /// it runs are the ones an install must keep.
    pub own_manifest: Option<String>,
}

/// A finished run that produced (or kept) an app.
#[derive(Debug, Clone)]
pub struct AgentResult {
    pub title: String,
    /// The friendly answer shown to the user.
    pub reply: String,
    pub summary: String,
    /// Files written during this run, path → content.
    pub written: BTreeMap<String, String>,
    pub usage: TokenUsage,
    pub iterations: u32,
    /// Set when the step cap ended the run but files had been written, or when the app
    /// still fails its check.
    pub note: Option<String>,
    /// The outcome of the last check, when the app was checked.
    pub verification: Option<Verification>,
    /// The last browser check's screenshots, `(page index, JPEG)`, kept with the version.
    pub screenshots: Vec<(usize, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Model(#[from] LlmError),
    #[error("the agent used all {0} steps without writing any files")]
    NothingBuilt(u32),
    #[error(
        "the request reached its budget of {budget} tokens (CODEFLUX_REQUEST_TOKEN_BUDGET) after {used} tokens, before any file was written"
    )]
    BudgetSpent { budget: u64, used: u64 },
    #[error(
        "the sandbox stopped working during `{doing}`: {reason}. The files of the last version are kept; send the prompt again to retry."
    )]
    SandboxLost { doing: String, reason: String },
    #[error(
        "the model {model} did not accept the attached images ({reason}). Choose a model that reads images (a vision model, for example gpt-4o, Claude, Gemini, Qwen2.5-VL or LLaVA), or send the request without images."
    )]
    ImagesRefused { model: String, reason: String },
    #[error(
        "the conversation no longer fits the model {model}'s context window, even with older traffic cut (the server said: {reason}). Use a model with a larger window, or ask for a smaller change."
    )]
    ContextFull { model: String, reason: String },
}

pub struct Agent<'a> {
    /// Where every written file is also recorded as it is written (kept if the job stops).
    pub journal: Option<Journal>,
    pub llm: &'a dyn Llm,
    pub sandbox: &'a dyn Sandbox,
    pub settings: &'a AgentSettings,
    /// Receives progress as it happens.
    pub on_event: &'a (dyn Fn(EventKind) + Send + Sync),
}

impl Agent<'_> {
    pub async fn run(&self, task: &AgentTask) -> Result<AgentResult, AgentError> {
        let mut messages = vec![ChatMessage::system(prompt::system_prompt(
            self.settings.offline,
        ))];
        messages.extend(task.history.iter().cloned());
        messages.push(ChatMessage::user_with_images(
            prompt::user_turn(task),
            task.images.clone(),
        ));

        let dev_server = dev_server::Watch::start(self.sandbox).await;
        let mut toolbox = Toolbox {
            sandbox: self.sandbox,
            command_timeout: self.settings.command_timeout,
            written: BTreeMap::new(),
            journal: self.journal.clone(),
            pins: match &task.own_manifest {
                Some(manifest) => installs::Pins::from_manifest(
                    &serde_json::from_str(manifest).unwrap_or_default(),
                ),
                None => installs::Pins::of_template(),
            },
            dev_server: Some(&dev_server),
        };
        let mut usage = TokenUsage::default();
        let budget = self.settings.token_budget;
        // Checked before each call: a call is never cut, so one can pass the budget by its size.
        let spent = |usage: &TokenUsage| budget.is_some_and(|budget| usage.total() >= budget);
        let max = self.settings.max_iterations.max(1);
        let mut summary = None;
        let mut last_text = String::new();
        let mut iterations = 0;
        // A turn with neither a tool call nor a summary is nudged once without counting as a
        // step; after that, such turns count.
        let mut free_nudge = true;

        // Checked against what the dev server says from now on.
        let checker = if self.settings.verify {
            Some(
                verify::Checker::start(self.sandbox, &dev_server)
                    .await
                    .with_browser(self.settings.browser_check),
            )
        } else {
            None
        };
        let mut verification = None;
        let mut fix_rounds = 0;
        let mut seen_failures = std::collections::HashSet::new();
        let mut earlier_summary = None;
        let mut browser: Option<browser_check::Outcome> = None;
        // A model that reads images is shown the front page once, after everything passes.
        let mut looked = !self.settings.model_sees_images && task.images.is_empty();

        loop {
            while iterations < max && summary.is_none() && !spent(&usage) {
                iterations += 1;
                (self.on_event)(EventKind::ModelTurn {
                    iteration: iterations,
                    max_iterations: max,
                    tokens: usage.total(),
                    token_budget: budget,
                });
                let live = live::LiveOutput::new(self.on_event);
                let mut compactions = 0;
                let response = loop {
                    let answer = self
                        .llm
                        .chat_streaming(
                            &ChatRequest {
                                messages: messages.clone(),
                                tools: tools::specs(),
                                temperature: AGENT_TEMPERATURE,
                            },
                            &|partial| live.observe(partial),
                        )
                        .await;
                    match answer {
                        // Too long for the model's window: cut older traffic, try again.
                        Err(LlmError::Rejected { message, .. })
                            if compaction::is_context_overflow(&message) =>
                        {
                            if compactions == compaction::MAX_ROUNDS {
                                return Err(AgentError::ContextFull {
                                    model: self.llm.model().to_string(),
                                    reason: message,
                                });
                            }
                            let saved = compaction::compact(&mut messages, compactions);
                            compactions += 1;
                            (self.on_event)(EventKind::Compacted {
                                round: compactions as u32,
                                saved_bytes: saved as u64,
                            });
                        }
                        other => break other,
                    }
                }
                .map_err(|error| match error {
                    // A server that cannot read images refuses the whole request.
                    LlmError::Rejected { message, .. } if !task.images.is_empty() => {
                        AgentError::ImagesRefused {
                            model: self.llm.model().to_string(),
                            reason: message,
                        }
                    }
                    other => AgentError::Model(other),
                })?;
                usage.add(response.usage);
                let cut_off = response.finish_reason.as_deref() == Some("length");
                let reply = reply::normalize(&response.message);
                if let Some(thinking) = &reply.thinking {
                    (self.on_event)(EventKind::ModelThinking {
                        text: tools::truncate_middle(thinking, 2000),
                    });
                }
                summary = prompt::extract_summary(&reply.text);
                if summary.is_none() && !reply.text.is_empty() {
                    (self.on_event)(EventKind::ModelText {
                        text: tools::truncate_middle(&reply.text, 400),
                    });
                    last_text = reply.text.clone();
                }
                messages.push(reply.as_message());
                // Several calls in one turn run in order, each answered on its own.
                for call in &reply.calls {
                    let outcome = self
                        .call_tool(&mut toolbox, &call.function.name, &call.function.arguments)
                        .await?;
                    messages.push(ChatMessage::tool_result(&call.id, outcome));
                }
                if reply.calls.is_empty() && summary.is_none() {
                    messages.push(ChatMessage::user(if cut_off { CONTINUE } else { NUDGE }));
                    if free_nudge && !cut_off {
                        free_nudge = false;
                        iterations -= 1;
                    }
                }
            }

            let (Some(checker), Some(_)) = (&checker, &summary) else {
                break;
            };
            (self.on_event)(EventKind::Checking);
            let problems = match checker.check(self.sandbox).await {
                Ok(problems) => problems,
                Err(error) if error.is_lost() => {
                    return Err(AgentError::SandboxLost {
                        doing: "checking the app".into(),
                        reason: error.to_string(),
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "could not check the app");
                    break;
                }
            };
            if let Some(outcome) = checker.take_browser() {
                (self.on_event)(EventKind::BrowserChecked {
                    summary: outcome.check.describe(),
                    pages: outcome.check.pages.len(),
                    clicks: outcome.check.clicks() as usize,
                    problems: outcome.check.problems() as usize,
                });
                browser = Some(outcome);
            }
            if problems.is_empty() {
                let front_page = browser
                    .as_ref()
                    .and_then(browser_check::Outcome::front_page_image);
                if let (false, Some(image)) = (looked, front_page)
                    && iterations < max
                    && !spent(&usage)
                {
                    looked = true;
                    (self.on_event)(EventKind::LookingAtScreenshot);
                    messages.push(ChatMessage::user_with_images(
                        prompt::look_at_screenshot(&task.prompt, !task.images.is_empty()),
                        vec![image],
                    ));
                    earlier_summary = summary.take();
                    continue;
                }
                verification = Some(Verification {
                    status: VerificationStatus::Passed,
                    errors: Vec::new(),
                    browser: browser.as_ref().map(|outcome| outcome.check.clone()),
                });
                (self.on_event)(EventKind::CheckPassed);
                break;
            }
            // Another round unless the budget is spent or the same failure came back.
            let fixing = fix_rounds < self.settings.fix_attempts
                && iterations < max
                && !spent(&usage)
                && seen_failures.insert(verify::fingerprint(&problems));
            (self.on_event)(EventKind::CheckFailed {
                summary: verify::describe(&problems),
                fixing,
            });
            verification = Some(Verification {
                status: VerificationStatus::Failed,
                errors: problems
                    .iter()
                    .map(|problem| problem.text().to_string())
                    .collect(),
                browser: browser.as_ref().map(|outcome| outcome.check.clone()),
            });
            if !fixing {
                break;
            }
            fix_rounds += 1;
            messages.push(ChatMessage::user(verify::feedback(&problems)));
            earlier_summary = summary.take();
        }
        let summary = summary.or(earlier_summary);

        let over_budget = budget.filter(|_| spent(&usage));
        let mut note = match (&summary, over_budget) {
            (None, Some(budget)) => {
                if toolbox.written.is_empty() && task.existing_files.is_empty() {
                    return Err(AgentError::BudgetSpent {
                        budget,
                        used: usage.total(),
                    });
                }
                Some(format!(
                    "The request reached its budget of {budget} tokens (CODEFLUX_REQUEST_TOKEN_BUDGET) after {} tokens, before the agent said it was done; the files it wrote so far are saved.",
                    usage.total()
                ))
            }
            (None, None) => {
                if toolbox.written.is_empty() && task.existing_files.is_empty() {
                    return Err(AgentError::NothingBuilt(max));
                }
                Some(format!(
                    "The agent stopped after its limit of {max} steps before saying it was done; the files it wrote so far are saved."
                ))
            }
            (Some(_), Some(budget)) => Some(format!(
                "The request reached its budget of {budget} tokens (CODEFLUX_REQUEST_TOKEN_BUDGET) after {} tokens; what was left (checks, fixes) did not run.",
                usage.total()
            )),
            (Some(_), None) => None,
        };
        if let Some(Verification {
            status: VerificationStatus::Failed,
            errors,
            ..
        }) = &verification
        {
            let still = format!(
                "Still failing after {fix_rounds} fix attempt{}: {}",
                if fix_rounds == 1 { "" } else { "s" },
                errors.first().map(String::as_str).unwrap_or_default()
            );
            note = Some(match note {
                Some(note) => format!("{note}\n\n{still}"),
                None => still,
            });
        }
        let summary = summary.unwrap_or_else(|| {
            if last_text.is_empty() {
                format!("Work in progress on: {}", task.prompt)
            } else {
                last_text
            }
        });
        (self.on_event)(EventKind::Summary {
            text: summary.clone(),
        });

        // Past the budget, the title is the prompt's and the reply is the summary.
        let (title, title_usage) = match spent(&usage) {
            false => self.side_call(prompt::TITLE_PROMPT, &summary).await,
            true => (None, TokenUsage::default()),
        };
        usage.add(title_usage);
        let title = prompt::clean_title(title.as_deref().unwrap_or(&task.prompt));
        let (reply, reply_usage) = match spent(&usage) {
            false => self.side_call(prompt::REPLY_PROMPT, &summary).await,
            true => (None, TokenUsage::default()),
        };
        usage.add(reply_usage);
        let reply = reply.unwrap_or_else(|| summary.clone());

        Ok(AgentResult {
            title,
            reply,
            summary,
            written: toolbox.written,
            usage,
            iterations,
            note,
            verification,
            screenshots: browser
                .map(|outcome| outcome.screenshots)
                .unwrap_or_default(),
        })
    }

    /// Runs one tool call; its answer for the model, or the end of the job when the sandbox
    /// itself was lost.
    async fn call_tool(
        &self,
        toolbox: &mut Toolbox<'_>,
        name: &str,
        arguments: &str,
    ) -> Result<String, AgentError> {
        (self.on_event)(EventKind::ToolStarted {
            tool: name.to_string(),
            summary: Toolbox::describe(name, arguments),
        });
        let started = Instant::now();
        let outcome = toolbox
            .call(name, arguments)
            .instrument(tracing::info_span!("tool", tool = name))
            .await;
        tracing::info!(tool = name, ok = outcome.ok, summary = %outcome.summary, "tool call finished");
        (self.on_event)(EventKind::ToolFinished {
            tool: name.to_string(),
            summary: outcome.summary.clone(),
            ok: outcome.ok,
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
        if let Some(reason) = outcome.lost {
            return Err(AgentError::SandboxLost {
                doing: format!("{name} {}", Toolbox::describe(name, arguments)),
                reason,
            });
        }
        if let Err(error) = self.sandbox.extend(self.settings.sandbox_lifetime).await {
            tracing::warn!(%error, "could not extend the sandbox's lifetime");
        }
        Ok(outcome.content)
    }

    /// A small extra call (title, reply). Its failure must not sink a finished app, so it
    /// yields `None` and the caller falls back to plain text.
    async fn side_call(&self, instructions: &str, summary: &str) -> (Option<String>, TokenUsage) {
        let request = ChatRequest {
            messages: vec![
                ChatMessage::system(instructions),
                ChatMessage::user(summary),
            ],
            tools: Vec::new(),
            temperature: 0.3,
        };
        match self.llm.chat(&request).await {
            Ok(response) => {
                // Reasoning models think aloud here too: only the answer is kept.
                let text = reply::normalize(&response.message).text;
                (Some(text).filter(|text| !text.is_empty()), response.usage)
            }
            Err(error) => {
                tracing::warn!(%error, "title/reply call failed; using the summary instead");
                (None, TokenUsage::default())
            }
        }
    }
}
