//! Streaming chat completions: server-sent events whose `chat.completion.chunk`s carry
//! pieces of the answer (text, reasoning, tool calls by index) that add up to one message.

use serde::Deserialize;
use serde_json::Value;

use super::{ChatMessage, ChatResponse, ChatRole, FunctionCall, ToolCall};
use crate::store::TokenUsage;

/// The answer so far, as the agent sees it while it streams in.
#[derive(Debug, Clone, Copy)]
pub struct Partial<'a> {
    pub text: &'a str,
    /// The tool call being written right now: its name and its arguments so far.
    pub tool: Option<(&'a str, &'a str)>,
}

/// Why a stream could not be read.
#[derive(Debug)]
pub enum StreamError {
    /// A chunk that is not JSON of the expected shape.
    Unreadable(String),
    /// The server put an `error` object in the stream (the model failed midway, or its
    /// output was malformed), with what it had generated when it says.
    Reported {
        message: String,
        generated: Option<String>,
    },
}

/// Adds up the chunks of one streamed answer.
#[derive(Default)]
pub struct Accumulator {
    /// Bytes received but not yet a whole event (kept as bytes: a character may be split).
    pending: Vec<u8>,
    content: String,
    reasoning: String,
    calls: Vec<ToolCall>,
    /// Which call each wire index fills.
    slots: std::collections::HashMap<usize, usize>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    /// The answer's `id`, as its chunks carry it.
    id: Option<String>,
    done: bool,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<ChunkUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, alias = "reasoning_content")]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Vec<CallDelta>,
}

/// A piece of a tool call. `index` says which call it belongs to; some servers leave it
/// out, start at 1 (after a text block) or repeat an empty `id` in every later piece.
/// llama.cpp may put `name` and `arguments` beside `function` instead of in it.
#[derive(Deserialize)]
struct CallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    cost: Option<f64>,
}

impl Accumulator {
    /// Takes in received bytes; returns whether any event was complete (the answer grew).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<bool, StreamError> {
        self.pending.extend_from_slice(bytes);
        let mut grew = false;
        while let Some(end) = event_end(&self.pending) {
            let raw: Vec<u8> = self.pending.drain(..end.0 + end.1).collect();
            let event = String::from_utf8_lossy(&raw);
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if data.is_empty() {
                continue; // comments and keep-alives
            }
            let data = data.join("\n");
            if data.trim() == "[DONE]" {
                self.done = true;
                continue;
            }
            self.apply(&data)?;
            grew = true;
        }
        Ok(grew)
    }

    fn apply(&mut self, data: &str) -> Result<(), StreamError> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|error| {
            StreamError::Unreadable(format!("unreadable chunk ({error}): {data}"))
        })?;
        if let Some(error) = chunk.error.filter(|error| !error.is_null()) {
            let text = serde_json::json!({ "error": error }).to_string();
            return Err(StreamError::Reported {
                message: super::completion::error_message(&text),
                generated: super::completion::failed_generation(&text)
                    .filter(|generated| !generated.is_empty()),
            });
        }
        if let Some(id) = chunk.id.filter(|id| !id.is_empty()) {
            self.id.get_or_insert(id);
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(TokenUsage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                model_calls: 1,
                cost_usd: usage.cost,
                calls: Vec::new(),
            });
        }
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason.filter(|reason| !reason.is_empty()) {
                self.finish_reason = Some(reason);
            }
            let delta = choice.delta;
            self.content
                .push_str(delta.content.as_deref().unwrap_or_default());
            self.reasoning
                .push_str(delta.reasoning.as_deref().unwrap_or_default());
            for call in delta.tool_calls {
                self.add_call_piece(call);
            }
        }
        Ok(())
    }

    /// Adds one piece to the call it belongs to: by its index, or without one, to the last
    /// call unless it brings a new id. A later empty id or name never replaces a real one,
    /// and a name sent again whole is not doubled.
    fn add_call_piece(&mut self, piece: CallDelta) {
        let id = piece.id.filter(|id| !id.is_empty());
        let position = match piece.index {
            Some(index) => self.slots.get(&index).copied(),
            None => self.calls.len().checked_sub(1).filter(|&last| {
                id.as_ref()
                    .is_none_or(|id| self.calls[last].id.is_empty() || self.calls[last].id == *id)
            }),
        };
        let position = position.unwrap_or_else(|| {
            self.calls.push(ToolCall {
                id: String::new(),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: String::new(),
                    arguments: String::new(),
                },
            });
            let position = self.calls.len() - 1;
            if let Some(index) = piece.index {
                self.slots.insert(index, position);
            }
            position
        });
        let target = &mut self.calls[position];
        if let Some(id) = id
            && target.id.is_empty()
        {
            target.id = id;
        }
        let (name, arguments) = match piece.function {
            Some(function) => (
                function.name.or(piece.name),
                function.arguments.or(piece.arguments),
            ),
            None => (piece.name, piece.arguments),
        };
        if let Some(name) = name.filter(|name| !name.is_empty())
            && target.function.name != name
        {
            target.function.name.push_str(&name);
        }
        if let Some(arguments) = arguments {
            target
                .function
                .arguments
                .push_str(&super::types::value_as_text(arguments));
        }
    }

    pub fn partial(&self) -> Partial<'_> {
        Partial {
            text: &self.content,
            tool: self.calls.last().map(|call| {
                (
                    call.function.name.as_str(),
                    call.function.arguments.as_str(),
                )
            }),
        }
    }

    /// The whole answer, once the stream ended properly (`[DONE]` or a finish reason).
    pub fn finish(mut self) -> Result<ChatResponse, String> {
        if !self.done && self.finish_reason.is_none() {
            return Err("the stream ended before the answer was complete".into());
        }
        ToolCall::settle(&mut self.calls);
        Ok(ChatResponse {
            message: ChatMessage {
                role: ChatRole::Assistant,
                content: Some(self.content),
                tool_calls: self.calls,
                tool_call_id: None,
                reasoning: Some(self.reasoning).filter(|reasoning| !reasoning.is_empty()),
                images: Vec::new(),
            },
            usage: TokenUsage {
                calls: vec![crate::store::CallId {
                    id: self.id,
                    request_id: None,
                }],
                ..self.usage.unwrap_or(TokenUsage {
                    model_calls: 1,
                    ..TokenUsage::default()
                })
            },
            finish_reason: self.finish_reason,
        })
    }
}

/// Where the first complete event ends: (position, length of the blank-line separator).
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    [&b"\r\n\r\n"[..], &b"\n\n"[..]]
        .into_iter()
        .filter_map(|separator| {
            buffer
                .windows(separator.len())
                .position(|window| window == separator)
                .map(|at| (at, separator.len()))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> String {
        format!("data: {json}\n\n")
    }

    #[test]
    fn chunks_add_up_to_text_tool_calls_and_usage_across_split_bytes() {
        let stream = [
            event(r#"{"choices":[{"delta":{"role":"assistant","content":"Hé"}}]}"#),
            ": keep-alive\n\n".to_string(),
            event(r#"{"choices":[{"delta":{"content":"lo","reasoning_content":"hm"}}]}"#),
            event(
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"terminal","arguments":"{\"comm"}}]}}]}"#,
            ),
            event(
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"and\":\"ls\"}"}}]}}]}"#,
            ),
            event(r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#),
            event(
                r#"{"id":"chatcmpl-9","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"cost":0.001}}"#,
            ),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let mut accumulator = Accumulator::default();
        // Fed in pieces that cut through events and characters.
        for piece in stream.as_bytes().chunks(7) {
            accumulator.feed(piece).unwrap();
        }
        assert_eq!(
            accumulator.partial().tool,
            Some(("terminal", r#"{"command":"ls"}"#))
        );
        let response = accumulator.finish().unwrap();
        assert_eq!(response.message.content.as_deref(), Some("Hélo"));
        assert_eq!(response.message.reasoning.as_deref(), Some("hm"));
        assert_eq!(response.message.tool_calls[0].id, "c1");
        assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(response.usage.prompt_tokens, 7);
        assert_eq!(response.usage.cost_usd, Some(0.001));
        assert_eq!(response.usage.calls[0].id.as_deref(), Some("chatcmpl-9"));
    }

    #[test]
    fn a_stream_cut_short_is_an_error() {
        let mut accumulator = Accumulator::default();
        accumulator
            .feed(event(r#"{"choices":[{"delta":{"content":"Hel"}}]}"#).as_bytes())
            .unwrap();
        assert!(accumulator.finish().is_err());
        let mut broken = Accumulator::default();
        assert!(broken.feed(b"data: {oops\n\n").is_err());
        assert!(
            Accumulator::default()
                .feed(event(r#"{"error":{"message":"overloaded"}}"#).as_bytes())
                .is_err()
        );
    }
}
