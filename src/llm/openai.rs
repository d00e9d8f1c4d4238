//! A client for `POST {base}/chat/completions` that retries what is worth retrying.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::{Value, json};

use super::completion::{error_message, failed_generation, parse_completion};
use super::stream::{Accumulator, Partial, StreamError};
use super::{ChatMessage, ChatRequest, ChatResponse, Llm, LlmConfig, LlmError};

/// The longest wait we accept from a `Retry-After` header before trying again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub struct OpenAiClient {
    config: LlmConfig,
    http: reqwest::Client,
    /// For streamed answers: no limit on the whole answer, only on silence between chunks.
    stream_http: reqwest::Client,
    /// Cleared once the server said it cannot stream; plain calls from then on.
    streaming: AtomicBool,
}

impl OpenAiClient {
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        let unreachable = |error: reqwest::Error| LlmError::Unreachable {
            url: config.base_url.clone(),
            reason: error.to_string(),
        };
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(unreachable)?;
        let stream_http = reqwest::Client::builder()
            .read_timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(unreachable)?;
        Ok(Self {
            config,
            http,
            stream_http,
            streaming: AtomicBool::new(true),
        })
    }

    fn endpoint(&self) -> String {
        format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": request.messages.iter().map(ChatMessage::wire).collect::<Vec<_>>(),
            "temperature": request.temperature,
        });
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|tool| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": tool.name,
                            "description": tool.description,
                            "parameters": tool.parameters,
                        }
                    })
                })
                .collect();
            body["tool_choice"] = json!("auto");
        }
        body
    }

    /// One HTTP attempt. `Ok(Err(retry))` means the failure is worth another try.
    async fn attempt(&self, body: &Value) -> Result<Result<ChatResponse, Retry>, LlmError> {
        let mut builder = self.http.post(self.endpoint()).json(body);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => {
                return Ok(Err(Retry {
                    status: None,
                    wait: None,
                    message: describe_transport_error(&error),
                    malformed: false,
                    note: None,
                }));
            }
        };
        let status = response.status();
        let wait = retry_after(response.headers());
        let request_id = request_id(response.headers());
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => {
                return Ok(Err(Retry {
                    status: Some(status),
                    wait: None,
                    message: describe_transport_error(&error),
                    malformed: false,
                    note: None,
                }));
            }
        };
        if status.is_success() {
            // Gateways sometimes answer 200 with an error or with no choices when the model
            // behind them failed: worth another try, like a 5xx.
            return Ok(parse_completion(&text)
                .map(|answer| with_request_id(answer, request_id))
                .map_err(|error| unusable(error, &text)));
        }
        Self::failed(status, wait, &text)
    }

    /// A non-success answer: worth another try (429, 408, 5xx), or final.
    fn failed(
        status: StatusCode,
        wait: Option<Duration>,
        text: &str,
    ) -> Result<Result<ChatResponse, Retry>, LlmError> {
        let message = error_message(text);
        if let Some(generated) = failed_generation(text) {
            return Ok(Err(Retry::model_output(
                Some(status),
                message,
                Some(&generated),
            )));
        }
        // Ollama answers 500 "error parsing tool call: raw='…'" when the model's call is
        // not JSON: the model's fault, worth a retry with a word to it. A 4xx that names
        // tool calls is about our request (OpenAI's "Invalid 'messages[3].tool_calls'"), and
        // trying again would not change it.
        if status.is_server_error() && is_malformed_call(&message) {
            return Ok(Err(Retry::model_output(Some(status), message, None)));
        }
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(LlmError::Unauthorized {
                status: status.as_u16(),
                message,
            }),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Ok(Err(Retry {
                status: Some(status),
                wait,
                message,
                malformed: false,
                note: None,
            })),
            status if status.is_server_error() => Ok(Err(Retry {
                status: Some(status),
                wait,
                message,
                malformed: false,
                note: None,
            })),
            status => Err(LlmError::Rejected {
                status: status.as_u16(),
                message,
            }),
        }
    }

    /// One streamed attempt; answers that are not event streams are read whole.
    async fn attempt_streaming(
        &self,
        body: &Value,
        on_progress: &(dyn for<'p> Fn(Partial<'p>) + Send + Sync),
    ) -> Result<Result<ChatResponse, Retry>, LlmError> {
        let mut builder = self.stream_http.post(self.endpoint()).json(body);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let transport = |status: Option<StatusCode>, message: String| {
            Ok(Err(Retry {
                status,
                wait: None,
                message,
                malformed: false,
                note: None,
            }))
        };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => return transport(None, describe_transport_error(&error)),
        };
        let status = response.status();
        let wait = retry_after(response.headers());
        let request_id = request_id(response.headers());
        let is_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if !status.is_success() || !is_stream {
            let text = match response.text().await {
                Ok(text) => text,
                Err(error) => return transport(Some(status), describe_transport_error(&error)),
            };
            if status.is_success() {
                return Ok(parse_completion(&text)
                    .map(|answer| with_request_id(answer, request_id))
                    .map_err(|error| unusable(error, &text)));
            }
            return Self::failed(status, wait, &text);
        }
        let mut accumulator = Accumulator::default();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    return transport(
                        None,
                        format!(
                            "the answer's stream broke: {}",
                            describe_transport_error(&error)
                        ),
                    );
                }
            };
            match accumulator.feed(&chunk) {
                Ok(true) => on_progress(accumulator.partial()),
                Ok(false) => {}
                Err(StreamError::Unreadable(message)) => {
                    return Ok(Err(Retry::malformed(LlmError::BadResponse(message))));
                }
                Err(StreamError::Reported { message, generated }) => {
                    return Ok(Err(Retry::model_output(
                        None,
                        format!("the stream ended in an error: {message}"),
                        generated.as_deref(),
                    )));
                }
            }
        }
        Ok(accumulator
            .finish()
            .map(|answer| with_request_id(answer, request_id))
            .map_err(|message| Retry::malformed(LlmError::BadResponse(message))))
    }

    /// Tries `attempt` on `body` until it succeeds, fails for good, or the attempts are
    /// spent. After unusable model output the next try carries a note to the model.
    async fn with_retries<F, Fut>(
        &self,
        body: Value,
        mut attempt: F,
    ) -> Result<ChatResponse, LlmError>
    where
        F: FnMut(Value) -> Fut,
        Fut: std::future::Future<Output = Result<Result<ChatResponse, Retry>, LlmError>>,
    {
        let mut backoff = self.config.initial_backoff;
        let mut tries = 1;
        let mut next = body.clone();
        loop {
            let retry = match attempt(next.clone()).await? {
                Ok(response) => return Ok(response),
                Err(retry) => retry,
            };
            if tries >= self.config.max_attempts {
                return Err(self.give_up(retry, tries));
            }
            let wait = retry.wait.map_or(backoff, |wait| wait.min(MAX_RETRY_AFTER));
            tracing::warn!(attempt = tries, ?wait, status = ?retry.status, message = %retry.message, "model call failed; retrying");
            // Only the latest note is sent: the conversation itself is unchanged.
            if let Some(note) = retry.note {
                next = body.clone();
                if let Some(messages) = next["messages"].as_array_mut() {
                    messages.push(ChatMessage::user(note).wire());
                }
            }
            // Malformed output is the model's doing, not the server's load: no long wait.
            let wait = if retry.malformed && retry.wait.is_none() {
                wait.min(self.config.initial_backoff)
            } else {
                wait
            };
            tokio::time::sleep(wait).await;
            backoff = backoff.saturating_mul(2);
            tries += 1;
        }
    }

    fn give_up(&self, retry: Retry, attempts: u32) -> LlmError {
        if retry.malformed {
            return LlmError::BadResponse(format!("{} (after {attempts} attempts)", retry.message));
        }
        match retry.status {
            Some(StatusCode::TOO_MANY_REQUESTS) => LlmError::RateLimited {
                attempts,
                message: retry.message,
            },
            Some(status) => LlmError::Server {
                status: status.as_u16(),
                attempts,
                message: retry.message,
            },
            None => LlmError::Unreachable {
                url: self.endpoint(),
                reason: format!("{} (after {attempts} attempts)", retry.message),
            },
        }
    }
}

/// A failed attempt that may succeed if tried again.
struct Retry {
    status: Option<StatusCode>,
    wait: Option<Duration>,
    message: String,
    /// The server answered 200, but not with a usable chat completion.
    malformed: bool,
    /// Told to the model on the next try: its last output could not be used.
    note: Option<String>,
}

impl Retry {
    fn malformed(error: LlmError) -> Self {
        Self {
            status: None,
            wait: None,
            message: match error {
                LlmError::BadResponse(message) => message,
                other => other.to_string(),
            },
            malformed: true,
            note: None,
        }
    }

    /// The model's output was unusable (Groq's `tool_use_failed`, an `error` at the end of
    /// a 200 stream): another try, with a word to the model about what went wrong.
    fn model_output(status: Option<StatusCode>, message: String, generated: Option<&str>) -> Self {
        let mut note = format!(
            "Your previous answer could not be used: {message}. Answer again. Call a tool only with valid JSON arguments that match its schema, or reply with text."
        );
        if let Some(generated) = generated.filter(|text| !text.trim().is_empty()) {
            let shown: String = generated.chars().take(1500).collect();
            note.push_str(&format!("\nWhat you generated was:\n{shown}"));
        }
        Self {
            status,
            wait: None,
            message,
            malformed: true,
            note: Some(note),
        }
    }
}

/// Whether a server's error says the model's tool call could not be parsed.
fn is_malformed_call(message: &str) -> bool {
    let message = message.to_lowercase();
    (message.contains("tool call")
        || message.contains("tool_call")
        || message.contains("function call"))
        && ["pars", "invalid", "malformed", "failed"]
            .iter()
            .any(|word| message.contains(word))
}

/// A 200 answer that is no chat completion; when it carries the model's failed output, the
/// model hears of it on the next try.
fn unusable(error: LlmError, text: &str) -> Retry {
    match failed_generation(text) {
        Some(generated) => Retry::model_output(None, error_message(text), Some(&generated)),
        None => Retry::malformed(error),
    }
}

#[async_trait]
impl Llm for OpenAiClient {
    fn model(&self) -> &str {
        &self.config.model
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.body(request);
        self.with_retries(body, |body| async move { self.attempt(&body).await })
            .await
    }

    async fn chat_streaming(
        &self,
        request: &ChatRequest,
        on_progress: &(dyn for<'p> Fn(Partial<'p>) + Send + Sync),
    ) -> Result<ChatResponse, LlmError> {
        if !self.streaming.load(Ordering::Relaxed) {
            return self.chat(request).await;
        }
        let mut body = self.body(request);
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
        match self
            .with_retries(body, |body| async move {
                self.attempt_streaming(&body, on_progress).await
            })
            .await
        {
            // Servers without streaming say so in a 4xx; from then on, plain calls.
            Err(LlmError::Rejected { status, message })
                if message.to_lowercase().contains("stream") =>
            {
                tracing::info!(status, %message, "the model server cannot stream; using plain calls");
                self.streaming.store(false, Ordering::Relaxed);
                self.chat(request).await
            }
            other => other,
        }
    }
}

/// The server's name for this request (`x-request-id`, as OpenAI, vLLM and most gateways
/// send it), kept so a call can be found in the server's own records.
fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

fn with_request_id(mut answer: ChatResponse, request_id: Option<String>) -> ChatResponse {
    if let Some(call) = answer.usage.calls.last_mut() {
        call.request_id = request_id;
    }
    answer
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .map(|secs| Duration::from_secs_f64(secs.max(0.0)))
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "the request timed out".to_string()
    } else if error.is_connect() {
        format!("connection failed: {error}")
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(status: u16, body: &str) -> Result<Option<String>, LlmError> {
        OpenAiClient::failed(StatusCode::from_u16(status).unwrap(), None, body)
            .map(|outcome| outcome.err().and_then(|retry| retry.note))
    }

    #[test]
    fn malformed_model_output_is_retried_with_a_note_and_bad_requests_are_not() {
        let groq = r#"{"error":{"message":"Failed to call a function.","code":"tool_use_failed","failed_generation":"<function=terminal>"}}"#;
        assert!(
            verdict(400, groq)
                .unwrap()
                .unwrap()
                .contains("<function=terminal>")
        );
        let ollama =
            r#"{"error":"error parsing tool call: raw='{', err=unexpected end of JSON input"}"#;
        assert!(verdict(500, ollama).unwrap().is_some());
        let ours = r#"{"error":{"message":"Invalid parameter: messages with role 'tool' must be a response to a preceding message with 'tool_calls'.","code":null}}"#;
        assert!(matches!(
            verdict(400, ours),
            Err(LlmError::Rejected { status: 400, .. })
        ));
        // A plain 500 is retried, without a note.
        assert_eq!(verdict(500, r#"{"error":"overloaded"}"#).unwrap(), None);
    }
}
