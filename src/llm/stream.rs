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

/// Adds up the chunks of one streamed answer.
#[derive(Default)]
pub struct Accumulator {
    /// Bytes received but not yet a whole event (kept as bytes: a character may be split).
    pending: Vec<u8>,
    content: String,
    reasoning: String,
    calls: Vec<ToolCall>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    done: bool,
}

#[derive(Deserialize)]
struct Chunk {
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

#[derive(Deserialize)]
struct CallDelta {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl Accumulator {
    /// Takes in received bytes; returns whether any event was complete (the answer grew).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<bool, String> {
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

    fn apply(&mut self, data: &str) -> Result<(), String> {
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|error| format!("unreadable chunk ({error}): {data}"))?;
        if let Some(error) = chunk.error {
            return Err(format!("the stream reported an error: {error}"));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(TokenUsage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                model_calls: 1,
            });
        }
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            let delta = choice.delta;
            self.content
                .push_str(delta.content.as_deref().unwrap_or_default());
            self.reasoning
                .push_str(delta.reasoning.as_deref().unwrap_or_default());
            for call in delta.tool_calls {
                while self.calls.len() <= call.index {
                    self.calls.push(ToolCall {
                        id: format!("call_{}", self.calls.len()),
                        kind: "function".to_string(),
                        function: FunctionCall {
                            name: String::new(),
                            arguments: String::new(),
                        },
                    });
                }
                let target = &mut self.calls[call.index];
                if let Some(id) = call.id {
                    target.id = id;
                }
                if let Some(function) = call.function {
                    target
                        .function
                        .name
                        .push_str(function.name.as_deref().unwrap_or_default());
                    target
                        .function
                        .arguments
                        .push_str(function.arguments.as_deref().unwrap_or_default());
                }
            }
        }
        Ok(())
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
    pub fn finish(self) -> Result<ChatResponse, String> {
        if !self.done && self.finish_reason.is_none() {
            return Err("the stream ended before the answer was complete".into());
        }
        Ok(ChatResponse {
            message: ChatMessage {
                role: ChatRole::Assistant,
                content: Some(self.content),
                tool_calls: self.calls,
                tool_call_id: None,
                reasoning: Some(self.reasoning).filter(|reasoning| !reasoning.is_empty()),
                images: Vec::new(),
            },
            usage: self.usage.unwrap_or(TokenUsage {
                model_calls: 1,
                ..TokenUsage::default()
            }),
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
            event(r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#),
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
