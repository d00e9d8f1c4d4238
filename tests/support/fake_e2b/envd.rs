//! The fake's envd, E2B's agent inside each sandbox: Connect-RPC `process.Process/*`,
//! `/files` and `/health`, and the edge that serves a sandbox's ports.

// Handlers here return ready responses as errors; their size does not matter in a test fake.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::machine::{FileError, Machine, absolute};
use super::{Shared, World, error};

/// Finds the sandbox an envd call is for and checks its access token and user.
pub(super) fn envd_sandbox(world: &World, headers: &HeaderMap) -> Result<Arc<Machine>, Response> {
    let id = headers
        .get("e2b-sandbox-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let Some(sandbox) = world
        .sandboxes
        .get(id)
        .filter(|sandbox| sandbox.end_at > Utc::now())
    else {
        return Err((
            StatusCode::BAD_GATEWAY,
            Json(json!({ "code": 502, "message": "The sandbox was not found", "sandboxId": id })),
        )
            .into_response());
    };
    if headers
        .get("x-access-token")
        .and_then(|value| value.to_str().ok())
        != Some(sandbox.access_token.as_str())
    {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized access, please provide a valid access token",
        ));
    }
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    {
        let user = basic
            .strip_prefix("Basic ")
            .and_then(|encoded| BASE64.decode(encoded).ok());
        if !matches!(user.as_deref(), Some(b"user:") | Some(b"root:")) {
            return Err(error(StatusCode::UNAUTHORIZED, "invalid user"));
        }
    }
    Ok(sandbox.machine.clone())
}

pub(super) async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
pub(super) struct FileQuery {
    path: Option<String>,
}

fn refused(failure: FileError) -> Response {
    error(failure.status, &failure.message)
}

pub(super) async fn read_file(
    State(world): Shared,
    headers: HeaderMap,
    Query(query): Query<FileQuery>,
) -> Response {
    let machine = match envd_sandbox(&world.lock().unwrap(), &headers) {
        Ok(machine) => machine,
        Err(response) => return response,
    };
    match machine
        .read(query.path.as_deref().unwrap_or_default())
        .await
    {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(failure) => refused(failure),
    }
}

async fn write_one(machine: &Machine, path: &str, data: &[u8]) -> Result<Value, Response> {
    machine.write(path, data).await.map_err(refused)?;
    let absolute = absolute(path);
    Ok(
        json!({ "name": absolute.rsplit('/').next().unwrap_or_default(), "type": "file", "path": absolute }),
    )
}

pub(super) async fn write_files(
    State(world): Shared,
    Query(query): Query<FileQuery>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let machine = match envd_sandbox(&world.lock().unwrap(), &headers) {
        Ok(machine) => machine,
        Err(response) => return response,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut written = Vec::new();
    let form = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    world.lock().unwrap().calls.push(format!("UPLOAD {form}"));
    if content_type.starts_with("multipart/form-data") {
        let mut multipart =
            match <Multipart as axum::extract::FromRequest<()>>::from_request(request, &()).await {
                Ok(multipart) => multipart,
                Err(rejection) => return rejection.into_response(),
            };
        while let Ok(Some(field)) = multipart.next_field().await {
            if field.name() != Some("file") {
                continue;
            }
            let path = query
                .path
                .clone()
                .or_else(|| field.file_name().map(str::to_owned))
                .unwrap_or_default();
            let data = field.bytes().await.unwrap_or_default();
            match write_one(&machine, &path, &data).await {
                Ok(info) => written.push(info),
                Err(response) => return response,
            }
        }
    } else if content_type.starts_with("application/octet-stream") {
        let Some(path) = query.path else {
            return error(StatusCode::BAD_REQUEST, "path is required");
        };
        let data: Bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        match write_one(&machine, &path, &data).await {
            Ok(info) => written.push(info),
            Err(response) => return response,
        }
    } else {
        return error(StatusCode::BAD_REQUEST, "unsupported content type");
    }
    Json(written).into_response()
}

/// One Connect envelope: flags, big-endian length, JSON.
fn envelope(flags: u8, message: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap();
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

pub(super) async fn start_process(
    State(world): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let machine = match envd_sandbox(&world.lock().unwrap(), &headers) {
        Ok(machine) => machine,
        Err(response) => return response,
    };
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        != Some("application/connect+json")
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/connect+json",
        );
    }
    let request: Value = match body
        .get(5..)
        .and_then(|json| serde_json::from_slice(json).ok())
    {
        Some(request) => request,
        None => return error(StatusCode::BAD_REQUEST, "malformed envelope"),
    };
    let process = &request["process"];
    let program = process["cmd"].as_str().unwrap_or("/bin/bash").to_string();
    let args: Vec<String> = process["args"]
        .as_array()
        .map(|args| {
            args.iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let cwd = process["cwd"].as_str().unwrap_or(super::HOME).to_string();
    if let Err(failure) = machine.check_cwd(&cwd) {
        return refused(failure);
    }
    let deadline = headers
        .get("connect-timeout-ms")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .map(Duration::from_millis);
    let envs: Vec<(String, String)> = process["envs"]
        .as_object()
        .map(|envs| {
            envs.iter()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let tag = {
        let mut world = world.lock().unwrap();
        world.started += 1;
        world.started
    };
    let started = machine.start(&program, &args, &cwd, &envs, tag);
    let mut child = started.child;
    let stopper = started.stopper;
    let pid = child.id().unwrap_or_default();
    world.lock().unwrap().processes.insert(pid, stopper.clone());
    let (sender, receiver) = mpsc::channel::<Vec<u8>>(64);

    tokio::spawn(async move {
        // The start event and a keepalive packed into one chunk.
        let mut first = envelope(0, &json!({ "event": { "start": { "pid": pid } } }));
        first.extend(envelope(0, &json!({ "event": { "keepalive": {} } })));
        let _ = sender.send(first).await;
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        // One frame at a time on the wire: a frame's two halves must not be split by the
        // other stream's frame, as envd writes whole messages.
        let one_frame_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
        let pump = |mut stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    name: &'static str,
                    sender: mpsc::Sender<Vec<u8>>| {
            let one_frame_at_a_time = one_frame_at_a_time.clone();
            async move {
                let mut buffer = vec![0u8; 4096];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    let frame = envelope(
                        0,
                        &json!({ "event": { "data": { name: BASE64.encode(&buffer[..read]) } } }),
                    );
                    // Split every envelope across two chunks, so clients must buffer.
                    let (head, tail) = frame.split_at(3);
                    let _whole_frame = one_frame_at_a_time.lock().await;
                    if sender.send(head.to_vec()).await.is_err()
                        || sender.send(tail.to_vec()).await.is_err()
                    {
                        break;
                    }
                }
            }
        };
        let out = tokio::spawn(pump(Box::new(stdout), "stdout", sender.clone()));
        let err = tokio::spawn(pump(Box::new(stderr), "stderr", sender.clone()));
        let waited = match deadline {
            Some(deadline) => tokio::time::timeout(deadline, child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        let Some(Ok(status)) = waited else {
            stopper.stop();
            let _ = child.wait().await;
            let _ = sender
                .send(envelope(2, &json!({ "error": { "code": "deadline_exceeded", "message": "the command ran out of time" } })))
                .await;
            return;
        };
        let _ = out.await;
        let _ = err.await;
        let code = status.code().unwrap_or(-1);
        let mut end = json!({ "exited": true, "status": format!("exit status {code}") });
        if code != 0 {
            end["exitCode"] = json!(code);
        }
        let _ = sender
            .send(envelope(0, &json!({ "event": { "end": end } })))
            .await;
        let _ = sender.send(envelope(2, &json!({}))).await;
    });

    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(Bytes::from(chunk)), receiver))
    });
    (
        [(header::CONTENT_TYPE, "application/connect+json")],
        Body::from_stream(stream),
    )
        .into_response()
}

pub(super) async fn send_signal(
    State(world): Shared,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(response) = envd_sandbox(&world.lock().unwrap(), &headers) {
        return response;
    }
    if let Some(pid) = body
        .pointer("/process/selector/pid")
        .and_then(Value::as_u64)
    {
        let stopper = world.lock().unwrap().processes.get(&(pid as u32)).cloned();
        if let Some(stopper) = stopper {
            stopper.stop();
        }
    }
    Json(json!({})).into_response()
}

pub(super) async fn list_processes(State(world): Shared, headers: HeaderMap) -> Response {
    if let Err(response) = envd_sandbox(&world.lock().unwrap(), &headers) {
        return response;
    }
    Json(json!({ "processes": [] })).into_response()
}

/// A sandbox's port, as E2B's edge serves `<port>-<sandbox id>.<domain>`: a private
/// sandbox answers only with its traffic token, as the real edge does (403 otherwise). A
/// container machine's port gets the request; a folder machine only says which it was.
pub(super) async fn sandbox_port(State(world): Shared, request: Request) -> Response {
    let headers = request.headers().clone();
    let host = headers
        .get("host")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let Some((port, rest)) = host.split_once('-') else {
        return error(StatusCode::NOT_FOUND, "no such route");
    };
    let id = rest.split('.').next().unwrap_or_default();
    let machine = {
        let world = world.lock().unwrap();
        let Some(sandbox) = world.sandboxes.get(id) else {
            return error(StatusCode::BAD_GATEWAY, "sandbox not found");
        };
        if let Some(token) = &sandbox.traffic_token {
            let offered = headers
                .get("e2b-traffic-access-token")
                .and_then(|value| value.to_str().ok());
            if offered != Some(token.as_str()) {
                return error(
                    StatusCode::FORBIDDEN,
                    "missing or invalid traffic access token",
                );
            }
        }
        sandbox.machine.clone()
    };
    let Some(address) = port
        .parse()
        .ok()
        .and_then(|port| machine.port_address(port))
    else {
        return (StatusCode::OK, format!("port {port} of sandbox {id}")).into_response();
    };
    forward(&address, request).await
}

/// Passes a request on to `address` and its answer back, whole.
async fn forward(address: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|path| path.as_str())
        .unwrap_or("/");
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut outgoing = client.request(parts.method.clone(), format!("http://{address}{path}"));
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "connection" | "transfer-encoding" | "content-length"
        ) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        // What E2B's edge says when nothing listens on the port yet.
        Err(_) => {
            return error(
                StatusCode::BAD_GATEWAY,
                "The sandbox is running but port is not open",
            );
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "content-length"
        ) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap()
}
