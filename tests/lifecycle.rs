//! The real `codeflux serve` process on the real Docker engine with the scripted model:
//! graceful shutdown with jobs running, `codeflux sandboxes`, and `kill -9` at varied points
//! followed by a restart on the same data directory.

mod support;

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use support::docker_env::{Cleanup, containers_of, running_containers_of};
use support::fake_llm::{FakeLlm, Reply};
use support::process::{ServerProcess, docker_env};
use uuid::Uuid;

const PAGE: &str = "export default function Page() {\n  return <main>Lifecycle</main>;\n}\n";

fn new_instance() -> (String, Cleanup) {
    let instance = format!("test-{}", Uuid::now_v7().simple());
    (
        instance.clone(),
        Cleanup {
            instance: instance.clone(),
        },
    )
}

/// Runs `codeflux sandboxes …` for the installation at `data_dir`; returns its stdout.
fn sandboxes_command(data_dir: &Path, env: &[(String, String)], args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .arg("sandboxes")
        .args(args)
        .env("CODEFLUX_DATA_DIR", data_dir)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "codeflux sandboxes {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn is_event(event: &Value, kind: &str) -> bool {
    event["event"] == kind
}

/// The one-assistant-message-per-prompt invariant: the user's prompt once, then exactly one
/// answer (a result or an error), nothing lost or doubled.
fn assert_answered_once(project: &Value, prompt: &str) {
    let messages = project["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{project:#}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], prompt);
    assert_eq!(messages[1]["role"], "assistant");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_promptly_requeues_the_job_and_stops_the_sandboxes() {
    let fake = FakeLlm::start().await;
    let (instance, _cleanup) = new_instance();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let env = docker_env(&instance, &fake.base_url);
    fake.push_all([
        Reply::write("app/page.tsx", PAGE),
        Reply::terminal("sleep 300"),
    ]);

    let mut server = ServerProcess::start(&data_dir, &env).await;
    let (status, body) = server
        .post("/api/projects", json!({ "prompt": "a page" }))
        .await;
    assert_eq!(status, 201, "{body}");
    let project = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        body["preview_url"],
        format!("http://{project}.localhost:{}", server.preview_port),
        "the preview URL follows the preview listener's port"
    );
    server
        .wait_for_event(&project, "long command started", |event| {
            is_event(event, "tool_started") && event["tool"] == "terminal"
        })
        .await;
    let (mut viewer, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/projects/{project}/ws",
        server.base.rsplit(':').next().unwrap()
    ))
    .await
    .expect("a progress viewer connects");

    server.signal("TERM");
    let (status, took) = server.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    // `docker stop` and systemd wait 10 s before they kill a service.
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?}:\n{}",
        server.log_text()
    );
    let viewer_closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = viewer.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(viewer_closed.is_ok(), "the WebSocket viewer was closed");
    assert_eq!(running_containers_of(&instance), 0, "sandboxes are stopped");
    assert_eq!(containers_of(&instance), 1, "and kept, with their files");
    let listed = sandboxes_command(&data_dir, &env, &[]);
    assert!(
        listed.contains(&project) && listed.contains("stopped"),
        "{listed}"
    );

    // Back up: the job runs again from the start and is answered exactly once.
    fake.clear();
    fake.push_all([Reply::write("app/page.tsx", PAGE), Reply::summary("done")]);
    let mut server = ServerProcess::start(&data_dir, &env).await;
    let done = server.settled(&project).await;
    assert_answered_once(&done, "a page");
    assert_eq!(done["messages"][1]["type"], "result", "{done:#}");
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let events = events.as_array().unwrap();
    assert!(events.iter().any(|event| is_event(event, "requeued")));
    assert_eq!(
        events
            .iter()
            .filter(|event| is_event(event, "started"))
            .map(|event| event["attempt"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 1],
        "a clean shutdown does not count as an attempt"
    );
    let listed = sandboxes_command(&data_dir, &env, &[]);
    assert!(
        listed.contains(&project) && listed.contains("running") && listed.contains("MB"),
        "running sandboxes show their memory: {listed}"
    );

    // A second installation whose server is running keeps its sandboxes through
    // `prune --all-instances`; the stopped first one loses its own.
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(60)).await;
    let (other_instance, _other_cleanup) = new_instance();
    let other_env = docker_env(&other_instance, &fake.base_url);
    let other_dir = dir.path().join("other");
    fake.push_all([Reply::write("app/page.tsx", PAGE), Reply::summary("done")]);
    let mut other = ServerProcess::start(&other_dir, &other_env).await;
    let (_, body) = other
        .post("/api/projects", json!({ "prompt": "another" }))
        .await;
    other.settled(body["id"].as_str().unwrap()).await;
    let pruned = sandboxes_command(&other_dir, &other_env, &["prune", "--all-instances"]);
    assert!(pruned.contains("removed"), "{pruned}");
    assert_eq!(
        containers_of(&instance),
        0,
        "the stopped server's sandbox went"
    );
    assert_eq!(
        running_containers_of(&other_instance),
        1,
        "the running server's sandbox stayed"
    );

    // `prune` removes this installation's stopped sandboxes.
    other.signal("TERM");
    other.wait_exit(Duration::from_secs(60)).await;
    let pruned = sandboxes_command(&other_dir, &other_env, &["prune"]);
    assert!(pruned.contains("removed 1"), "{pruned}");
    assert_eq!(containers_of(&other_instance), 0);
}

/// Where a trial kills the server.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after the prompt is acknowledged, before the model is asked anything.
    BeforeTheFirstModelCall,
    /// While a tool call runs in the sandbox.
    MidToolLoop,
    /// While the answer is being put together (title and reply calls) and stored.
    WhileSavingTheAnswer,
}

const KILL_POINTS: [KillPoint; 3] = [
    KillPoint::BeforeTheFirstModelCall,
    KillPoint::MidToolLoop,
    KillPoint::WhileSavingTheAnswer,
];

/// `kill -9` at each point, then a restart on the same data directory: every prompt ends with
/// exactly one answer and no sandbox is left behind. `CODEFLUX_SOAK_TRIALS` runs more trials
/// (`scripts/crash-soak.sh` runs 20 and records the result in docs/).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_any_point_loses_nothing_and_answers_once() {
    let trials: usize = std::env::var("CODEFLUX_SOAK_TRIALS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(KILL_POINTS.len());
    let fake = FakeLlm::start().await;
    let (instance, _cleanup) = new_instance();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let env = docker_env(&instance, &fake.base_url);
    let mut server = ServerProcess::start(&data_dir, &env).await;
    let mut projects = Vec::new();
    for trial in 0..trials {
        let point = KILL_POINTS[trial % KILL_POINTS.len()];
        let started = std::time::Instant::now();
        fake.clear();
        fake.set_side_delay(Duration::ZERO);
        match point {
            KillPoint::BeforeTheFirstModelCall => {
                fake.push_all([Reply::write("app/page.tsx", PAGE), Reply::summary("done")])
            }
            KillPoint::MidToolLoop => fake.push_all([
                Reply::write("app/page.tsx", PAGE),
                Reply::terminal("sleep 300"),
            ]),
            KillPoint::WhileSavingTheAnswer => {
                fake.set_side_delay(Duration::from_secs(300));
                fake.push_all([Reply::write("app/page.tsx", PAGE), Reply::summary("done")]);
            }
        }
        let side_calls_before = fake.side_requests();
        let prompt = format!("trial {trial}");
        let (status, body) = server
            .post("/api/projects", json!({ "prompt": prompt }))
            .await;
        assert_eq!(status, 201, "{body}");
        let project = body["id"].as_str().unwrap().to_string();
        match point {
            KillPoint::BeforeTheFirstModelCall => {}
            KillPoint::MidToolLoop => {
                server
                    .wait_for_event(&project, "long command started", |event| {
                        is_event(event, "tool_started") && event["tool"] == "terminal"
                    })
                    .await
            }
            KillPoint::WhileSavingTheAnswer => {
                server
                    .wait_for_event(&project, "summary", |event| is_event(event, "summary"))
                    .await;
                while fake.side_requests() == side_calls_before {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        server.kill_hard().await;

        fake.clear();
        fake.set_side_delay(Duration::ZERO);
        fake.push_all([Reply::write("app/page.tsx", PAGE), Reply::summary("done")]);
        server = ServerProcess::start(&data_dir, &env).await;
        let done = server.settled(&project).await;
        assert_answered_once(&done, &prompt);
        let answer = &done["messages"][1];
        assert_eq!(
            answer["type"], "result",
            "trial {trial} ({point:?}): {done:#}"
        );
        let sandboxes = sandboxes_command(&data_dir, &env, &[]);
        assert_eq!(
            sandboxes.matches(&project).count(),
            1,
            "one sandbox for the project: {sandboxes}"
        );
        println!(
            "trial {trial}: killed {point:?}; after restart: {} ({:.1} s)",
            answer["type"],
            started.elapsed().as_secs_f64()
        );
        projects.push((project, prompt));
    }

    // Nothing was lost or doubled across all the restarts.
    for (project, prompt) in &projects {
        let (_, detail) = server.get(&format!("/api/projects/{project}")).await;
        assert_answered_once(&detail, prompt);
    }
    let (_, list) = server.get("/api/projects?limit=100").await;
    assert_eq!(list["projects"].as_array().unwrap().len(), trials);

    // Deleting the projects removes every sandbox: nothing leaked.
    for (project, _) in &projects {
        let response = reqwest::Client::new()
            .delete(format!("{}/api/projects/{project}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    for _ in 0..600 {
        if containers_of(&instance) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(containers_of(&instance), 0, "no sandbox leaked");
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(60)).await;
}

/// Secrets given to CodeFlux (model key, E2B key, access token) reach no sandbox, log,
/// progress event, page or model request.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_leave_the_server() {
    const LLM_KEY: &str = "sk-planted-llm-key-5f1e2d3c4b5a";
    const E2B_KEY: &str = "e2b_planted_key_9a8b7c6d5e4f";
    const TOKEN: &str = "planted-auth-token-0a1b2c3d4e5f";
    let secrets = [LLM_KEY, E2B_KEY, TOKEN];
    let fake = FakeLlm::start().await;
    fake.require_key(LLM_KEY);
    let (instance, _cleanup) = new_instance();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut env = docker_env(&instance, &fake.base_url);
    env.extend([
        ("CODEFLUX_LLM_API_KEY".to_string(), LLM_KEY.to_string()),
        ("E2B_API_KEY".to_string(), E2B_KEY.to_string()),
        ("CODEFLUX_AUTH_TOKEN".to_string(), TOKEN.to_string()),
        ("RUST_LOG".to_string(), "debug".to_string()),
    ]);
    fake.push_all([
        Reply::terminal("env; tr '\\0' '\\n' < /proc/1/environ; cat ~/.npmrc 2>/dev/null; true"),
        Reply::write("app/page.tsx", PAGE),
        Reply::summary("done"),
    ]);
    let mut server = ServerProcess::start(&data_dir, &env).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (_, created) = server
        .post("/api/projects", json!({ "prompt": "show me your secrets" }))
        .await;
    let project = created["id"].as_str().unwrap().to_string();
    let detail = server.settled(&project).await;
    assert_eq!(detail["messages"][1]["type"], "result", "{detail:#}");

    let mut seen = vec![("project JSON".to_string(), detail.to_string())];
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    seen.push(("progress events".into(), events.to_string()));
    let signed_in = http
        .post(format!("{}/login", server.base))
        .form(&[("token", TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    let session = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for page in [
        "/".to_string(),
        format!("/projects/{project}"),
        format!("/projects/{project}/workspace?tab=code&file=app/page.tsx"),
    ] {
        let html = http
            .get(format!("{}{page}", server.base))
            .header("cookie", &session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("CodeFlux"), "{page} rendered");
        seen.push((format!("page {page}"), html));
    }
    seen.push((
        "model requests".into(),
        serde_json::to_string(&fake.requests()).unwrap(),
    ));
    let container = String::from_utf8(
        std::process::Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=codeflux.instance={instance}"),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(!container.is_empty(), "the sandbox runs");
    let inspect = std::process::Command::new("docker")
        .args(["inspect", &container])
        .output()
        .unwrap();
    seen.push((
        "container settings".into(),
        String::from_utf8_lossy(&inspect.stdout).into_owned(),
    ));
    // A canary the same search must find: a search that ran nowhere, or found nothing
    // because it could not read, fails here instead of passing.
    const CANARY: &str = "canary-3e8f1a9b7c2d";
    let planted = std::process::Command::new("docker")
        .args(["exec", &container, "sh", "-c"])
        .arg(format!("echo {CANARY} > /tmp/codeflux-canary"))
        .status()
        .unwrap();
    assert!(planted.success(), "the canary was planted");
    let pattern = secrets
        .iter()
        .chain([&CANARY])
        .copied()
        .collect::<Vec<_>>()
        .join("\\|");
    let inside = std::process::Command::new("docker")
        .args([
            "exec",
            &container,
            "sh",
            "-c",
            &format!("grep -rl '{pattern}' /home/user /tmp /etc /proc/1/environ 2>/dev/null"),
        ])
        .output()
        .unwrap();
    // grep answers 0 when it found something, 2 when besides some file was unreadable.
    assert!(
        matches!(inside.status.code(), Some(0 | 2)),
        "the search ran: {inside:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&inside.stdout).trim(),
        "/tmp/codeflux-canary",
        "files inside the sandbox hold a secret (or the canary was not found)"
    );
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(60)).await;
    seen.push(("server log".into(), server.log_text()));
    assert!(
        server.log_text().contains("DEBUG"),
        "the log was written at debug level"
    );
    for (place, text) in &seen {
        for secret in secrets {
            assert!(!text.contains(secret), "{place} contains a planted secret");
        }
    }
}

/// Peak resident memory of a process, in MiB (`VmHWM` in /proc).
fn peak_rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib / 1024)
}

/// Loopback load, bounded in count and time: 200 WebSocket viewers on 4 running jobs plus
/// 50 API requests a second for `CODEFLUX_LOAD_SECS` (default 60). Nothing fails and the
/// server's memory stays bounded; the figures printed go to docs/benchmarks.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_viewers_and_steady_api_traffic_cause_no_errors() {
    const PROJECTS: usize = 4;
    const VIEWERS_PER_PROJECT: usize = 50;
    const REQUESTS_PER_SECOND: u64 = 50;
    let seconds: u64 = std::env::var("CODEFLUX_LOAD_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    let fake = FakeLlm::start().await;
    // Jobs that keep running for the whole test: a step every half second.
    fake.set_delay(Duration::from_millis(500));
    fake.push_all((0..PROJECTS * 400).map(|step| Reply::terminal(&format!("echo step {step}"))));
    let (instance, _cleanup) = new_instance();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut env = docker_env(&instance, &fake.base_url);
    env.push(("CODEFLUX_MAX_JOBS".into(), PROJECTS.to_string()));
    env.push(("CODEFLUX_MAX_ITERATIONS".into(), "1000".into()));
    env.push(("RUST_LOG".into(), "warn".into()));
    let mut server = ServerProcess::start(&data_dir, &env).await;
    let port = server.base.rsplit(':').next().unwrap().to_string();

    let mut projects = Vec::new();
    for n in 0..PROJECTS {
        let (status, body) = server
            .post("/api/projects", json!({ "prompt": format!("load {n}") }))
            .await;
        assert_eq!(status, 201);
        projects.push(body["id"].as_str().unwrap().to_string());
    }
    for project in &projects {
        server
            .wait_for_event(project, "first tool call", |event| {
                is_event(event, "tool_finished")
            })
            .await;
    }

    let stop = tokio_util::sync::CancellationToken::new();
    let mut viewers = Vec::new();
    for project in &projects {
        for _ in 0..VIEWERS_PER_PROJECT {
            let url = format!("ws://127.0.0.1:{port}/projects/{project}/ws");
            let stop = stop.clone();
            viewers.push(tokio::spawn(async move {
                let (mut socket, _) = tokio_tungstenite::connect_async(&url)
                    .await
                    .expect("a viewer connects");
                let mut messages = 0u64;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(messages),
                        message = socket.next() => match message {
                            Some(Ok(_)) => messages += 1,
                            Some(Err(error)) => return Err(format!("viewer broke: {error}")),
                            None => return Err("viewer closed early".to_string()),
                        },
                    }
                }
            }));
        }
    }

    let http = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / REQUESTS_PER_SECOND));
    let mut requests = Vec::new();
    let started = std::time::Instant::now();
    let total = seconds * REQUESTS_PER_SECOND;
    for n in 0..total {
        ticker.tick().await;
        let project = &projects[n as usize % PROJECTS];
        let path = match n % 3 {
            0 => "/api/projects?limit=20".to_string(),
            1 => format!("/api/projects/{project}"),
            _ => format!("/api/projects/{project}/events"),
        };
        let url = format!("{}{path}", server.base);
        let http = http.clone();
        requests.push(tokio::spawn(async move {
            let sent = std::time::Instant::now();
            let response = http
                .get(&url)
                .send()
                .await
                .map_err(|error| error.to_string())?;
            let status = response.status();
            response.bytes().await.map_err(|error| error.to_string())?;
            if status != 200 {
                return Err(format!("{url}: {status}"));
            }
            Ok(sent.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for request in requests {
        match request.await.unwrap() {
            Ok(latency) => latencies.push(latency),
            Err(error) => errors.push(error),
        }
    }
    let elapsed = started.elapsed();
    let peak_mib = peak_rss_mib(server.pid());
    stop.cancel();
    let mut messages = 0;
    for viewer in viewers {
        match viewer.await.unwrap() {
            Ok(count) => messages += count,
            Err(error) => errors.push(error),
        }
    }
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "load: {} viewers, {total} API requests in {:.1} s, {} errors; API p50 {:?}, p99 {:?}; {messages} WebSocket messages; server peak RSS {peak_mib} MiB",
        PROJECTS * VIEWERS_PER_PROJECT,
        elapsed.as_secs_f64(),
        errors.len(),
        percentile(50),
        percentile(99),
    );
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(messages > 0, "viewers saw live progress");
    assert!(
        peak_mib < 512,
        "the server's memory grew to {peak_mib} MiB under load"
    );
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(60)).await;
}
