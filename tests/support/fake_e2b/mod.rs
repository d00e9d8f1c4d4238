//! A stand-in for E2B: the control API (`/sandboxes`, `/v2/sandboxes`) and each sandbox's
//! envd (Connect-RPC `process.Process/*`, `/files`, `/health`) on one local listener.
//! Commands really run: in a temporary folder on this machine that stands for
//! `/home/user`, or, started with an image, in a container of the sandbox template (see
//! `machine`). Clients reach envd through `E2B_SANDBOX_URL`, the SDKs' own override, and
//! the fake tells sandboxes apart by the `E2b-Sandbox-Id` header, as E2B's edge does.
//! `tests/sdk_checks/e2b_check.py` drives it with the official `e2b` SDK.

// Handlers here return ready responses as errors; their size does not matter in a test fake.
#![allow(clippy::result_large_err)]

mod envd;
mod machine;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use envd::{
    health, list_processes, read_file, sandbox_port, send_signal, start_process, write_files,
};
use machine::{Machine, Stopper};

pub const API_KEY: &str = "e2b_test_key";
pub const ENVD_VERSION: &str = "0.5.7";
const HOME: &str = "/home/user";

struct FakeSandbox {
    template: String,
    metadata: HashMap<String, String>,
    access_token: String,
    /// Set when created with `network.allowPublicTraffic: false`: its ports then answer
    /// only requests that carry it (`e2b-traffic-access-token`).
    traffic_token: Option<String>,
    machine: Arc<Machine>,
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
    /// Sandboxes are containers of this image (else folders on this machine).
    image: Option<String>,
    /// Commands started so far, and how to stop each one by the pid it was given.
    started: u64,
    processes: HashMap<u32, Stopper>,
}

/// Where the E2B backend keeps each project's sandbox id, gone with the test.
pub fn id_tree() -> sled::Tree {
    sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree("e2b")
        .unwrap()
}

#[derive(Clone)]
pub struct FakeE2b {
    pub url: String,
    world: Arc<Mutex<World>>,
}

impl FakeE2b {
    pub async fn start() -> Self {
        Self::serve(World::default()).await
    }

    /// A fake whose sandboxes are containers of `image` (the sandbox template's), so the
    /// template's start command, dev server and database run as in a real E2B sandbox.
    pub async fn start_running(image: &str) -> Self {
        Self::serve(World {
            image: Some(image.to_string()),
            ..World::default()
        })
        .await
    }

    /// A fake whose sandboxes run the template image the Docker backend `docker` builds
    /// (E2B's comes from the same files, e2b.Dockerfile).
    pub async fn on_template(docker: &codeflux::sandbox::docker::DockerProvider) -> Self {
        let image = docker
            .prepare_image(&mut |_| {})
            .await
            .expect("the sandbox image builds");
        Self::start_running(&image).await
    }

    async fn serve(world: World) -> Self {
        let world = Arc::new(Mutex::new(world));
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

    /// The backend's settings for a fake started with an image: every sandbox port is
    /// reached through the fake's edge (`*.e2b.test` has no DNS name here).
    pub fn edge_config(&self) -> codeflux::sandbox::e2b::E2bConfig {
        codeflux::sandbox::e2b::E2bConfig {
            api_key: API_KEY.to_string(),
            domain: "e2b.test".into(),
            api_url: self.url.clone(),
            sandbox_url: Some(self.url.clone()),
            edge_url: Some(self.url.clone()),
            template: "codeflux-nextjs".into(),
            lifetime: std::time::Duration::from_secs(1800),
            max_attempts: 3,
        }
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

    /// The sandbox disappears, as when it expires (a container machine is removed).
    pub fn vanish(&self, sandbox_id: &str) {
        let gone = self.world.lock().unwrap().sandboxes.remove(sandbox_id);
        drop(gone);
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
            .and_then(|sandbox| sandbox.machine.folder_path().map(PathBuf::from))
    }
}

type Shared = State<Arc<Mutex<World>>>;

pub(super) fn error(status: StatusCode, message: &str) -> Response {
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

/// Checks the call, then makes the sandbox's machine (a container takes a moment, so the
/// world is not held meanwhile) and records it.
async fn create(
    world: &Mutex<World>,
    headers: &HeaderMap,
    call: &str,
    body: CreateBody,
    with_token: bool,
) -> Response {
    let image = {
        let mut world = world.lock().unwrap();
        if let Err(response) = control(&mut world, headers, call.into()) {
            return response;
        }
        world.image.clone()
    };
    let id: String = uuid::Uuid::now_v7().simple().to_string()[12..32].to_string();
    let machine = match &image {
        Some(image) => Machine::container(image, &id).await,
        None => Machine::folder(),
    };
    let mut world = world.lock().unwrap();
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
        machine: Arc::new(machine),
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
    let secure = body.secure == Some(true);
    create(&world, &headers, "POST /sandboxes", body, secure).await
}

async fn create_v2(
    State(world): Shared,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Response {
    create(&world, &headers, "POST /v2/sandboxes", body, true).await
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
