//! The four tools the model may call. Every call gets an answer: a success summary with
//! the output, or the error — never silence, never a crash on bad arguments.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

mod files;

use super::dev_server;
use super::installs::{self, Pins};
use crate::llm::ToolSpec;
use crate::sandbox::{Sandbox, SandboxError};

pub const TERMINAL: &str = "terminal";
pub const WRITE_FILES: &str = "createOrUpdateFiles";
pub const READ_FILES: &str = "readFiles";
pub const EDIT_FILE: &str = "editFile";

/// Longest text of one output stream handed back to the model.
const MAX_OUTPUT_CHARS: usize = 8_000;

pub fn specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: TERMINAL,
            description: "Run a shell command in the sandbox workspace /home/user. Returns the exit code, stdout and stderr.",
            parameters: json!({
                "type": "object",
                "properties": { "command": { "type": "string", "description": "The command, run with bash" } },
                "required": ["command"]
            }),
        },
        ToolSpec {
            name: WRITE_FILES,
            description: "Create or overwrite files in the sandbox. Paths are relative to /home/user.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "path": { "type": "string" },
                                "content": { "type": "string" }
                            },
                            "required": ["path", "content"]
                        }
                    }
                },
                "required": ["files"]
            }),
        },
        ToolSpec {
            name: EDIT_FILE,
            description: "Change part of an existing file: each edit replaces the text `find` (which must occur exactly once in the file; copy it from the file, with a few surrounding lines if needed) by `replace`. Edits apply in order; if one cannot, nothing is changed. Prefer this to rewriting a file for a small change.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": { "type": "string", "description": "Relative to /home/user, e.g. app/page.tsx" },
                    "edits": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "find": { "type": "string" },
                                "replace": { "type": "string" }
                            },
                            "required": ["find", "replace"]
                        }
                    }
                },
                "required": ["path", "edits"]
            }),
        },
        ToolSpec {
            name: READ_FILES,
            description: "Read files from the sandbox. Returns a JSON list of {path, content}.",
            parameters: json!({
                "type": "object",
                "properties": { "files": { "type": "array", "items": { "type": "string" } } },
                "required": ["files"]
            }),
        },
    ]
}

/// What a tool call produced, for the model and for the progress stream.
#[derive(Debug, Clone)]
pub struct ToolOutcome {
    pub ok: bool,
    /// The text returned to the model.
    pub content: String,
    /// One line for people: "wrote app/page.tsx (42 lines)".
    pub summary: String,
    /// Set when the sandbox itself was lost during the call (removed, engine gone): the
    /// job cannot go on, whatever the model would do next.
    pub lost: Option<String>,
}

impl ToolOutcome {
    fn failed(summary: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            ok: false,
            summary: summary.into(),
            content: content.into(),
            lost: None,
        }
    }

    /// A failure caused by `error`; a lost sandbox is marked so the job stops.
    fn sandbox_failed(
        summary: impl Into<String>,
        content: impl Into<String>,
        error: &SandboxError,
    ) -> Self {
        Self {
            lost: error.is_lost().then(|| error.to_string()),
            ..Self::failed(summary, content)
        }
    }
}

#[derive(Deserialize)]
struct TerminalArgs {
    command: String,
}

#[derive(Deserialize)]
struct WriteArgs {
    files: Vec<FileArg>,
}

#[derive(Deserialize)]
struct FileArg {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    edits: Vec<super::edit_file::Edit>,
}

#[derive(Deserialize)]
struct ReadArgs {
    files: Vec<String>,
}

/// Files written so far, path → content, shared with whoever must keep them even if the run
/// is stopped halfway.
pub type Journal = std::sync::Arc<std::sync::Mutex<BTreeMap<String, String>>>;

/// Runs tool calls against one sandbox and remembers every file written.
pub struct Toolbox<'a> {
    pub sandbox: &'a dyn Sandbox,
    pub command_timeout: Duration,
    /// Files written during this job, path → content.
    pub written: BTreeMap<String, String>,
    /// Also records each written file as soon as it is written.
    pub journal: Option<Journal>,
    /// The versions of Next.js and React the sandbox runs, which no call may change.
    pub pins: Pins,
    /// Tells the model when the dev server exited during one of its commands.
    pub dev_server: Option<&'a dev_server::Watch>,
}

impl<'a> Toolbox<'a> {
    /// A short human description of a call before it runs ("npm install zod").
    pub fn describe(name: &str, arguments: &str) -> String {
        match name {
            TERMINAL => serde_json::from_str::<TerminalArgs>(arguments)
                .map(|args| shorten(&args.command, 120))
                .unwrap_or_else(|_| "(unreadable command)".into()),
            WRITE_FILES | READ_FILES => {
                let paths: Vec<String> = match name {
                    WRITE_FILES => serde_json::from_str::<WriteArgs>(arguments)
                        .map(|args| args.files.into_iter().map(|file| file.path).collect())
                        .unwrap_or_default(),
                    _ => serde_json::from_str::<ReadArgs>(arguments)
                        .map(|args| args.files)
                        .unwrap_or_default(),
                };
                if paths.is_empty() {
                    "(no files)".into()
                } else {
                    shorten(&paths.join(", "), 120)
                }
            }
            EDIT_FILE => serde_json::from_str::<EditArgs>(arguments)
                .map(|args| shorten(&args.path, 120))
                .unwrap_or_else(|_| "(no file)".into()),
            other => format!("unknown tool {other}"),
        }
    }

    pub async fn call(&mut self, name: &str, arguments: &str) -> ToolOutcome {
        match name {
            TERMINAL => match parse::<TerminalArgs>(name, arguments, r#"{"command": "..."}"#) {
                Ok(args) => self.terminal(&args.command).await,
                Err(outcome) => outcome,
            },
            WRITE_FILES => {
                match parse::<WriteArgs>(
                    name,
                    arguments,
                    r#"{"files": [{"path": "...", "content": "..."}]}"#,
                ) {
                    Ok(args) => self.write_files(args.files).await,
                    Err(outcome) => outcome,
                }
            }
            READ_FILES => match parse::<ReadArgs>(name, arguments, r#"{"files": ["..."]}"#) {
                Ok(args) => self.read_files(&args.files).await,
                Err(outcome) => outcome,
            },
            EDIT_FILE => match parse::<EditArgs>(
                name,
                arguments,
                r#"{"path": "...", "edits": [{"find": "...", "replace": "..."}]}"#,
            ) {
                Ok(args) => self.edit_file(&args.path, &args.edits).await,
                Err(outcome) => outcome,
            },
            other => ToolOutcome::failed(
                format!("unknown tool {other}"),
                format!(
                    "Error: there is no tool named {other:?}. Use {TERMINAL}, {WRITE_FILES}, {EDIT_FILE} or {READ_FILES}."
                ),
            ),
        }
    }

    async fn terminal(&mut self, command: &str) -> ToolOutcome {
        let short = shorten(command, 80);
        if let Some(refusal) = self.pins.refusal(command) {
            return ToolOutcome::failed(
                format!("refused {short}: it would replace Next.js or React"),
                refusal,
            );
        }
        let packages_before = match (installs::changes_packages(command), self.dev_server) {
            (true, Some(_)) => dev_server::Packages::read(self.sandbox).await,
            _ => None,
        };
        let mut outcome = self.run_command(command, &short).await;
        if outcome.lost.is_none() {
            for note in self.after_command(packages_before).await {
                outcome.content.push_str("\n\n");
                outcome.content.push_str(&note);
            }
        }
        outcome
    }

    /// What the model should hear after a command: the dev server was restarted because the
    /// packages changed, or it exited during the command.
    async fn after_command(&self, packages_before: Option<dev_server::Packages>) -> Vec<String> {
        let Some(watch) = self.dev_server else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        if let Some(before) = packages_before
            && watch.restart_if_needed(self.sandbox, &before).await
        {
            notes.push(
                "package.json changed, so the dev server was restarted to load the new packages."
                    .to_string(),
            );
        }
        if let Ok(Some(news)) = watch.news(self.sandbox).await {
            notes.push(news);
        }
        notes
    }

    async fn run_command(&self, command: &str, short: &str) -> ToolOutcome {
        match self.sandbox.run(command, self.command_timeout).await {
            Ok(output) => {
                let streams = format!(
                    "stdout:\n{}\nstderr:\n{}",
                    truncate_middle(&output.stdout, MAX_OUTPUT_CHARS),
                    truncate_middle(&output.stderr, MAX_OUTPUT_CHARS)
                );
                if output.success() {
                    ToolOutcome {
                        ok: true,
                        summary: format!("ran {short}"),
                        content: format!("Command succeeded (exit code 0)\n{streams}"),
                        lost: None,
                    }
                } else {
                    ToolOutcome::failed(
                        format!("ran {short} (exit code {})", output.exit_code),
                        format!(
                            "Command failed with exit code {}\n{streams}",
                            output.exit_code
                        ),
                    )
                }
            }
            Err(error) => ToolOutcome::sandbox_failed(
                format!("ran {short}: {error}"),
                format!("Command failed: {error}"),
                &error,
            ),
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(
    tool: &str,
    arguments: &str,
    expected: &str,
) -> Result<T, ToolOutcome> {
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str(text).map_err(|error| {
        ToolOutcome::failed(
            format!("{tool}: unreadable arguments"),
            format!("Error: the arguments for {tool} are not valid JSON of the form {expected}: {error}. Call the tool again with valid arguments."),
        )
    })
}

/// Keeps the head and the tail of long output, which is where the useful lines are.
pub fn truncate_middle(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_string();
    }
    let keep = max_chars / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(total - keep).collect();
    format!(
        "{head}\n…[truncated {} characters]…\n{tail}",
        total - 2 * keep
    )
}

fn shorten(text: &str, max_chars: usize) -> String {
    let single_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if single_line.chars().count() <= max_chars {
        single_line
    } else {
        format!(
            "{}…",
            single_line.chars().take(max_chars).collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_head_and_tail_with_a_marker() {
        let text = format!("{}{}", "a".repeat(100), "z".repeat(100));
        let cut = truncate_middle(&text, 20);
        assert!(cut.starts_with("aaaaaaaaaa\n…[truncated 180 characters]…\nzzzzzzzzzz"));
        assert_eq!(truncate_middle("short", 20), "short");
    }

    #[test]
    fn describe_summarises_arguments() {
        assert_eq!(
            Toolbox::describe(TERMINAL, r#"{"command":"npm install zod"}"#),
            "npm install zod"
        );
        assert_eq!(
            Toolbox::describe(
                WRITE_FILES,
                r#"{"files":[{"path":"app/page.tsx","content":""}]}"#
            ),
            "app/page.tsx"
        );
        assert_eq!(Toolbox::describe(TERMINAL, "{oops"), "(unreadable command)");
    }
}
