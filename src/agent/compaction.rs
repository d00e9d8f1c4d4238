//! Making a run's conversation smaller when the model server says it is too long for its
//! context window. Old traffic goes first: a write's file contents become "N bytes
//! written", old tool results are cut to their head and tail. The system prompt, the request
//! and the newest turns are never cut.

use serde_json::Value;

use crate::llm::{ChatMessage, ChatRole};

/// How hard each round compacts: the newest messages kept whole, and how much of an older
/// tool result stays (head and tail each).
const ROUNDS: [(usize, usize); 2] = [(4, 400), (2, 120)];

/// How many rounds there are before the run gives up.
pub const MAX_ROUNDS: usize = ROUNDS.len();

/// Whether a server's refusal says the request is too long for the model's window. Servers
/// word it differently: OpenAI's `context_length_exceeded`, vLLM's "maximum context
/// length", Anthropic-style "prompt is too long", llama.cpp's "exceeds the context window",
/// others "too many tokens".
pub fn is_context_overflow(message: &str) -> bool {
    let lower = message.to_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "context length",
        "prompt is too long",
        "exceeds the context window",
        "exceed context window",
        "context window",
        "too many tokens",
    ]
    .iter()
    .any(|wording| lower.contains(wording))
}

/// Compacts `messages` for round `round` (0-based); returns how many bytes it saved, 0 when
/// nothing older was left to cut.
pub fn compact(messages: &mut [ChatMessage], round: usize) -> usize {
    let (keep, edge) = ROUNDS[round.min(ROUNDS.len() - 1)];
    // The system prompt and the request stay; so do the newest `keep` messages.
    let end = messages.len().saturating_sub(keep);
    let mut saved = 0;
    for message in messages.iter_mut().take(end).skip(2) {
        let before = size(message);
        match message.role {
            ChatRole::Assistant => {
                for call in &mut message.tool_calls {
                    call.function.arguments = shrink_arguments(&call.function.arguments, edge);
                }
            }
            ChatRole::Tool => {
                if let Some(content) = &mut message.content {
                    *content = head_and_tail(content, edge);
                }
            }
            _ => {}
        }
        saved += before.saturating_sub(size(message));
    }
    saved
}

fn size(message: &ChatMessage) -> usize {
    message.content.as_ref().map_or(0, String::len)
        + message
            .tool_calls
            .iter()
            .map(|call| call.function.arguments.len())
            .sum::<usize>()
}

/// A tool call's arguments with long strings (a file's contents, an edit) replaced by their
/// size, still valid JSON so the conversation stays well formed.
fn shrink_arguments(arguments: &str, edge: usize) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(arguments) else {
        return head_and_tail(arguments, edge);
    };
    shrink_strings(&mut value, edge);
    value.to_string()
}

fn shrink_strings(value: &mut Value, edge: usize) {
    match value {
        Value::String(text) if text.len() > edge * 2 => {
            *text = format!(
                "({} bytes, already written; read the file for its contents)",
                text.len()
            );
        }
        Value::Array(items) => items.iter_mut().for_each(|item| shrink_strings(item, edge)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|field| shrink_strings(field, edge)),
        _ => {}
    }
}

/// The first and last `edge` bytes of `text` (at character boundaries), the middle said.
fn head_and_tail(text: &str, edge: usize) -> String {
    if text.len() <= edge * 2 + 60 {
        return text.to_string();
    }
    let mut head = edge;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - edge;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n…({} bytes cut to fit the model's context)…\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{FunctionCall, ToolCall};

    fn write(id: &str, content: &str) -> ChatMessage {
        let arguments =
            serde_json::json!({ "files": [{ "path": "app/page.tsx", "content": content }] });
        ChatMessage {
            tool_calls: vec![ToolCall {
                id: id.into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "createOrUpdateFiles".into(),
                    arguments: arguments.to_string(),
                },
            }],
            ..ChatMessage::assistant(String::new())
        }
    }

    #[test]
    fn refusals_for_length_are_recognised_in_each_servers_words() {
        for message in [
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
            "context_length_exceeded",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "the request exceeds the context window of 32768",
            "Too many tokens in the request",
        ] {
            assert!(is_context_overflow(message), "{message}");
        }
        assert!(!is_context_overflow("Invalid API key"));
    }

    #[test]
    fn old_writes_and_outputs_shrink_and_the_newest_turns_stay_whole() {
        let big = "x".repeat(5000);
        let mut messages = vec![
            ChatMessage::system("system"),
            ChatMessage::user(big.clone()),
            write("a", &big),
            ChatMessage::tool_result("a", big.clone()),
            write("b", &big),
            ChatMessage::tool_result("b", big.clone()),
        ];
        let saved = compact(&mut messages, 0);
        assert_eq!(
            saved, 0,
            "the four newest are kept whole in the first round"
        );
        let saved = compact(&mut messages, 1);
        assert!(saved > 9000, "{saved}");
        assert_eq!(
            messages[1].content.as_deref(),
            Some(big.as_str()),
            "the request stays"
        );
        let arguments: Value =
            serde_json::from_str(&messages[2].tool_calls[0].function.arguments).unwrap();
        assert_eq!(arguments["files"][0]["path"], "app/page.tsx");
        assert!(
            arguments["files"][0]["content"]
                .as_str()
                .unwrap()
                .contains("5000 bytes")
        );
        assert!(messages[3].content.as_ref().unwrap().contains("bytes cut"));
        assert_eq!(
            messages[5].content.as_deref(),
            Some(big.as_str()),
            "the newest stay"
        );
        assert!(messages[4].tool_calls[0].function.arguments.contains(&big));
    }
}
