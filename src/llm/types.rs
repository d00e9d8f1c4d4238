//! The chat-completions shapes CodeFlux sends and receives, in OpenAI's wire format.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::store::TokenUsage;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: ChatRole,
    /// Absent when an assistant message only calls tools.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// What reasoning models think aloud (`reasoning` on OpenRouter and vLLM,
    /// `reasoning_content` on DeepSeek-style servers). Read, never sent back.
    #[serde(default, alias = "reasoning_content", skip_serializing)]
    pub reasoning: Option<String>,
    /// Images with a user message, as `data:` URLs; sent as OpenAI `image_url` content
    /// parts after the text (see [`ChatMessage::wire`]).
    #[serde(skip)]
    pub images: Vec<String>,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self::text(ChatRole::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::text(ChatRole::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text(ChatRole::Assistant, content)
    }

    pub fn tool_result(tool_call_id: &str, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.to_string()),
            ..Self::text(ChatRole::Tool, content)
        }
    }

    fn text(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning: None,
            images: Vec::new(),
        }
    }

    /// A user message with images after its text.
    pub fn user_with_images(content: impl Into<String>, images: Vec<String>) -> Self {
        Self {
            images,
            ..Self::user(content)
        }
    }

    /// The message as the API takes it: plain text content, or content parts when it
    /// carries images.
    pub fn wire(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if !self.images.is_empty() {
            let mut parts =
                vec![serde_json::json!({ "type": "text", "text": self.text_content() })];
            parts.extend(self.images.iter().map(
                |url| serde_json::json!({ "type": "image_url", "image_url": { "url": url } }),
            ));
            value["content"] = Value::Array(parts);
        }
        value
    }

    pub fn text_content(&self) -> &str {
        self.content.as_deref().unwrap_or_default()
    }
}

/// A tool call. Read from every shape servers send (see [`WireToolCall`]); written back in
/// OpenAI's. An id a server left out is empty until [`ToolCall::settle`] makes one up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "WireToolCall")]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text as the model wrote it: it may be malformed, so it is parsed by the tool.
    #[serde(deserialize_with = "arguments_as_text")]
    pub arguments: String,
}

/// A tool call as servers send it: OpenAI's `{id, type, function: {name, arguments}}`, or
/// llama.cpp's flat `{name, arguments}`, with the id, the type or the arguments left out
/// (OpenRouter sends no `arguments` for a call without parameters; Gemini an empty id).
#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

impl From<WireToolCall> for ToolCall {
    fn from(wire: WireToolCall) -> Self {
        let (name, arguments) = match wire.function {
            Some(function) => (
                function.name.or(wire.name),
                function.arguments.or(wire.arguments),
            ),
            None => (wire.name, wire.arguments),
        };
        ToolCall {
            id: wire.id.unwrap_or_default(),
            kind: function_type(),
            function: FunctionCall {
                name: name.unwrap_or_default(),
                arguments: arguments.map(value_as_text).unwrap_or_default(),
            },
        }
    }
}

impl ToolCall {
    /// Makes a list of calls fit to act on and to send back: calls with neither a name nor
    /// arguments (a stream's phantom slot) are dropped, missing arguments become `{}`, and a
    /// missing, empty or repeated id is replaced by a new one, once.
    pub fn settle(calls: &mut Vec<ToolCall>) {
        calls.retain(|call| {
            !(call.function.name.trim().is_empty() && call.function.arguments.trim().is_empty())
        });
        let mut seen = std::collections::HashSet::new();
        for call in calls.iter_mut() {
            if call.function.arguments.trim().is_empty() {
                call.function.arguments = "{}".to_string();
            }
            if call.id.trim().is_empty() || !seen.insert(call.id.clone()) {
                call.id = format!("call_{}", uuid::Uuid::now_v7().simple());
                seen.insert(call.id.clone());
            }
        }
    }
}

/// A tool the model may call, described by a JSON Schema of its arguments.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: Value,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub temperature: f32,
}

#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub message: ChatMessage,
    pub usage: TokenUsage,
    pub finish_reason: Option<String>,
}

fn function_type() -> String {
    "function".to_string()
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ToolCall>, D::Error> {
    Ok(Option::<Vec<ToolCall>>::deserialize(deserializer)?.unwrap_or_default())
}

/// OpenAI sends arguments as a JSON string; some local servers send an object instead.
fn arguments_as_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(value_as_text(Value::deserialize(deserializer)?))
}

pub(super) fn value_as_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
