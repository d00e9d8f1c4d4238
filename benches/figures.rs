//! Every performance figure in one run, printed as a table (also written to
//! `target/figures.md`) for docs/benchmarks.md:
//!
//!   eval "$(../shared/ci/docker-up.sh | grep '^export ')"   # or any engine with a Node image
//!   cargo bench                      # or only some parts: cargo bench -- hot preview
//!
//! The real `codeflux serve` binary (release build) runs against the Docker engine and a
//! zero-latency scripted model, so the figures are CodeFlux's own: start-up, idle memory,
//! prompt → preview with and without the warm pool, eight generations at once, the exec and
//! file-write hot paths, what the dev server's source tags cost, and page latency with
//! 100,000 projects. Benchmarks measure; no test
//! asserts a timing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use codeflux::preview::RunningOnly;
use codeflux::sandbox::docker::{DockerConfig, DockerProvider};
use codeflux::sandbox::{FileWrite, SandboxProvider, WorkspacePath};
use serde_json::{Value, json};
use uuid::Uuid;

#[path = "figures/browser.rs"]
mod browser;
#[path = "figures/publish.rs"]
mod publish;

/// Where a prompt names the text its page must show.
const MARK: &str = "NONCE:";

// ---------------------------------------------------------------- the scripted model

/// A model that answers from the conversation itself, so any number of jobs can run at once:
/// the first turn writes `app/page.tsx` showing the prompt's nonce, the next one ends the task,
/// and requests without tools (title, reply) get a short text.
async fn scripted_model() -> String {
    async fn answer(Json(request): Json<Value>) -> Json<Value> {
        let messages = request["messages"].as_array().cloned().unwrap_or_default();
        let has_tools = request["tools"].as_array().is_some_and(|t| !t.is_empty());
        let turns = messages.iter().filter(|m| m["role"] == "assistant").count();
        let prompt = messages
            .iter()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default();
        let nonce: String = prompt
            .split(MARK)
            .nth(1)
            .unwrap_or("none")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let (message, finish) = if !has_tools {
            (
                json!({ "role": "assistant", "content": "Bench Page" }),
                "stop",
            )
        } else if turns == 0 {
            let files = json!({ "files": [{
                "path": "app/page.tsx",
                "content": format!("export default function Page() {{ return <main>{nonce}</main>; }}\n"),
            }] });
            (
                json!({ "role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": { "name": "createOrUpdateFiles", "arguments": files.to_string() },
                }] }),
                "tool_calls",
            )
        } else {
            (
                json!({ "role": "assistant", "content": "<task_summary>done</task_summary>" }),
                "stop",
            )
        };
        Json(json!({
            "id": "bench", "object": "chat.completion", "created": 0, "model": "bench",
            "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
            "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 },
        }))
    }
    let app = axum::Router::new().route("/v1/chat/completions", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

// ---------------------------------------------------------------- the server under test

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: tokio::process::Child,
    base: String,
    preview_port: u16,
    http: reqwest::Client,
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `codeflux serve`; returns it once it answers, with the time that took.
    async fn start(data_dir: &Path, env: &[(&str, String)]) -> (Self, Duration) {
        let (port, preview_port) = (free_port(), free_port());
        let started = Instant::now();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
            .arg("serve")
            .env("CODEFLUX_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "CODEFLUX_PREVIEW_LISTEN",
                format!("127.0.0.1:{preview_port}"),
            )
            .env("CODEFLUX_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            preview_port,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _data: None,
        };
        loop {
            if server
                .http
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return (server, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id().unwrap())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    async fn create(&self, prompt: &str) -> String {
        let created: Value = self
            .http
            .post(format!("{}/api/projects", self.base))
            .json(&json!({ "prompt": prompt }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"].as_str().unwrap().to_string()
    }

    /// `GET /api/projects/{id}`.
    async fn detail(&self, project: &str) -> Value {
        self.http
            .get(format!("{}/api/projects/{project}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn until_idle(&self, project: &str) -> Value {
        loop {
            let detail = self.detail(project).await;
            if detail["status"] == "idle" {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn until_preview_shows(&self, project: &str, text: &str) {
        let url = format!("http://127.0.0.1:{}/", self.preview_port);
        let host = format!("{project}.localhost:{}", self.preview_port);
        shows(&self.http, &url, &host, text).await;
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------- figures

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

struct Table(Vec<[String; 3]>);

impl Table {
    fn row(&mut self, what: &str, result: String, notes: &str) {
        println!("  {what}: {result}");
        self.0.push([what.to_string(), result, notes.to_string()]);
    }
}

fn sandbox_env(instance: &str, model: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CODEFLUX_SANDBOX", "docker".to_string()),
        ("CODEFLUX_SANDBOX_INSTANCE", instance.to_string()),
        ("CODEFLUX_LLM_BASE_URL", model.to_string()),
        ("CODEFLUX_MODEL", "bench".to_string()),
        ("CODEFLUX_SANDBOX_POOL", "0".to_string()),
    ];
    if let Ok(base) = std::env::var("CODEFLUX_TEST_BASE_IMAGE") {
        env.push(("CODEFLUX_SANDBOX_BASE_IMAGE", base));
    }
    if let Ok(ca) = std::env::var("CODEFLUX_TEST_CA_CERT")
        && !ca.is_empty()
    {
        env.push(("CODEFLUX_SANDBOX_CA_CERT", ca));
    }
    env
}

fn set(env: &mut Vec<(&'static str, String)>, key: &'static str, value: &str) {
    env.retain(|(name, _)| *name != key);
    env.push((key, value.to_string()));
}

/// Removes every container of the benchmark's instances.
fn remove_instance(instance: &str) {
    let listed = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=codeflux.instance={instance}"),
        ])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// Used memory of the host (MemTotal − MemAvailable), in MiB.
fn host_used_mib() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    (field("MemTotal:") - field("MemAvailable:")) / 1024.0
}

/// Start-up time and idle memory of the server itself.
async fn startup(table: &mut Table, model: &str) {
    let instance = format!("bench-{}", Uuid::now_v7().simple());
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let data = tempfile::tempdir().unwrap();
        let (server, took) = Server::start(data.path(), &sandbox_env(&instance, model)).await;
        times.push(took);
        tokio::time::sleep(Duration::from_secs(3)).await;
        rss.push(server.rss_mib());
    }
    rss.sort_by(f64::total_cmp);
    table.row(
        "Start → listening",
        ms(median(times)),
        "`codeflux serve` spawned until `/healthz` answers, empty data dir, Docker backend; median of 5",
    );
    table.row(
        "Idle memory (RSS)",
        format!("{:.1} MiB", rss[rss.len() / 2]),
        "3 s after start, nothing running; median of 5",
    );
    remove_instance(&instance);
}

/// POST a prompt → the preview serves the generated page, cold and from the warm pool,
/// side by side with the same server binary and model.
async fn prompt_to_preview(table: &mut Table, model: &str) {
    let instance = format!("bench-{}", Uuid::now_v7().simple());
    let runs = 5;
    let mut results = Vec::new();
    for pool in [0, 1] {
        let data = tempfile::tempdir().unwrap();
        let mut env = sandbox_env(&instance, model);
        set(&mut env, "CODEFLUX_SANDBOX_POOL", &pool.to_string());
        let (server, _) = Server::start(data.path(), &env).await;
        let mut samples = Vec::new();
        for _ in 0..runs {
            if pool > 0 {
                while server.metric("codeflux_sandboxes_warm").await < 1.0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let nonce = Uuid::now_v7().simple().to_string();
            let started = Instant::now();
            let project = server.create(&format!("a page {MARK}{nonce}")).await;
            server.until_preview_shows(&project, &nonce).await;
            samples.push(started.elapsed());
            // The app check runs after the page shows; let it end before the next run.
            server.until_idle(&project).await;
        }
        results.push(median(samples));
        drop(server);
        remove_instance(&instance);
    }
    let (cold, warm) = (results[0], results[1]);
    table.row(
        "Prompt → preview shows the page, cold",
        secs(cold),
        "POST `/api/projects` until the preview serves the generated text; new container, dev server's first compile; median of 5",
    );
    table.row(
        "Prompt → preview shows the page, warm pool",
        secs(warm),
        "the same with `CODEFLUX_SANDBOX_POOL=1`: a warm sandbox is claimed and hot-reloads the page; median of 5",
    );
    table.row(
        "Warm pool speed-up",
        format!("{:.1}×", cold.as_secs_f64() / warm.as_secs_f64()),
        "cold ÷ warm, same run",
    );
}

/// Eight generations at once on the Docker backend.
async fn eight_at_once(table: &mut Table, model: &str) {
    let instance = format!("bench-{}", Uuid::now_v7().simple());
    let data = tempfile::tempdir().unwrap();
    let mut env = sandbox_env(&instance, model);
    set(&mut env, "CODEFLUX_MAX_JOBS", "8");
    let (server, _) = Server::start(data.path(), &env).await;
    let server = Arc::new(server);
    let baseline = host_used_mib();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(host_used_mib());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        })
    };
    let started = Instant::now();
    let jobs: Vec<_> = (0..8)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                let project = server
                    .create(&format!("a page {MARK}{}", Uuid::now_v7().simple()))
                    .await;
                let detail = server.until_idle(&project).await;
                detail["messages"][1]["type"] == "result"
            })
        })
        .collect();
    let mut succeeded = 0;
    for job in jobs {
        succeeded += usize::from(job.await.unwrap());
    }
    let wall = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = peak.await.unwrap();
    let stats = std::process::Command::new("docker")
        .args(["stats", "--no-stream", "--format", "{{.MemUsage}}"])
        .args(
            String::from_utf8_lossy(
                &std::process::Command::new("docker")
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
            .split_whitespace(),
        )
        .output()
        .unwrap();
    let mut per_sandbox: Vec<f64> = String::from_utf8_lossy(&stats.stdout)
        .lines()
        .filter_map(|line| {
            let used = line.split('/').next()?.trim();
            let (number, unit) = used.split_at(used.find(|c: char| c.is_alphabetic())?);
            let number: f64 = number.parse().ok()?;
            Some(match unit {
                "GiB" => number * 1024.0,
                "KiB" => number / 1024.0,
                _ => number,
            })
        })
        .collect();
    per_sandbox.sort_by(f64::total_cmp);
    table.row(
        "8 generations at once",
        format!("{succeeded}/8 succeeded in {}", secs(wall)),
        "`CODEFLUX_MAX_JOBS=8`, no pool, each with its own new sandbox, write + app check (tsc, page fetch)",
    );
    table.row(
        "8 at once: peak host memory",
        format!("+{:.0} MiB", peak - baseline),
        "host MemTotal − MemAvailable, peak during the run minus before it",
    );
    if !per_sandbox.is_empty() {
        table.row(
            "8 at once: memory per sandbox",
            format!(
                "median {:.0} MiB, max {:.0} MiB",
                per_sandbox[per_sandbox.len() / 2],
                per_sandbox[per_sandbox.len() - 1]
            ),
            "`docker stats` right after, dev servers idle",
        );
    }
    drop(server);
    remove_instance(&instance);
}

/// Waits until the page at `url` (as `host`) contains `text`.
async fn shows(client: &reqwest::Client, url: &str, host: &str, text: &str) {
    loop {
        if let Ok(response) = client.get(url).header("host", host).send().await
            && response.status() == 200
            && response.text().await.unwrap_or_default().contains(text)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sandbox settings of the environment, on the test base image and CA when given,
/// without a pool.
fn bench_config() -> DockerConfig {
    let mut config = DockerConfig::from_env().expect("sandbox configuration");
    if let Ok(base) = std::env::var("CODEFLUX_TEST_BASE_IMAGE") {
        config.base_image = base;
    }
    if let Ok(ca) = std::env::var("CODEFLUX_TEST_CA_CERT")
        && !ca.is_empty()
    {
        config.ca_cert = Some(ca.into());
    }
    config.pool = 0;
    config
}

/// Exec round trip (ours against the CLI) and file write → visible, on one sandbox.
async fn hot_paths(table: &mut Table) {
    let mut config = bench_config();
    config.instance = format!("bench-{}", Uuid::now_v7().simple());
    let instance = config.instance.clone();
    let provider = Arc::new(
        DockerProvider::connect(config)
            .await
            .expect("a Docker engine"),
    );
    let project = Uuid::now_v7();
    let sandbox = provider.acquire(project).await.unwrap().sandbox;
    let (mut ours, mut cli) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let started = Instant::now();
        sandbox.run("true", Duration::from_secs(10)).await.unwrap();
        ours.push(started.elapsed());
        let started = Instant::now();
        let status = tokio::process::Command::new("docker")
            .args(["exec", "-u", "user", sandbox.id(), "true"])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        cli.push(started.elapsed());
    }
    let (ours, cli) = (median(ours), median(cli));
    table.row(
        "Exec round trip, `terminal` tool path",
        ms(ours),
        "`Sandbox::run(\"true\")` through the Docker backend; median of 30",
    );
    table.row(
        "Exec round trip, `docker exec` CLI",
        ms(cli),
        "the same command with the Docker CLI, process start included; median of 30",
    );
    table.row(
        "Exec: ours ÷ CLI",
        format!("{:.2}×", ours.as_secs_f64() / cli.as_secs_f64()),
        "same run",
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router =
        codeflux::preview::router(Arc::new(RunningOnly(provider.clone())), Default::default())
            .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (url, host) = (
        format!("http://127.0.0.1:{port}/"),
        format!("{project}.localhost"),
    );
    shows(&client, &url, &host, "CodeFlux").await;
    let mut visible = Vec::new();
    for round in 0..5 {
        let nonce = format!("bench{round}{}", Uuid::now_v7().simple());
        let started = Instant::now();
        sandbox
            .write_files(&[FileWrite {
                path: WorkspacePath::parse("app/page.tsx").unwrap(),
                content: format!(
                    "export default function Page() {{ return <main>{nonce}</main>; }}\n"
                )
                .into_bytes(),
            }])
            .await
            .unwrap();
        shows(&client, &url, &host, &nonce).await;
        visible.push(started.elapsed());
    }
    table.row(
        "File write → visible in the preview",
        secs(median(visible)),
        "one archive upload, then the dev server's hot reload, through the preview proxy; median of 5",
    );
    drop(sandbox);
    remove_instance(&instance);
}

/// What the dev server's source tags (selecting in the preview) cost: the first compile of
/// a heavy page (every kit component) and its recompile after an edit, with the template's
/// tagger and with it removed, each in a fresh container of the sandbox image.
async fn tagging(table: &mut Table, image: &str) {
    let instance = format!("bench-{}", Uuid::now_v7().simple());
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kit-page.tsx");
    // Times inside the container, so only the dev server is measured: the first request
    // of `/`, then one after the page changed.
    let measure = r#"for i in $(seq 240); do curl -s -o /dev/null http://127.0.0.1:3000/favicon.ico && break; sleep 0.5; done
ms() { echo $(( $(date +%s%N) / 1000000 )); }
s=$(ms); curl -s -o /tmp/first.html http://127.0.0.1:3000/; e=$(ms); echo $((e - s))
sed -i 's/Kit card title/Kit card title again/' app/page.tsx; sleep 3
s=$(ms); curl -s -o /dev/null http://127.0.0.1:3000/; e=$(ms); echo $((e - s))
grep -c data-cf-loc /tmp/first.html || true"#;
    let mut results = Vec::new();
    for tagged in [true, false] {
        let (mut first, mut edit) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let container = docker(&[
                "run",
                "-d",
                "--label",
                &format!("codeflux.instance={instance}"),
                "--entrypoint",
                "sleep",
                image,
                "infinity",
            ]);
            docker(&[
                "cp",
                &page.display().to_string(),
                &format!("{container}:/home/user/app/page.tsx"),
            ]);
            docker(&[
                "exec",
                "-u",
                "0",
                &container,
                "chown",
                "user",
                "/home/user/app/page.tsx",
            ]);
            if !tagged {
                docker(&[
                    "exec",
                    "-u",
                    "0",
                    &container,
                    "rm",
                    "/usr/local/lib/codeflux-tagger.cjs",
                ]);
            }
            let in_app = |detached: bool, script: &str| {
                let mut args = vec!["exec"];
                if detached {
                    args.push("-d");
                }
                args.extend([
                    "-u",
                    "user",
                    "-w",
                    "/home/user",
                    &container,
                    "bash",
                    "-c",
                    script,
                ]);
                docker(&args)
            };
            in_app(
                true,
                "npx next dev --turbopack -H 0.0.0.0 -p 3000 > /tmp/dev.log 2>&1",
            );
            let out = in_app(false, measure);
            let lines: Vec<u64> = out
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect();
            assert_eq!(lines.len(), 3, "unexpected measurement output: {out}");
            assert_eq!(lines[2] > 0, tagged, "tags present only with the tagger");
            first.push(Duration::from_millis(lines[0]));
            edit.push(Duration::from_millis(lines[1]));
            docker(&["rm", "-f", &container]);
        }
        results.push((median(first), median(edit)));
    }
    let [(tagged_first, tagged_edit), (plain_first, plain_edit)] = results[..] else {
        unreachable!()
    };
    table.row(
        "Dev server, first compile of a heavy page: tagged / untagged",
        format!("{} / {}", secs(tagged_first), secs(plain_first)),
        "every kit component on `/` (tests/fixtures/kit-page.tsx), fresh container, timed inside it; with the template's tagger and with it removed; median of 3",
    );
    table.row(
        "Dev server, recompile after an edit: tagged / untagged",
        format!("{} / {}", secs(tagged_edit), secs(plain_edit)),
        "the same page after one text change; median of 3",
    );
    remove_instance(&instance);
}

/// What an app's embedded database costs: the image's extra packages, a sandbox's memory
/// with the dev server up, without tables and with a table in use, the first schema apply,
/// and the first and later queries; each in a fresh container of the sandbox image.
/// Runs the Docker CLI; its trimmed output. A failure ends the benchmark with its error.
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `script` in the app's folder of a sandbox container, as the workspace's user.
fn in_sandbox(container: &str, script: &str) -> String {
    docker(&[
        "exec",
        "-u",
        "user",
        "-w",
        "/home/user",
        container,
        "bash",
        "-c",
        script,
    ])
}

async fn database(table: &mut Table, image: &str) {
    let instance = format!("bench-{}", Uuid::now_v7().simple());
    let image_bytes: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", image])
        .parse()
        .unwrap();
    // Starts the dev server as the sandbox does (the database preload comes with the
    // image's NODE_OPTIONS) and waits until `/` has compiled.
    let start = r#"(npx next dev --turbopack -H 0.0.0.0 -p 3000 > /tmp/dev.log 2>&1 &)
for i in $(seq 240); do curl -s -o /dev/null http://127.0.0.1:3000/ && break; sleep 0.5; done"#;
    let with_table = r#"cat > db/schema.ts <<'EOF'
import { pgTable, serial, text } from "drizzle-orm/pg-core";
export const notes = pgTable("notes", { id: serial("id").primaryKey(), body: text("body").notNull() });
EOF
mkdir -p app/api/notes && cat > app/api/notes/route.ts <<'EOF'
import { notes } from "@/db/schema";
import { db } from "@/lib/db";
export const dynamic = "force-dynamic";
export async function GET() { return Response.json(await db.select().from(notes)); }
EOF
ms() { echo $(( $(date +%s%N) / 1000000 )); }
s=$(ms); npm run --silent db:push > /tmp/push.log 2>&1 || { cat /tmp/push.log; exit 1; }; e=$(ms); echo $((e - s))
s=$(ms); curl -sf -o /dev/null http://127.0.0.1:3000/api/notes; e=$(ms); echo $((e - s))
s=$(ms); curl -sf -o /dev/null http://127.0.0.1:3000/api/notes; e=$(ms); echo $((e - s))
du -sm .data/pglite | cut -f1"#;
    let packages = "du -scm node_modules/@electric-sql node_modules/drizzle-orm node_modules/drizzle-kit node_modules/esbuild node_modules/@esbuild node_modules/@esbuild-kit 2>/dev/null | tail -1 | cut -f1";
    let memory = |container: &str| -> f64 {
        let usage = docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}",
            container,
        ]);
        let used = usage.split('/').next().unwrap_or_default().trim();
        let split = used
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(used.len());
        let (number, unit) = used.split_at(split);
        let value: f64 = number.trim().parse().unwrap_or(0.0);
        match unit {
            "GiB" => value * 1024.0,
            "KiB" => value / 1024.0,
            _ => value,
        }
    };
    let (mut plain, mut used, mut push, mut first, mut later) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut package_mb = String::new();
    let mut data_mb = String::new();
    for _ in 0..3 {
        let container = docker(&[
            "run",
            "-d",
            "--label",
            &format!("codeflux.instance={instance}"),
            "--entrypoint",
            "sleep",
            image,
            "infinity",
        ]);
        let in_app = |script: &str| in_sandbox(&container, script);
        package_mb = in_app(packages);
        in_app(start);
        tokio::time::sleep(Duration::from_secs(3)).await;
        plain.push(memory(&container));
        let out = in_app(with_table);
        let lines: Vec<u64> = out
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        assert_eq!(lines.len(), 4, "unexpected measurement output: {out}");
        push.push(Duration::from_millis(lines[0]));
        first.push(Duration::from_millis(lines[1]));
        later.push(Duration::from_millis(lines[2]));
        data_mb = lines[3].to_string();
        tokio::time::sleep(Duration::from_secs(3)).await;
        used.push(memory(&container));
        docker(&["rm", "-f", &container]);
    }
    let median_mb = |mut samples: Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    table.row(
        "Database packages in the image",
        format!("{package_mb} MiB of {} MiB", image_bytes / (1024 * 1024)),
        "PGlite, Drizzle ORM, drizzle-kit and its esbuild in `node_modules`, beside the whole sandbox image",
    );
    table.row(
        "Sandbox memory: app without tables / with a table in use",
        format!("{:.0} MiB / {:.0} MiB", median_mb(plain), median_mb(used)),
        "`docker stats` with the dev server up and `/` compiled; then after `npm run db:push` of one table and two queries (only apps with tables open the database); median of 3",
    );
    table.row(
        "`npm run db:push` of one table",
        secs(median(push)),
        "drizzle-kit generate, then the migration applied by the running app; median of 3",
    );
    table.row(
        "First query / later queries",
        format!("{} / {}", secs(median(first)), secs(median(later))),
        "GET of a route handler that selects from the table: the first compiles the route; median of 3",
    );
    table.row(
        "A new database on disk",
        format!("{data_mb} MiB"),
        "`.data/pglite` after the first migration",
    );
    remove_instance(&instance);
}

/// The home page and a project page at 1,000 requests a second, with `projects` projects.
async fn pages_at_scale(table: &mut Table, projects: usize) {
    let data = tempfile::tempdir().unwrap();
    let ids = {
        let store = codeflux::store::Store::open(data.path()).unwrap();
        let mut ids = Vec::with_capacity(projects);
        for n in 0..projects {
            let (project, _, mut job) = store.create_project(&format!("app number {n}")).unwrap();
            job.status = codeflux::store::JobStatus::Done;
            store.put_job(&job).unwrap();
            ids.push(project.id);
        }
        store.flush().await.unwrap();
        ids
    };
    // No sandbox backend is needed to serve pages.
    let env = vec![
        ("CODEFLUX_SANDBOX", "e2b".to_string()),
        ("CODEFLUX_LLM_BASE_URL", "http://127.0.0.1:9/v1".to_string()),
    ];
    let (server, _) = Server::start(data.path(), &env).await;
    let server = Arc::new(server);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(10) {
        tick.tick().await;
        let path = if sent.is_multiple_of(2) {
            "/".to_string()
        } else {
            format!("/projects/{}", ids[(sent * 7919) % ids.len()])
        };
        let (server, sender) = (server.clone(), sender.clone());
        tokio::spawn(async move {
            let begun = Instant::now();
            let ok = server
                .http
                .get(format!("{}{path}", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            let _ = sender.send((path == "/", begun.elapsed(), ok));
        });
        sent += 1;
    }
    drop(sender);
    let (mut home, mut project, mut errors) = (Vec::new(), Vec::new(), 0);
    while let Some((is_home, took, ok)) = receiver.recv().await {
        errors += usize::from(!ok);
        if is_home {
            home.push(took)
        } else {
            project.push(took)
        }
    }
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    table.row(
        &format!("Home page with {projects} projects"),
        format!(
            "p50 {}, p99 {}",
            ms(percentile(&mut home, 0.5)),
            ms(percentile(&mut home, 0.99))
        ),
        &format!(
            "{rate:.0} req/s for 10 s in all (half home, half project pages), {errors} errors"
        ),
    );
    table.row(
        &format!("Project page with {projects} projects"),
        format!(
            "p50 {}, p99 {}",
            ms(percentile(&mut project, 0.5)),
            ms(percentile(&mut project, 0.99))
        ),
        "random projects, same run",
    );
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let engine = std::process::Command::new("docker")
        .args([
            "version",
            "--format",
            "{{.Server.Version}} (API {{.Server.APIVersion}})",
        ])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores, {memory:.0} GB, Docker {engine}")
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    // `cargo bench -- hot preview` runs only those parts (startup, preview, hot, eight,
    // tagging, database, browser, publish, pages); `cargo bench` runs them all. Cargo's own `--bench` flag is ignored.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let wanted = |part: &str| only.is_empty() || only.iter().any(|name| name == part);
    let model = scripted_model().await;
    let mut table = Table(Vec::new());
    // The sandbox image is built (or found) once, outside every measurement.
    let image = {
        let provider = DockerProvider::connect(bench_config())
            .await
            .expect("a Docker engine");
        provider
            .prepare_image(&mut |_| {})
            .await
            .expect("the sandbox image")
    };
    if wanted("startup") {
        println!("startup and idle memory …");
        startup(&mut table, &model).await;
    }
    if wanted("preview") {
        println!("prompt → preview, cold and warm …");
        prompt_to_preview(&mut table, &model).await;
    }
    if wanted("hot") {
        println!("hot paths …");
        hot_paths(&mut table).await;
    }
    if wanted("eight") {
        println!("eight generations at once …");
        eight_at_once(&mut table, &model).await;
    }
    if wanted("tagging") {
        println!("source tags in the dev server …");
        tagging(&mut table, &image).await;
    }
    if wanted("database") {
        println!("the app's embedded database …");
        database(&mut table, &image).await;
    }
    if wanted("browser") {
        println!("the browser check …");
        browser::browser_check(&mut table, &image).await;
    }
    if wanted("publish") {
        println!("publishing …");
        publish::publishing(&mut table, &model).await;
    }
    if wanted("pages") {
        for projects in [3_000, 100_000] {
            println!("pages with {projects} projects …");
            pages_at_scale(&mut table, projects).await;
        }
    }

    let mut markdown = format!(
        "## Latest run ({}, commit {}, {})\n\n| What | Result | How |\n|---|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        commit(),
        machine()
    );
    for [what, result, notes] in &table.0 {
        markdown.push_str(&format!("| {what} | {result} | {notes} |\n"));
    }
    println!("\n{markdown}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/figures.md");
    std::fs::write(&out, &markdown).unwrap();
    println!("written to {}", out.display());
}
