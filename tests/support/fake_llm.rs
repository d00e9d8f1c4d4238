//! A scripted OpenAI-compatible chat-completions server. It answers the agent's turns from a
//! script, answers the title/reply side calls (requests without tools) by itself, and records
//! every request so tests can check what CodeFlux sent. `tests/sdk_checks/openai_check.py`
//! drives it with the official `openai` package to prove the wire format is the real one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const TITLE_REPLY: &str = "Habit Tracker";
pub const FRIENDLY_REPLY: &str = "Here is your app, ready to click around.";

/// One scripted answer to an agent turn (a request that offers tools).
#[derive(Debug, Clone)]
pub enum Reply {
    /// The assistant calls these tools: (name, raw JSON arguments).
    Tools(Vec<(String, String)>),
    /// The assistant answers with text.
    Text(String),
    /// The server fails with this status (and `Retry-After`, when given).
    Fail {
        status: u16,
        retry_after: Option<u32>,
    },
    /// The server says nothing for this long before answering with an error (past the
    /// client's timeout, normally).
    Hang(std::time::Duration),
    /// The server starts a 200 answer and drops the connection halfway through the body.
    DropMidBody,
    /// The server answers 200 with this body verbatim (odd shapes real servers send).
    Raw(Value),
    /// The server answers 200 with this server-sent-events body verbatim (a recorded stream).
    RawStream(String),
    /// The server fails with this status and this JSON body verbatim.
    RawFail { status: u16, body: Value },
}

impl Reply {
    pub fn tool(name: &str, arguments: Value) -> Self {
        Reply::Tools(vec![(name.to_string(), arguments.to_string())])
    }

    pub fn raw_tool(name: &str, arguments: &str) -> Self {
        Reply::Tools(vec![(name.to_string(), arguments.to_string())])
    }

    /// A file write with its path before its content, the order the tool's schema gives
    /// and real models follow.
    pub fn write(path: &str, content: &str) -> Self {
        Self::raw_tool(
            "createOrUpdateFiles",
            &format!(
                r#"{{"files":[{{"path":{},"content":{}}}]}}"#,
                json!(path),
                json!(content)
            ),
        )
    }

    pub fn terminal(command: &str) -> Self {
        Self::tool("terminal", json!({ "command": command }))
    }

    pub fn summary(text: &str) -> Self {
        Reply::Text(format!("<task_summary>\n{text}\n</task_summary>"))
    }
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    requests: Vec<Value>,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    api_key: Option<String>,
    /// How long each agent turn "thinks" before answering (to watch progress live).
    delay: std::time::Duration,
    /// How long the title and reply calls take (to catch a job while it saves its answer).
    side_delay: std::time::Duration,
    /// Pause between the chunks of a streamed answer.
    chunk_delay: std::time::Duration,
    /// Answer `stream: true` with a 400, as servers without streaming do.
    refuse_streaming: bool,
    /// Answer requests with image parts with a 400, as models without vision do.
    refuse_images: bool,
    /// A small context window: requests whose messages are longer (in bytes of JSON) get
    /// OpenAI's `context_length_exceeded` 400.
    window_bytes: Option<usize>,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub base_url: String,
    script: Arc<Mutex<Script>>,
}

impl FakeLlm {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Listens on `address` (e.g. `0.0.0.0:0` so that containers on this machine can call it);
    /// `base_url` still names 127.0.0.1.
    pub async fn start_on(address: &str) -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            // OpenAI names every request in this header; CodeFlux keeps it with the answer.
            .layer(axum::middleware::map_response(
                |mut response: Response| async move {
                    let id = format!("req_{}", uuid::Uuid::now_v7().simple());
                    response
                        .headers_mut()
                        .insert("x-request-id", id.parse().unwrap());
                    response
                },
            ))
            .with_state(script.clone());
        let listener = TcpListener::bind(address).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            script,
        }
    }

    pub fn push(&self, reply: Reply) -> &Self {
        self.script.lock().unwrap().replies.push_back(reply);
        self
    }

    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().replies.extend(replies);
    }

    pub fn set_delay(&self, delay: std::time::Duration) {
        self.script.lock().unwrap().delay = delay;
    }

    pub fn set_side_delay(&self, delay: std::time::Duration) {
        self.script.lock().unwrap().side_delay = delay;
    }

    pub fn set_chunk_delay(&self, delay: std::time::Duration) {
        self.script.lock().unwrap().chunk_delay = delay;
    }

    pub fn refuse_streaming(&self) {
        self.script.lock().unwrap().refuse_streaming = true;
    }

    /// From now on, requests carrying images get a 400, as from a model without vision.
    /// From now on, requests whose messages exceed `bytes` are refused as too long for
    /// the model's context, in OpenAI's words.
    pub fn set_window(&self, bytes: usize) {
        self.script.lock().unwrap().window_bytes = Some(bytes);
    }

    /// How many requests were refused as too long.
    pub fn refused_as_too_long(&self) -> usize {
        let script = self.script.lock().unwrap();
        let Some(window) = script.window_bytes else {
            return 0;
        };
        script
            .requests
            .iter()
            .filter(|request| request["messages"].to_string().len() > window)
            .count()
    }

    pub fn refuse_images(&self) {
        self.script.lock().unwrap().refuse_images = true;
    }

    /// Every tool answer and user turn the model was sent in its last request, in order.
    pub fn said_to_model(&self) -> Vec<String> {
        let requests = self.agent_requests();
        let Some(last) = requests.last() else {
            return Vec::new();
        };
        last["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|message| message["role"] == "tool" || message["role"] == "user")
            .filter_map(|message| message["content"].as_str().map(str::to_owned))
            .collect()
    }

    /// Forgets the replies not yet given.
    pub fn clear(&self) {
        self.script.lock().unwrap().replies.clear();
    }

    /// How many title/reply calls (requests without tools) have arrived.
    pub fn side_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.get("tools").is_none())
            .count()
    }

    pub fn require_key(&self, key: &str) {
        self.script.lock().unwrap().api_key = Some(key.to_string());
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.script.lock().unwrap().requests.clone()
    }

    /// The agent-turn requests (those that offered tools).
    pub fn agent_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|request| request.get("tools").is_some())
            .collect()
    }

    pub fn remaining(&self) -> usize {
        self.script.lock().unwrap().replies.len()
    }
}

async fn models() -> Json<Value> {
    Json(
        json!({ "object": "list", "data": [{ "id": "fake-model", "object": "model", "created": 0, "owned_by": "codeflux-tests" }] }),
    )
}

async fn chat(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (delay, side_delay) = {
        let script = script.lock().unwrap();
        (script.delay, script.side_delay)
    };
    if body.get("tools").is_some() && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if body.get("tools").is_none() && !side_delay.is_zero() {
        // Recorded on arrival, so a test can see the call is under way.
        script.lock().unwrap().requests.push(body.clone());
        tokio::time::sleep(side_delay).await;
        return completion(
            body.get("model")
                .and_then(Value::as_str)
                .unwrap_or("fake-model"),
            json!({ "role": "assistant", "content": side_reply(&body), "refusal": null }),
            "stop",
        );
    }
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let reply = {
        let mut script = script.lock().unwrap();
        if let Some(key) = &script.api_key {
            let expected = format!("Bearer {key}");
            if headers
                .get("authorization")
                .and_then(|value| value.to_str().ok())
                != Some(expected.as_str())
            {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "Incorrect API key provided",
                    "invalid_api_key",
                    None,
                );
            }
        }
        script.requests.push(body.clone());
        if let Some(window) = script.window_bytes
            && body["messages"].to_string().len() > window
        {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "This model's maximum context length is {} tokens. However, your messages resulted in {} tokens. Please reduce the length of the messages.",
                    window / 4,
                    body["messages"].to_string().len() / 4
                ),
                "context_length_exceeded",
                None,
            );
        }
        if script.refuse_images && has_image_parts(&body) {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid content type. image_url is only supported by certain models.",
                "invalid_request_error",
                None,
            );
        }
        if streaming && script.refuse_streaming {
            return error(
                StatusCode::BAD_REQUEST,
                "stream is not supported by this server",
                "unsupported_parameter",
                None,
            );
        }
        if body.get("tools").is_none() {
            Reply::Text(side_reply(&body))
        } else {
            match script.replies.pop_front() {
                Some(reply) => reply,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "the fake model's script is exhausted",
                        "script_exhausted",
                        None,
                    );
                }
            }
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_string();
    if streaming {
        let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
        let chunk_delay = script.lock().unwrap().chunk_delay;
        let stream = |deltas: Vec<Value>, finish: &str, drop_midway: bool| {
            sse(
                &model,
                deltas,
                finish,
                include_usage,
                chunk_delay,
                drop_midway,
            )
        };
        match &reply {
            Reply::Text(text) => return stream(text_deltas(text), "stop", false),
            Reply::Tools(calls) => return stream(tool_deltas(calls), "tool_calls", false),
            Reply::DropMidBody => return stream(text_deltas("I will now wri"), "stop", true),
            // Failures answer as they would without streaming; `Raw` is a server that
            // ignores `stream` and answers with one JSON body.
            _ => {}
        }
    }
    match reply {
        Reply::Hang(duration) => {
            tokio::time::sleep(duration).await;
            error(StatusCode::GATEWAY_TIMEOUT, "hung", "timeout", None)
        }
        Reply::DropMidBody => {
            let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                Ok(r#"{"id":"chatcmpl-x","object":"chat.completion","choices":[{"index":0,"#),
                Err(std::io::Error::other("connection dropped")),
            ];
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(axum::body::Body::from_stream(futures::stream::iter(chunks)))
                .unwrap()
        }
        Reply::Raw(body) => Json(body).into_response(),
        Reply::RawStream(events) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from(events))
            .unwrap(),
        Reply::RawFail { status, body } => {
            (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
        }
        Reply::Fail {
            status,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap();
            error(status, "scripted failure", "server_error", retry_after)
        }
        Reply::Text(text) => completion(
            &model,
            json!({ "role": "assistant", "content": text, "refusal": null }),
            "stop",
        ),
        Reply::Tools(calls) => {
            let tool_calls: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(index, (name, arguments))| {
                    json!({ "id": format!("call_{}_{index}", uuid::Uuid::now_v7().simple()), "type": "function",
                            "function": { "name": name, "arguments": arguments } })
                })
                .collect();
            completion(
                &model,
                json!({ "role": "assistant", "content": null, "refusal": null, "tool_calls": tool_calls }),
                "tool_calls",
            )
        }
    }
}

/// A text answer as the deltas a streaming server sends: a few characters at a time.
fn text_deltas(text: &str) -> Vec<Value> {
    let chars: Vec<char> = text.chars().collect();
    let mut deltas = vec![json!({ "role": "assistant", "content": "" })];
    deltas.extend(
        chars
            .chunks(8)
            .map(|piece| json!({ "content": piece.iter().collect::<String>() })),
    );
    deltas
}

/// Tool calls as streamed: the call's id and name first, then its arguments in pieces.
fn tool_deltas(calls: &[(String, String)]) -> Vec<Value> {
    let mut deltas = vec![json!({ "role": "assistant", "content": null })];
    for (index, (name, arguments)) in calls.iter().enumerate() {
        deltas.push(json!({ "tool_calls": [{ "index": index, "id": format!("call_{}_{index}", uuid::Uuid::now_v7().simple()),
            "type": "function", "function": { "name": name, "arguments": "" } }] }));
        let chars: Vec<char> = arguments.chars().collect();
        for piece in chars.chunks(16) {
            deltas.push(json!({ "tool_calls": [{ "index": index,
                "function": { "arguments": piece.iter().collect::<String>() } }] }));
        }
    }
    deltas
}

/// A server-sent-events answer: one `chat.completion.chunk` per delta, the finish reason,
/// the usage chunk when asked for, then `[DONE]`. `drop_midway` breaks the connection
/// after half the deltas instead.
fn sse(
    model: &str,
    deltas: Vec<Value>,
    finish_reason: &str,
    include_usage: bool,
    delay: std::time::Duration,
    drop_midway: bool,
) -> Response {
    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    let created = chrono::Utc::now().timestamp();
    let chunk = |choices: Value, usage: Value| {
        let body = json!({ "id": id, "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": choices, "usage": usage });
        format!("data: {body}\n\n")
    };
    let cut = deltas.len() / 2;
    let mut events: Vec<String> = deltas
        .into_iter()
        .map(|delta| {
            chunk(
                json!([{ "index": 0, "delta": delta, "finish_reason": null }]),
                Value::Null,
            )
        })
        .collect();
    if drop_midway {
        events.truncate(cut.max(1));
    } else {
        events.push(chunk(
            json!([{ "index": 0, "delta": {}, "finish_reason": finish_reason }]),
            Value::Null,
        ));
        if include_usage {
            events.push(chunk(
                json!([]),
                json!({ "prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150 }),
            ));
        }
        events.push("data: [DONE]\n\n".to_string());
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    tokio::spawn(async move {
        for event in events {
            if sender.send(Ok(event)).await.is_err() {
                return;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        if drop_midway {
            let _ = sender
                .send(Err(std::io::Error::other("connection dropped")))
                .await;
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(axum::body::Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        ))
        .unwrap()
}

/// Title and reply calls: recognised by their system prompt.
fn side_reply(body: &Value) -> String {
    let system = body
        .pointer("/messages/0/content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if system.contains("title") {
        TITLE_REPLY.to_string()
    } else {
        FRIENDLY_REPLY.to_string()
    }
}

fn completion(model: &str, message: Value, finish_reason: &str) -> Response {
    Json(json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null }],
        "usage": { "prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150 }
    }))
    .into_response()
}

fn error(status: StatusCode, message: &str, code: &str, retry_after: Option<u32>) -> Response {
    let body = Json(
        json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": code } }),
    );
    let mut response = (status, body).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}

/// Whether any message carries OpenAI `image_url` content parts.
pub fn has_image_parts(body: &Value) -> bool {
    body["messages"].as_array().is_some_and(|messages| {
        messages.iter().any(|message| {
            message["content"]
                .as_array()
                .is_some_and(|parts| parts.iter().any(|part| part["type"] == "image_url"))
        })
    })
}
