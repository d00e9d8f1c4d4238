//! A whole (not streamed) chat completion, and the error bodies servers send instead.

use serde::Deserialize;
use serde_json::Value;

use super::{ChatMessage, ChatResponse, LlmError, ToolCall};
use crate::store::TokenUsage;

#[derive(Deserialize)]
struct CompletionBody {
    #[serde(default)]
    id: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<UsageBody>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChatMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct UsageBody {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    /// What the call cost, where the server says (OpenRouter).
    #[serde(default)]
    cost: Option<f64>,
}

pub fn parse_completion(text: &str) -> Result<ChatResponse, LlmError> {
    let body: CompletionBody = serde_json::from_str(text).map_err(|error| {
        // Some gateways answer 200 with an error object.
        let message = error_message(text);
        LlmError::BadResponse(format!("{error}: {message}"))
    })?;
    let choice = body
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::BadResponse("the response has no choices".into()))?;
    let calls = vec![crate::store::CallId {
        id: body.id.filter(|id| !id.is_empty()),
        request_id: None,
    }];
    let usage = match body.usage {
        None => TokenUsage {
            model_calls: 1,
            calls,
            ..TokenUsage::default()
        },
        Some(usage) => TokenUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            model_calls: 1,
            cost_usd: usage.cost,
            calls,
        },
    };
    let mut message = choice.message;
    ToolCall::settle(&mut message.tool_calls);
    Ok(ChatResponse {
        message,
        usage,
        finish_reason: choice.finish_reason.filter(|reason| !reason.is_empty()),
    })
}

/// What the model generated when the server refused its output as malformed: Groq's
/// `error.failed_generation` (with `code: "tool_use_failed"`), and the same field elsewhere.
pub fn failed_generation(text: &str) -> Option<String> {
    let body: Value = serde_json::from_str(text).ok()?;
    let error = body.get("error")?;
    match error.get("failed_generation") {
        Some(Value::String(generated)) => Some(generated.clone()),
        Some(other) if !other.is_null() => Some(other.to_string()),
        _ => {
            (error.get("code").and_then(Value::as_str) == Some("tool_use_failed")).then(String::new)
        }
    }
}

/// Pulls `error.message` out of an OpenAI-style error body, or shortens the raw text.
pub fn error_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let message = parsed.as_ref().and_then(|body| {
        body.pointer("/error/message")
            .or_else(|| body.get("error"))
            .or_else(|| body.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let message = message.unwrap_or_else(|| text.trim().to_string());
    let mut short: String = message.chars().take(500).collect();
    if short.is_empty() {
        short = "(empty body)".into();
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_calls_with_string_or_object_arguments() {
        let text = r#"{"choices":[{"finish_reason":"tool_calls","message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"a","type":"function","function":{"name":"terminal","arguments":"{\"command\":\"ls\"}"}},
                          {"id":"b","function":{"name":"readFiles","arguments":{"files":["x"]}}}]}}],
            "usage":{"prompt_tokens":10,"completion_tokens":3}}"#;
        let response = parse_completion(text).unwrap();
        let calls = &response.message.tool_calls;
        assert_eq!(calls[0].function.arguments, r#"{"command":"ls"}"#);
        assert_eq!(calls[1].function.arguments, r#"{"files":["x"]}"#);
        assert_eq!(response.usage.prompt_tokens, 10);
        assert_eq!(response.usage.model_calls, 1);
        assert_eq!(response.usage.cost_usd, None);
    }

    #[test]
    fn the_answers_id_and_a_reported_cost_are_kept() {
        // OpenRouter's shape: the cost in the usage object.
        let text = r#"{"id":"gen-17","choices":[{"message":{"role":"assistant","content":"hi"}}],
            "usage":{"prompt_tokens":10,"completion_tokens":3,"cost":0.00042}}"#;
        let response = parse_completion(text).unwrap();
        assert_eq!(response.usage.cost_usd, Some(0.00042));
        assert_eq!(response.usage.calls[0].id.as_deref(), Some("gen-17"));
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            error_message(r#"{"error":{"message":"no credits"}}"#),
            "no credits"
        );
        assert_eq!(error_message("  plain  "), "plain");
        assert!(matches!(
            parse_completion(r#"{"error":"x"}"#),
            Err(LlmError::BadResponse(_))
        ));
    }
}
