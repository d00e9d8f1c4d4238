//! envd, the agent inside every E2B sandbox: commands over Connect-RPC server streaming
//! (JSON codec) and files over plain HTTP.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::config::ENVD_PORT;
use crate::sandbox::output::BoundedOutput;
use crate::sandbox::workspace::{check_resolved, resolve_argv};
use crate::sandbox::{CommandOutput, MAX_FILE_BYTES, SandboxError, WorkspacePath};

/// envd versions from this one on take raw octet-stream uploads.
const OCTET_STREAM_SINCE: (u32, u32, u32) = (0, 5, 7);
/// Connect end-of-stream flag.
const END_STREAM: u8 = 0x02;
/// `Basic base64("user:")`: commands and files act as the sandbox's `user`.
const USER_AUTH: &str = "Basic dXNlcjo=";

#[derive(Clone)]
pub struct Envd {
    pub http: reqwest::Client,
    pub base_url: String,
    pub sandbox_id: String,
    pub access_token: Option<String>,
    pub version: (u32, u32, u32),
}

pub fn parse_version(text: &str) -> (u32, u32, u32) {
    let mut parts = text
        .trim_start_matches('v')
        .split('.')
        .map(|part| part.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

impl Envd {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header("E2b-Sandbox-Id", &self.sandbox_id)
            .header("E2b-Sandbox-Port", ENVD_PORT.to_string())
            .header(reqwest::header::AUTHORIZATION, USER_AUTH);
        if let Some(token) = &self.access_token {
            request = request.header("X-Access-Token", token);
        }
        request
    }

    fn failure(&self, status: StatusCode, text: &str) -> SandboxError {
        let message = super::error_message(text);
        match status {
            // E2B's edge answers 502/503 (and envd 404 on some versions) for sandboxes that are gone.
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => {
                SandboxError::Gone(format!("sandbox {} is gone: {message}", self.sandbox_id))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                SandboxError::Unauthorized(format!("envd refused the access token: {message}"))
            }
            _ => SandboxError::Backend(format!("envd answered HTTP {status}: {message}")),
        }
    }

    /// Runs `bash -l -c command` in `/home/user`, streaming its output until it ends.
    pub async fn run(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, SandboxError> {
        let args = vec!["-l".to_string(), "-c".to_string(), command.to_string()];
        self.run_process("/bin/bash", &args, timeout).await
    }

    /// Refuses paths that a symbolic link in the workspace leads outside it.
    pub async fn confine(
        &self,
        paths: &[&WorkspacePath],
    ) -> Result<Vec<WorkspacePath>, SandboxError> {
        let argv = resolve_argv(paths);
        let resolved = self
            .run_process("/usr/bin/env", &argv, Duration::from_secs(30))
            .await?;
        if !resolved.success() {
            return Err(SandboxError::Backend(format!(
                "could not resolve paths in the sandbox: {}",
                resolved.stderr.trim()
            )));
        }
        check_resolved(paths, &resolved.stdout)
    }

    /// Runs a program with its arguments in `/home/user`, streaming its output until it ends.
    async fn run_process(
        &self,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<CommandOutput, SandboxError> {
        let start = json!({
            "process": { "cmd": program, "args": args, "envs": {}, "cwd": crate::sandbox::WORKSPACE_ROOT },
            "stdin": false,
        });
        let response = self
            .request(reqwest::Method::POST, "/process.Process/Start")
            .header(reqwest::header::CONTENT_TYPE, "application/connect+json")
            .header("Connect-Protocol-Version", "1")
            .header("Connect-Timeout-Ms", timeout.as_millis().to_string())
            .header("Keepalive-Ping-Interval", "50")
            .body(envelope(&start))
            .send()
            .await
            .map_err(|error| SandboxError::Backend(format!("cannot reach envd: {error}")))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(self.failure(status, &text));
        }
        // envd only stops a command when its deadline passes, not when we hang up: a caller
        // that stops waiting (timeout here, a cancelled job) has it killed.
        let mut running = KillOnDrop {
            envd: self.clone(),
            pid: None,
        };
        // envd enforces the limit itself; this only guards against a stream that never ends.
        let outcome = tokio::time::timeout(
            timeout + Duration::from_secs(5),
            read_stream(response, &mut running.pid),
        )
        .await;
        match outcome {
            Ok(result) => {
                running.pid = None;
                result.map_err(|error| match error {
                    SandboxError::Timeout(_) => SandboxError::Timeout(timeout),
                    other => other,
                })
            }
            Err(_) => Err(SandboxError::Timeout(timeout)),
        }
    }

    async fn kill_process(&self, pid: u64) {
        let body = json!({ "process": { "selector": { "pid": pid } }, "signal": "SIGNAL_SIGKILL" });
        let sent = self
            .request(reqwest::Method::POST, "/process.Process/SendSignal")
            .header("Connect-Protocol-Version", "1")
            .json(&body)
            .send()
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, pid, "could not kill a timed-out command");
        }
    }

    pub async fn write(&self, path: &WorkspacePath, content: Vec<u8>) -> Result<(), SandboxError> {
        let absolute = path.absolute();
        let request = self
            .request(reqwest::Method::POST, "/files")
            .query(&[("path", absolute.as_str()), ("username", "user")]);
        let request = if self.version >= OCTET_STREAM_SINCE {
            request
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(content)
        } else {
            let part = reqwest::multipart::Part::bytes(content).file_name(absolute.clone());
            request.multipart(reqwest::multipart::Form::new().part("file", part))
        };
        let response = request
            .send()
            .await
            .map_err(|error| SandboxError::Backend(format!("cannot reach envd: {error}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(self.failure(status, &text))
    }

    pub async fn read(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        let absolute = path.absolute();
        let response = self
            .request(reqwest::Method::GET, "/files")
            .query(&[("path", absolute.as_str()), ("username", "user")])
            .send()
            .await
            .map_err(|error| SandboxError::Backend(format!("cannot reach envd: {error}")))?;
        let status = response.status();
        if status.is_success() {
            let too_large = || SandboxError::TooLarge {
                path: path.to_string(),
                limit: MAX_FILE_BYTES,
            };
            if response
                .content_length()
                .is_some_and(|length| length > MAX_FILE_BYTES as u64)
            {
                return Err(too_large());
            }
            let mut body = Vec::new();
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                body.extend_from_slice(
                    &chunk.map_err(|error| SandboxError::Backend(error.to_string()))?,
                );
                if body.len() > MAX_FILE_BYTES {
                    return Err(too_large());
                }
            }
            return Ok(body);
        }
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::NOT_FOUND {
            return Err(SandboxError::FileNotFound(path.to_string()));
        }
        Err(self.failure(status, &text))
    }
}

/// Sends SIGKILL to a command that is still running when its caller lets go of it.
struct KillOnDrop {
    envd: Envd,
    pid: Option<u64>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let (Some(pid), Ok(runtime)) = (self.pid.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let envd = self.envd.clone();
        runtime.spawn(async move { envd.kill_process(pid).await });
    }
}

/// One Connect envelope around a JSON message.
fn envelope(message: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Reads envelopes as they arrive (they may be split across or packed into chunks) and
/// collects the command's output until its end event.
async fn read_stream(
    response: reqwest::Response,
    pid: &mut Option<u64>,
) -> Result<CommandOutput, SandboxError> {
    let mut chunks = response.bytes_stream();
    let mut buffer = BytesMut::new();
    let mut stdout = BoundedOutput::default();
    let mut stderr = BoundedOutput::default();
    let mut exit_code = None;
    loop {
        while let Some((flags, message)) = next_envelope(&mut buffer)? {
            if flags & END_STREAM != 0 {
                if let Some(error) = message.get("error") {
                    let code = error
                        .get("code")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    let text = error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    return Err(if code == "deadline_exceeded" {
                        SandboxError::Timeout(Duration::ZERO)
                    } else {
                        SandboxError::Backend(format!("envd ended the command with {code}: {text}"))
                    });
                }
                return Ok(CommandOutput {
                    stdout: stdout.into_text(),
                    stderr: stderr.into_text(),
                    exit_code: exit_code.ok_or_else(|| {
                        SandboxError::Backend("envd closed the stream without an end event".into())
                    })?,
                });
            }
            let event = &message["event"];
            if let Some(start) = event.get("start") {
                *pid = start.get("pid").and_then(Value::as_u64);
            } else if let Some(data) = event.get("data") {
                for (name, sink) in [("stdout", &mut stdout), ("stderr", &mut stderr)] {
                    if let Some(encoded) = data.get(name).and_then(Value::as_str) {
                        sink.push(&BASE64.decode(encoded).map_err(|error| {
                            SandboxError::Backend(format!("bad output from envd: {error}"))
                        })?);
                    }
                }
            } else if let Some(end) = event.get("end") {
                // proto3 JSON leaves out zero values: no exitCode means 0.
                exit_code = Some(end.get("exitCode").and_then(Value::as_i64).unwrap_or(0));
            }
        }
        match chunks.next().await {
            Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
            Some(Err(error)) => {
                return Err(SandboxError::Backend(format!(
                    "the command's stream broke: {error}"
                )));
            }
            None => {
                return Err(SandboxError::Backend("envd closed the stream early".into()));
            }
        }
    }
}

/// Takes one whole envelope off the front of `buffer`, if one is there.
fn next_envelope(buffer: &mut BytesMut) -> Result<Option<(u8, Value)>, SandboxError> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + length {
        return Ok(None);
    }
    let flags = buffer[0];
    buffer.advance(5);
    let payload = buffer.split_to(length);
    let message = serde_json::from_slice(&payload)
        .map_err(|error| SandboxError::Backend(format!("bad envelope from envd: {error}")))?;
    Ok(Some((flags, message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_taken_whole_from_split_and_packed_chunks() {
        let mut packed = envelope(&json!({"a": 1}));
        packed.extend(envelope(&json!({"b": 2})));
        let mut buffer = BytesMut::from(&packed[..7]);
        assert!(
            next_envelope(&mut buffer).unwrap().is_none(),
            "half an envelope waits"
        );
        buffer.extend_from_slice(&packed[7..]);
        assert_eq!(
            next_envelope(&mut buffer).unwrap().unwrap().1,
            json!({"a": 1})
        );
        assert_eq!(
            next_envelope(&mut buffer).unwrap().unwrap().1,
            json!({"b": 2})
        );
        assert!(next_envelope(&mut buffer).unwrap().is_none());
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(parse_version("0.5.10") >= OCTET_STREAM_SINCE);
        assert!(parse_version("0.4.2") < OCTET_STREAM_SINCE);
        assert_eq!(parse_version("v1.2"), (1, 2, 0));
    }
}
