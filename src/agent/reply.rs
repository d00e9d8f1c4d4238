//! What real models send, made regular before the agent acts on it: reasoning kept apart
//! from the answer, tool calls written as text (models without native tool calling), tool
//! names in other spellings, and arguments wrapped in code fences or followed by chatter.

use serde_json::Value;

use super::markup;
use super::text_calls;
use super::tools::{EDIT_FILE, READ_FILES, TERMINAL, WRITE_FILES};
use crate::llm::{ChatMessage, ChatRole, FunctionCall, ToolCall};

/// An assistant turn, regularised.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The answer text, reasoning removed.
    pub text: String,
    /// What the model thought aloud (`<think>` blocks, `reasoning` fields), if anything.
    pub thinking: Option<String>,
    /// Tool calls with canonical names and cleaned arguments.
    pub calls: Vec<ToolCall>,
}

impl Reply {
    /// The message to keep in the conversation: the answer and the calls, no reasoning.
    pub fn as_message(&self) -> ChatMessage {
        ChatMessage {
            role: ChatRole::Assistant,
            content: (!self.text.is_empty() || self.calls.is_empty()).then(|| self.text.clone()),
            tool_calls: self.calls.clone(),
            tool_call_id: None,
            reasoning: None,
            images: Vec::new(),
        }
    }
}

pub fn normalize(message: &ChatMessage) -> Reply {
    let (mut text, inline_thinking) = markup::split_reasoning(message.text_content());
    let thinking = [message.reasoning.clone(), inline_thinking]
        .into_iter()
        .flatten()
        .map(|part| part.trim().to_string())
        .filter(|part| !part.is_empty())
        .reduce(|first, second| format!("{first}\n\n{second}"));
    let mut calls: Vec<ToolCall> = message
        .tool_calls
        .iter()
        .map(|call| ToolCall {
            function: FunctionCall {
                name: canonical_tool_name(&call.function.name)
                    .map_or_else(|| call.function.name.clone(), str::to_string),
                arguments: clean_arguments(&call.function.arguments),
            },
            ..call.clone()
        })
        .collect();
    if calls.is_empty() {
        let (found, rest) = text_calls::calls_in_text(&text);
        if !found.is_empty() {
            calls = found;
            text = rest;
        }
    }
    Reply {
        text: markup::strip_leaked_calls(&text),
        thinking,
        calls,
    }
}

/// `terminal`, `createOrUpdateFiles`, `editFile` or `readFiles` for any spelling of them
/// (`create_or_update_files`, `CreateOrUpdateFiles`, `read-files`, `edit_file`, …).
pub fn canonical_tool_name(name: &str) -> Option<&'static str> {
    let folded: String = name
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    [TERMINAL, WRITE_FILES, EDIT_FILE, READ_FILES]
        .into_iter()
        .find(|tool| tool.to_lowercase() == folded)
}

/// The first JSON value in `raw`, as JSON text: code fences and anything after the value
/// are dropped. Unreadable arguments are left as they are, for the tool to report.
pub fn clean_arguments(raw: &str) -> String {
    let trimmed = strip_fence(raw.trim());
    let mut values = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
    match values.next() {
        Some(Ok(value)) => value.to_string(),
        _ => raw.to_string(),
    }
}

fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    // Skip the language tag on the fence's line.
    let body = rest.split_once('\n').map_or(rest, |(_, body)| body);
    body.rsplit_once("```")
        .map_or(body, |(inside, _)| inside)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assistant(content: &str) -> ChatMessage {
        ChatMessage::assistant(content)
    }

    #[test]
    fn tool_names_in_other_spellings_are_recognised() {
        for name in [
            "create_or_update_files",
            "CreateOrUpdateFiles",
            "createorupdatefiles",
        ] {
            assert_eq!(canonical_tool_name(name), Some(WRITE_FILES), "{name}");
        }
        assert_eq!(canonical_tool_name("read-files"), Some(READ_FILES));
        assert_eq!(canonical_tool_name("Terminal"), Some(TERMINAL));
        assert_eq!(canonical_tool_name("rm_rf"), None);
    }

    #[test]
    fn arguments_lose_fences_and_trailing_text() {
        assert_eq!(
            clean_arguments(r#"{"command":"ls"}"#),
            r#"{"command":"ls"}"#
        );
        assert_eq!(
            clean_arguments("```json\n{\"command\": \"ls\"}\n```"),
            r#"{"command":"ls"}"#
        );
        assert_eq!(
            clean_arguments("{\"command\": \"ls\"} I will now list the files."),
            r#"{"command":"ls"}"#
        );
        assert_eq!(clean_arguments("{oops"), "{oops");
    }

    #[test]
    fn thinking_is_kept_apart_from_the_answer() {
        let reply = normalize(&assistant("<think>plan: a page</think>\nDone."));
        assert_eq!(reply.text, "Done.");
        assert_eq!(reply.thinking.as_deref(), Some("plan: a page"));
        let opened_by_template = normalize(&assistant("plan first</think>answer"));
        assert_eq!(opened_by_template.text, "answer");
        assert_eq!(opened_by_template.thinking.as_deref(), Some("plan first"));
        let mut with_field = assistant("answer");
        with_field.reasoning = Some("from the field".into());
        assert_eq!(
            normalize(&with_field).thinking.as_deref(),
            Some("from the field")
        );
    }

    #[test]
    fn tool_calls_written_as_text_are_recognised() {
        let reply = normalize(&assistant(
            "I'll write the page.\n<tool_call>\n{\"name\": \"create_or_update_files\", \"arguments\": {\"files\": [{\"path\": \"app/page.tsx\", \"content\": \"x\"}]}}\n</tool_call>",
        ));
        assert_eq!(reply.calls.len(), 1);
        assert_eq!(reply.calls[0].function.name, WRITE_FILES);
        assert!(reply.calls[0].function.arguments.contains("app/page.tsx"));
        assert_eq!(reply.text, "I'll write the page.");

        let fenced = normalize(&assistant(
            "```json\n{\"name\": \"terminal\", \"arguments\": \"{\\\"command\\\": \\\"ls\\\"}\"}\n```\n```json\n{\"function\": {\"name\": \"readFiles\", \"parameters\": {\"files\": [\"a\"]}}}\n```",
        ));
        assert_eq!(fenced.calls.len(), 2);
        assert_eq!(fenced.calls[0].function.arguments, r#"{"command":"ls"}"#);
        assert_eq!(fenced.calls[1].function.name, READ_FILES);
        assert_ne!(fenced.calls[0].id, fenced.calls[1].id);

        // JSON that is not a tool call stays text.
        let plain = normalize(&assistant("The config is {\"port\": 3000}."));
        assert!(plain.calls.is_empty());
        assert_eq!(plain.text, "The config is {\"port\": 3000}.");
    }
}
