//! A client for `POST {base}/chat/completions` that retries what is worth retrying.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Value, json};

use super::stream::{Accumulator, Partial};
use super::{ChatMessage, ChatRequest, ChatResponse, Llm, LlmError};
use crate::store::TokenUsage;

pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";
pub const DEFAULT_MODEL: &str = "openai/gpt-oss-120b:free";

/// The longest wait we accept from a `Retry-After` header before trying again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct LlmConfig {
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    /// Per-request limit; local models on a CPU can be slow.
    pub request_timeout: Duration,
    /// How many times one call is tried before giving up.
    pub max_attempts: u32,
    /// First back-off delay; doubles on each retry.
    pub initial_backoff: Duration,
}

/// The key is never printed, so settings can be logged.
impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl LlmConfig {
    /// Reads `CODEFLUX_LLM_BASE_URL`, `CODEFLUX_LLM_API_KEY` (or `OPENROUTER_API_KEY`),
    /// `CODEFLUX_MODEL`, `CODEFLUX_LLM_TIMEOUT_SECS` and `CODEFLUX_LLM_MAX_ATTEMPTS`.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        Self {
            base_url: var("CODEFLUX_LLM_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
            api_key: var("CODEFLUX_LLM_API_KEY").or_else(|| var("OPENROUTER_API_KEY")),
            model: var("CODEFLUX_MODEL").unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            request_timeout: Duration::from_secs(
                var("CODEFLUX_LLM_TIMEOUT_SECS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(300),
            ),
            max_attempts: var("CODEFLUX_LLM_MAX_ATTEMPTS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(5)
                .max(1),
            initial_backoff: Duration::from_secs(1),
        }
    }

    /// Local servers (Ollama, LM Studio, vLLM on this machine) need no key.
    pub fn is_local(&self) -> bool {
        reqwest::Url::parse(&self.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .is_some_and(|host| {
                host == "localhost"
                    || host.ends_with(".localhost")
                    || host == "host.docker.internal"
                    || host
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            })
    }

    /// True when a hosted API is configured without a key: every call would be refused.
    pub fn missing_key(&self) -> bool {
        self.api_key.is_none() && !self.is_local()
    }
}

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
                }));
            }
        };
        let status = response.status();
        let wait = retry_after(response.headers());
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => {
                return Ok(Err(Retry {
                    status: Some(status),
                    wait: None,
                    message: describe_transport_error(&error),
                    malformed: false,
                }));
            }
        };
        if status.is_success() {
            // Gateways sometimes answer 200 with an error or with no choices when the model
            // behind them failed: worth another try, like a 5xx.
            return Ok(parse_completion(&text).map_err(Retry::malformed));
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
            })),
            status if status.is_server_error() => Ok(Err(Retry {
                status: Some(status),
                wait,
                message,
                malformed: false,
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
            }))
        };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => return transport(None, describe_transport_error(&error)),
        };
        let status = response.status();
        let wait = retry_after(response.headers());
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
                return Ok(parse_completion(&text).map_err(Retry::malformed));
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
                Err(message) => return Ok(Err(Retry::malformed(LlmError::BadResponse(message)))),
            }
        }
        Ok(accumulator
            .finish()
            .map_err(|message| Retry::malformed(LlmError::BadResponse(message))))
    }

    /// Tries `attempt` until it succeeds, fails for good, or the attempts are spent.
    async fn with_retries<F, Fut>(&self, mut attempt: F) -> Result<ChatResponse, LlmError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Result<ChatResponse, Retry>, LlmError>>,
    {
        let mut backoff = self.config.initial_backoff;
        let mut tries = 1;
        loop {
            let retry = match attempt().await? {
                Ok(response) => return Ok(response),
                Err(retry) => retry,
            };
            if tries >= self.config.max_attempts {
                return Err(self.give_up(retry, tries));
            }
            let wait = retry.wait.map_or(backoff, |wait| wait.min(MAX_RETRY_AFTER));
            tracing::warn!(attempt = tries, ?wait, status = ?retry.status, message = %retry.message, "model call failed; retrying");
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
        }
    }
}

#[async_trait]
impl Llm for OpenAiClient {
    fn model(&self) -> &str {
        &self.config.model
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.body(request);
        self.with_retries(|| self.attempt(&body)).await
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
            .with_retries(|| self.attempt_streaming(&body, on_progress))
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

#[derive(Deserialize)]
struct CompletionBody {
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
}

fn parse_completion(text: &str) -> Result<ChatResponse, LlmError> {
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
    let usage = body.usage.map_or(
        TokenUsage {
            model_calls: 1,
            ..TokenUsage::default()
        },
        |usage| TokenUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            model_calls: 1,
        },
    );
    Ok(ChatResponse {
        message: choice.message,
        usage,
        finish_reason: choice.finish_reason,
    })
}

/// Pulls `error.message` out of an OpenAI-style error body, or shortens the raw text.
fn error_message(text: &str) -> String {
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

    fn config(base_url: &str, api_key: Option<&str>) -> LlmConfig {
        LlmConfig {
            base_url: base_url.into(),
            api_key: api_key.map(str::to_owned),
            model: "m".into(),
            request_timeout: Duration::from_secs(5),
            max_attempts: 1,
            initial_backoff: Duration::from_millis(1),
        }
    }

    #[test]
    fn local_servers_need_no_key() {
        assert!(!config("http://localhost:11434/v1", None).missing_key());
        assert!(!config("http://127.0.0.1:8000/v1", None).missing_key());
        assert!(!config("http://[::1]:8000/v1", None).missing_key());
        assert!(config("https://openrouter.ai/api/v1", None).missing_key());
        assert!(!config("https://openrouter.ai/api/v1", Some("k")).missing_key());
    }

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
