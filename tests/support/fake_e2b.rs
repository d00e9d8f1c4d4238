//! A stand-in for E2B: the control API (`/sandboxes`, `/v2/sandboxes`) and each sandbox's
//! envd (Connect-RPC `process.Process/*`, `/files`, `/health`) on one local listener.
//! Commands really run (bash on this machine) in a temporary folder that stands for
//! `/home/user`. Clients reach envd through `E2B_SANDBOX_URL`, the SDKs' own override, and
//! the fake tells sandboxes apart by the `E2b-Sandbox-Id` header, as E2B's edge does.
//! `tests/sdk_checks/e2b_check.py` drives it with the official `e2b` SDK.

// Handlers here return ready responses as errors; their size does not matter in a test fake.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

pub const API_KEY: &str = "e2b_test_key";
pub const ENVD_VERSION: &str = "0.5.7";
const HOME: &str = "/home/user";
/// Commands run as this unprivileged uid/gid (`nobody`), like E2B's `user`.
const SANDBOX_UID: u32 = 65534;

struct FakeSandbox {
    template: String,
    metadata: HashMap<String, String>,
    access_token: String,
    /// Set when created with `network.allowPublicTraffic: false`: its ports then answer
    /// only requests that carry it (`e2b-traffic-access-token`).
    traffic_token: Option<String>,
    root: tempfile::TempDir,
    started_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
}

#[derive(Default)]
struct World {
    sandboxes: HashMap<String, FakeSandbox>,
    /// Scripted failures for the next control-API calls: (status, how many left).
    failures: Option<(u16, u32)>,
    /// Every control-API call, as "METHOD path", and every upload's form, for tests to inspect.
    calls: Vec<String>,
    /// The envd version sandboxes report (older ones take only multipart uploads).
    envd_version: Option<String>,
}

#[derive(Clone)]
pub struct FakeE2b {
    pub url: String,
    world: Arc<Mutex<World>>,
}

impl FakeE2b {
    pub async fn start() -> Self {
        let world = Arc::new(Mutex::new(World::default()));
        let app = Router::new()
            .route("/sandboxes", post(create_v1).get(list_v1))
            .route("/v2/sandboxes", post(create_v2).get(list_v2))
            .route("/sandboxes/{id}", get(info).delete(kill))
            .route("/sandboxes/{id}/connect", post(connect))
            .route("/v2/sandboxes/{id}/connect", post(connect))
            .route("/sandboxes/{id}/timeout", post(set_timeout))
            .route("/health", get(health))
            .route("/files", get(read_file).post(write_files))
            .route("/process.Process/Start", post(start_process))
            .route("/process.Process/SendSignal", post(send_signal))
            .route("/process.Process/List", post(list_processes))
            .fallback(sandbox_port)
            .with_state(world.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, world }
    }

    /// Whether the sandbox was created private (its ports need the traffic token).
    pub fn is_private(&self, sandbox_id: &str) -> bool {
        self.world.lock().unwrap().sandboxes[sandbox_id]
            .traffic_token
            .is_some()
    }

    /// The next `count` control-API calls fail with `status`.
    pub fn fail_next(&self, status: u16, count: u32) {
        self.world.lock().unwrap().failures = Some((status, count));
    }

    /// New sandboxes report this envd version.
    pub fn set_envd_version(&self, version: &str) {
        self.world.lock().unwrap().envd_version = Some(version.to_string());
    }

    /// The sandbox disappears, as when it expires.
    pub fn vanish(&self, sandbox_id: &str) {
        self.world.lock().unwrap().sandboxes.remove(sandbox_id);
    }

    pub fn sandbox_ids(&self) -> Vec<String> {
        self.world
            .lock()
            .unwrap()
            .sandboxes
            .keys()
            .cloned()
            .collect()
    }

    pub fn calls(&self) -> Vec<String> {
        self.world.lock().unwrap().calls.clone()
    }

    /// The folder standing for a sandbox's `/home/user`.
    pub fn root_of(&self, sandbox_id: &str) -> Option<PathBuf> {
        self.world
            .lock()
            .unwrap()
            .sandboxes
            .get(sandbox_id)
            .map(|sandbox| sandbox.root.path().to_path_buf())
    }
}

type Shared = State<Arc<Mutex<World>>>;

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "code": status.as_u16(), "message": message })),
    )
        .into_response()
}

/// API-key check, scripted failures and expiry, shared by every control-API call.
fn control(world: &mut World, headers: &HeaderMap, call: String) -> Result<(), Response> {
    world.calls.push(call);
    if headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        != Some(API_KEY)
    {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key, it must start with 'e2b_'",
        ));
    }
    if let Some((status, left)) = world.failures.as_mut() {
        let status = StatusCode::from_u16(*status).unwrap();
        *left -= 1;
        if *left == 0 {
            world.failures = None;
        }
        let mut response = error(status, "scripted failure");
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "0".parse().unwrap());
        }
        return Err(response);
    }
    let now = Utc::now();
    world.sandboxes.retain(|_, sandbox| sandbox.end_at > now);
    Ok(())
}

/// A workspace folder the unprivileged sandbox user owns.
fn owned_tempdir() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(root.path(), Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
    root
}

fn sandbox_body(id: &str, sandbox: &FakeSandbox, with_token: bool, envd_version: &str) -> Value {
    let mut body = json!({
        "templateID": sandbox.template,
        "sandboxID": id,
        "clientID": "fake-client",
        "envdVersion": envd_version,
        "alias": sandbox.template,
        "domain": null,
    });
    if with_token {
        body["envdAccessToken"] = json!(sandbox.access_token);
    }
    if let Some(token) = &sandbox.traffic_token {
        body["trafficAccessToken"] = json!(token);
    }
    body
}

fn listed(id: &str, sandbox: &FakeSandbox) -> Value {
    json!({
        "templateID": sandbox.template, "alias": sandbox.template, "sandboxID": id, "clientID": "fake-client",
        "startedAt": sandbox.started_at.to_rfc3339(), "endAt": sandbox.end_at.to_rfc3339(),
        "cpuCount": 2, "memoryMB": 1024, "diskSizeMB": 2048, "state": "running",
        "envdVersion": ENVD_VERSION, "metadata": sandbox.metadata,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    #[serde(rename = "templateID")]
    template_id: String,
    timeout: Option<i64>,
    secure: Option<bool>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    network: Option<NetworkBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkBody {
    allow_public_traffic: Option<bool>,
}

fn create(world: &mut World, body: CreateBody, with_token: bool) -> Response {
    let id: String = uuid::Uuid::now_v7().simple().to_string()[12..32].to_string();
    let now = Utc::now();
    let sandbox = FakeSandbox {
        template: body.template_id,
        metadata: body.metadata,
        access_token: format!("token-{}", uuid::Uuid::now_v7().simple()),
        traffic_token: body
            .network
            .and_then(|network| network.allow_public_traffic)
            .is_some_and(|public| !public)
            .then(|| format!("traffic-{}", uuid::Uuid::now_v7().simple())),
        root: owned_tempdir(),
        started_at: now,
        end_at: now + chrono::Duration::seconds(body.timeout.unwrap_or(300)),
    };
    let version = world
        .envd_version
        .clone()
        .unwrap_or_else(|| ENVD_VERSION.to_string());
    let response = sandbox_body(&id, &sandbox, with_token, &version);
    world.sandboxes.insert(id, sandbox);
    (StatusCode::CREATED, Json(response)).into_response()
}

async fn create_v1(
    State(world): Shared,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Response {
    let mut world = world.lock().unwrap();
    if let Err(response) = control(&mut world, &headers, "POST /sandboxes".into()) {
        return response;
    }
    let secure = body.secure == Some(true);
    create(&mut world, body, secure)
}

async fn create_v2(
    State(world): Shared,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Response {
    let mut world = world.lock().unwrap();
    if let Err(response) = control(&mut world, &headers, "POST /v2/sandboxes".into()) {
        return response;
    }
    create(&mut world, body, true)
}

#[derive(Deserialize)]
struct TimeoutBody {
    timeout: i64,
}

#[derive(Deserialize)]
struct ConnectBody {
    timeout: Option<i64>,
}

async fn connect(
    State(world): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ConnectBody>>,
) -> Response {
    let mut world = world.lock().unwrap();
    if let Err(response) = control(&mut world, &headers, format!("POST connect {id}")) {
        return response;
    }
    let Some(sandbox) = world.sandboxes.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("sandbox \"{id}\" doesn't exist or you don't have access to it"),
        );
    };
    if let Some(timeout) = body.and_then(|Json(body)| body.timeout) {
        sandbox.end_at = sandbox
            .end_at
            .max(Utc::now() + chrono::Duration::seconds(timeout));
    }
    let version = world
        .envd_version
        .clone()
        .unwrap_or_else(|| ENVD_VERSION.to_string());
    let sandbox = &world.sandboxes[&id];
    (
        StatusCode::OK,
        Json(sandbox_body(&id, sandbox, true, &version)),
    )
        .into_response()
}

async fn info(State(world): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut world = world.lock().unwrap();
    if let Err(response) = control(&mut world, &headers, format!("GET {id}")) {
        return response;
    }
    match world.sandboxes.get(&id) {
        Some(sandbox) => Json(listed(&id, sandbox)).into_response(),
        None => error(StatusCode::NOT_FOUND, "sandbox not found"),
    }
}

async fn set_timeout(
    State(world): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<TimeoutBody>,
) -> Response {
    let mut world = world.lock().unwrap();
    if let Err(response) = control(&mut world, &headers, format!("POST timeout {id}")) {
        return response;
    }
    match world.sandboxes.get_mut(&id) {
        Some(sandbox) => {
            sandbox.end_at = Utc::now() + chrono::Duration::seconds(body.timeout);
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, "sandbox not found"),
    }
}

async fn kill(State(world): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut world = world.lock().unwrap();
    if let Err(response) = control(&mut world, &headers, format!("DELETE {id}")) {
        return response;
    }
    match world.sandboxes.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "sandbox not found"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    metadata: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
    next_token: Option<String>,
}

fn list(world: &mut World, query: ListQuery) -> (Vec<Value>, Option<String>) {
    // `metadata` is itself a query string: k1=v1&k2=v2 (URL-encoded once more by clients).
    let wanted: Vec<(String, String)> =
        query.metadata.as_deref().map(url_pairs).unwrap_or_default();
    let running_wanted = query
        .state
        .as_deref()
        .is_none_or(|state| state.split(',').any(|s| s == "running"));
    let mut ids: Vec<&String> = world
        .sandboxes
        .iter()
        .filter(|(_, sandbox)| {
            running_wanted
                && wanted
                    .iter()
                    .all(|(k, v)| sandbox.metadata.get(k) == Some(v))
        })
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    let start = query
        .next_token
        .and_then(|token| ids.iter().position(|id| **id == token))
        .unwrap_or(0);
    let limit = query.limit.unwrap_or(100).max(1);
    let page: Vec<Value> = ids
        .iter()
        .skip(start)
        .take(limit)
        .map(|id| listed(id, &world.sandboxes[*id]))
        .collect();
    let next = ids.get(start + limit).map(|id| id.to_string());
    (page, next)
}

fn url_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                if let Ok(byte) = u8::from_str_radix(hex, 16) {
                    out.push(byte);
                    index += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn list_v2(
    State(world): Shared,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let mut world = world.lock().unwrap();
    if let Err(response) = control(&mut world, &headers, "GET /v2/sandboxes".into()) {
        return response;
    }
    let (page, next) = list(&mut world, query);
    let mut response = Json(page).into_response();
    if let Some(next) = next {
        response
            .headers_mut()
            .insert("x-next-token", next.parse().unwrap());
    }
    response
}

async fn list_v1(
    State(world): Shared,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let mut world = world.lock().unwrap();
    if let Err(response) = control(&mut world, &headers, "GET /sandboxes".into()) {
        return response;
    }
    Json(
        list(
            &mut world,
            ListQuery {
                limit: Some(usize::MAX),
                next_token: None,
                ..query
            },
        )
        .0,
    )
    .into_response()
}

// --- envd ---

/// Finds the sandbox an envd call is for and checks its access token and user.
fn envd_sandbox(world: &World, headers: &HeaderMap) -> Result<PathBuf, Response> {
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
    Ok(sandbox.root.path().to_path_buf())
}

/// Maps a sandbox path onto the fake's folder; paths outside `/home/user` are refused.
fn host_path(root: &std::path::Path, path: &str) -> Result<PathBuf, Response> {
    let relative = match path.strip_prefix(HOME) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        _ if !path.starts_with('/') => path,
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "the fake only serves /home/user",
            ));
        }
    };
    if relative.split('/').any(|part| part == "..") {
        return Err(error(StatusCode::BAD_REQUEST, "path escapes the workspace"));
    }
    let target = root.join(relative);
    // The fake acts as root on the host, where a link in the workspace would lead out of
    // it; real envd acts as `user` inside the sandbox, where such a write is refused.
    let mut existing = target.as_path();
    while !existing.exists() {
        existing = existing.parent().unwrap_or(root);
    }
    let inside = existing
        .canonicalize()
        .is_ok_and(|real| real.starts_with(root.canonicalize().unwrap()));
    if !inside {
        return Err(error(StatusCode::FORBIDDEN, "permission denied"));
    }
    Ok(target)
}

async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct FileQuery {
    path: Option<String>,
}

async fn read_file(
    State(world): Shared,
    headers: HeaderMap,
    Query(query): Query<FileQuery>,
) -> Response {
    let root = match envd_sandbox(&world.lock().unwrap(), &headers) {
        Ok(root) => root,
        Err(response) => return response,
    };
    let path = match host_path(&root, query.path.as_deref().unwrap_or_default()) {
        Ok(path) => path,
        Err(response) => return response,
    };
    if path.is_dir() {
        return error(StatusCode::BAD_REQUEST, "path is a directory");
    }
    match std::fs::read(&path) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(_) => error(
            StatusCode::NOT_FOUND,
            &format!("path '{}' does not exist", query.path.unwrap_or_default()),
        ),
    }
}

fn write_one(root: &std::path::Path, path: &str, data: &[u8]) -> Result<Value, Response> {
    let target = host_path(root, path)?;
    // Create missing folders one by one so each belongs to the sandbox user, as envd does.
    let mut folder = root.to_path_buf();
    for part in target
        .strip_prefix(root)
        .unwrap()
        .parent()
        .into_iter()
        .flat_map(|parent| parent.components())
    {
        folder.push(part);
        if !folder.exists() {
            std::fs::create_dir(&folder).unwrap();
            std::os::unix::fs::chown(&folder, Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
        }
    }
    std::fs::write(&target, data).unwrap();
    std::os::unix::fs::chown(&target, Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
    let absolute = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{HOME}/{path}")
    };
    Ok(
        json!({ "name": absolute.rsplit('/').next().unwrap_or_default(), "type": "file", "path": absolute }),
    )
}

async fn write_files(
    State(world): Shared,
    Query(query): Query<FileQuery>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let root = match envd_sandbox(&world.lock().unwrap(), &headers) {
        Ok(root) => root,
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
            match write_one(&root, &path, &data) {
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
        match write_one(&root, &path, &data) {
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

fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pid}")])
        .status();
}

async fn start_process(State(world): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let root = match envd_sandbox(&world.lock().unwrap(), &headers) {
        Ok(root) => root,
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
    if let Some(cwd) = process["cwd"].as_str()
        && let Err(response) = host_path(&root, cwd)
    {
        return response;
    }
    let deadline = headers
        .get("connect-timeout-ms")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .map(Duration::from_millis);

    // Like envd, the command sees its workspace at /home/user: it runs in a mount namespace
    // of its own where the sandbox's folder is bound there, as the unprivileged user.
    let _ = std::fs::create_dir_all(HOME);
    let sandbox_cwd = process["cwd"].as_str().unwrap_or(HOME).to_string();
    let mut command = tokio::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" /home/user && cd "$2" && shift 2 && exec setpriv --reuid "$UID_" --regid "$UID_" --clear-groups -- "$@""#)
        .arg("sh")
        .arg(&root)
        .arg(&sandbox_cwd)
        .arg(program)
        .args(&args)
        .env("UID_", SANDBOX_UID.to_string())
        .env("HOME", HOME)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(envs) = process["envs"].as_object() {
        for (key, value) in envs {
            command.env(key, value.as_str().unwrap_or_default());
        }
    }
    let mut child = command.spawn().unwrap();
    let pid = child.id().unwrap_or_default();
    let (sender, receiver) = mpsc::channel::<Vec<u8>>(64);

    tokio::spawn(async move {
        // The start event and a keepalive packed into one chunk.
        let mut first = envelope(0, &json!({ "event": { "start": { "pid": pid } } }));
        first.extend(envelope(0, &json!({ "event": { "keepalive": {} } })));
        let _ = sender.send(first).await;
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let pump = |mut stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    name: &'static str,
                    sender: mpsc::Sender<Vec<u8>>| async move {
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
                if sender.send(head.to_vec()).await.is_err()
                    || sender.send(tail.to_vec()).await.is_err()
                {
                    break;
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
            kill_group(pid);
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

async fn send_signal(
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
        kill_group(pid as u32);
    }
    Json(json!({})).into_response()
}

async fn list_processes(State(world): Shared, headers: HeaderMap) -> Response {
    if let Err(response) = envd_sandbox(&world.lock().unwrap(), &headers) {
        return response;
    }
    Json(json!({ "processes": [] })).into_response()
}

/// A sandbox's port, as E2B's edge serves `<port>-<sandbox id>.<domain>`: a private
/// sandbox answers only with its traffic token, as the real edge does (403 otherwise).
async fn sandbox_port(State(world): Shared, headers: HeaderMap) -> Response {
    let host = headers
        .get("host")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let Some((port, rest)) = host.split_once('-') else {
        return error(StatusCode::NOT_FOUND, "no such route");
    };
    let id = rest.split('.').next().unwrap_or_default();
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
    (StatusCode::OK, format!("port {port} of sandbox {id}")).into_response()
}
