//! The three ways CodeFlux is deployed, each on the real engine: the single-container image
//! (built here from a prebuilt binary, run with a `/data` volume, then replaced), the
//! air-gapped setting (the sandbox image carried over with `template export`/`import`,
//! sandboxes without a network, no pull), and `codeflux doctor`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::docker_env::{containers_of, docker_cli, test_config, wait_for_text};
use support::fake_llm::{FakeLlm, Reply};
use uuid::Uuid;

/// The deployment image built the way the README says for hosts without a Rust image:
/// `docker build --target prebuilt` around this test's binary, on the local Debian-based
/// Node image (no registry is reachable here).
fn build_single_container_image(runtime_image: &str) -> String {
    const TAG: &str = "codeflux-test/single:latest";
    let context = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("Dockerfile"), context.path().join("Dockerfile")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_codeflux"),
        context.path().join("codeflux"),
    )
    .unwrap();
    docker_cli(&[
        "build",
        "--quiet",
        "--target",
        "prebuilt",
        "--build-arg",
        &format!("RUNTIME_IMAGE={runtime_image}"),
        "--build-arg",
        "BINARY=codeflux",
        "-t",
        TAG,
        &context.path().display().to_string(),
    ]);
    TAG.to_string()
}

/// One run of the deployment image with the Docker socket and a named `/data` volume.
struct Deployment {
    container: String,
    api: String,
    previews: String,
    client: reqwest::Client,
}

impl Deployment {
    const TOKEN: &str = "container-test-token-0123456789";

    async fn run(
        image: &str,
        volume: &str,
        config: &codeflux::sandbox::docker::DockerConfig,
        model_port: &str,
    ) -> Self {
        let socket_group = std::fs::metadata("/var/run/docker.sock")
            .map(|meta| std::os::unix::fs::MetadataExt::gid(&meta))
            .expect("the engine socket is at /var/run/docker.sock");
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--label".into(),
            format!("codeflux.instance={}", config.instance),
            "-v".into(),
            "/var/run/docker.sock:/var/run/docker.sock".into(),
            "--group-add".into(),
            socket_group.to_string(),
            "-v".into(),
            format!("{volume}:/data"),
            // The model server runs on this machine; the container reaches it through the gateway.
            "--add-host".into(),
            "host.docker.internal:host-gateway".into(),
            "-p".into(),
            "127.0.0.1::3000".into(),
            "-p".into(),
            "127.0.0.1::3001".into(),
            "-e".into(),
            format!("CODEFLUX_LLM_BASE_URL=http://host.docker.internal:{model_port}/v1"),
            "-e".into(),
            "CODEFLUX_SANDBOX=docker".into(),
            "-e".into(),
            format!("CODEFLUX_SANDBOX_BASE_IMAGE={}", config.base_image),
            "-e".into(),
            format!("CODEFLUX_SANDBOX_INSTANCE={}", config.instance),
            "-e".into(),
            "CODEFLUX_SANDBOX_POOL=0".into(),
            // The image listens beyond loopback, so it requires a token.
            "-e".into(),
            format!("CODEFLUX_AUTH_TOKEN={}", Self::TOKEN),
        ];
        if let Some(ca) = &config.ca_cert {
            args.extend([
                "-v".into(),
                format!("{}:/run/extra-ca.pem:ro", ca.display()),
                "-e".into(),
                "CODEFLUX_SANDBOX_CA_CERT=/run/extra-ca.pem".into(),
            ]);
        }
        args.push(image.to_string());
        let container = docker_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let published = |port: &str| {
            docker_cli(&["port", &container, port])
                .lines()
                .next()
                .unwrap()
                .to_string()
        };
        let bearer: reqwest::header::HeaderMap = [(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", Self::TOKEN).parse().unwrap(),
        )]
        .into_iter()
        .collect();
        let deployment = Self {
            api: format!("http://{}", published("3000")),
            previews: published("3001"),
            container,
            client: reqwest::Client::builder()
                .no_proxy()
                .default_headers(bearer)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        for _ in 0..300 {
            if deployment
                .client
                .get(format!("{}/healthz", deployment.api))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return deployment;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the container did not start:\n{}", deployment.logs());
    }

    fn logs(&self) -> String {
        let output = std::process::Command::new("docker")
            .args(["logs", &self.container])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        self.client
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Opens the preview the way a browser does: through the signed link, which leaves a
    /// cookie for the preview's host; then waits until the page shows `text`.
    async fn wait_for_preview(&self, project: &str, text: &str) {
        let detail = self.get(&format!("/api/projects/{project}")).await;
        let link = detail["preview_link"].as_str().unwrap();
        let preview_host = format!("{project}.localhost:3001");
        let grant = &link[link.find("/__codeflux").unwrap()..];
        let granted = self
            .client
            .get(format!("http://{}{grant}", self.previews))
            .header("host", &preview_host)
            .send()
            .await
            .unwrap();
        assert_eq!(granted.status(), 303, "{}", self.logs());
        let cookie = granted.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let viewer = reqwest::Client::builder()
            .no_proxy()
            .default_headers(
                [(reqwest::header::COOKIE, cookie.parse().unwrap())]
                    .into_iter()
                    .collect(),
            )
            .build()
            .unwrap();
        wait_for_text(
            &viewer,
            &format!("http://{}/", self.previews),
            Some(&preview_host),
            text,
        )
        .await;
    }

    /// `docker stop` (SIGTERM through tini, a clean shutdown) and `docker rm`.
    fn remove(self) {
        docker_cli(&["stop", "--time", "30", &self.container]);
        docker_cli(&["rm", &self.container]);
    }
}

/// Removes the test's data volume however the test ends.
struct VolumeCleanup(String);

impl Drop for VolumeCleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_single_container_image_serves_previews_and_keeps_projects_when_replaced() {
    let config = test_config();
    // Declared first so it is dropped last, after the containers that use it.
    let volume = VolumeCleanup(format!("codeflux-test-data-{}", config.instance));
    let cleanup = support::docker_env::Cleanup {
        instance: config.instance.clone(),
    };
    let image = build_single_container_image(&config.base_image);
    let fake = FakeLlm::start_on("0.0.0.0:0").await;
    let model_port = fake
        .base_url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/v1")
        .to_string();
    let nonce = format!("boxed-{}", Uuid::now_v7().simple());
    fake.push_all([
        Reply::write(
            "app/page.tsx",
            &format!("export default function Page() {{ return <main>{nonce}</main>; }}\n"),
        ),
        Reply::summary("done"),
    ]);

    let first = Deployment::run(&image, &volume.0, &config, &model_port).await;
    let created: serde_json::Value = first
        .client
        .post(format!("{}/api/projects", first.api))
        .json(&json!({ "prompt": "a page" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project = created["id"].as_str().unwrap().to_string();
    let mut answer = serde_json::Value::Null;
    for _ in 0..1500 {
        let detail = first.get(&format!("/api/projects/{project}")).await;
        if detail["status"] == "idle" {
            answer = detail["messages"][1].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(answer["type"], "result", "{answer}\n{}", first.logs());

    // The sandbox publishes nothing; the preview still answers through CodeFlux's proxy.
    let sandbox = docker_cli(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=codeflux.project={project}"),
    ]);
    assert!(!sandbox.is_empty());
    assert_eq!(
        docker_cli(&["port", &sandbox]),
        "",
        "the sandbox must not publish ports"
    );
    first.wait_for_preview(&project, &nonce).await;

    // An upgrade: the container is replaced, the volume stays.
    first.remove();
    let second = Deployment::run(&image, &volume.0, &config, &model_port).await;
    let projects = second.get("/api/projects").await;
    assert!(
        projects["projects"]
            .as_array()
            .is_some_and(|list| list.iter().any(|p| p["id"] == project.as_str())),
        "the project survives the replacement: {projects}\n{}",
        second.logs()
    );
    let detail = second.get(&format!("/api/projects/{project}")).await;
    assert_eq!(detail["messages"][1]["type"], "result", "{detail}");
    second.wait_for_preview(&project, &nonce).await;

    drop(cleanup);
    assert_eq!(containers_of(&config.instance), 0);
}

/// Runs the codeflux binary with `args` and `env` (on top of this process's environment)
/// and returns its exit status, stdout and stderr.
fn codeflux(args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the codeflux binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(name, _)| name != key);
    env.push((key.to_string(), value.to_string()));
}

/// Removes an image tag however the test ends.
struct TagCleanup(String);

impl Drop for TagCleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", &self.0])
            .output();
    }
}

/// The runbook of docs/air-gapped.md: the image is exported on a "connected" machine (the
/// usual test settings) and imported on an "offline" one whose settings name a base image
/// that is not there, so that any build or pull would fail. The offline server then runs
/// with sandboxes on the internal network and only loopback endpoints, and a generation
/// reaches the preview. The engine's event log shows no pull.
#[tokio::test(flavor = "multi_thread")]
async fn an_imported_image_serves_an_offline_generation_without_a_pull() {
    let started = chrono::Utc::now().timestamp();
    let config = test_config();
    let _cleanup = support::docker_env::Cleanup {
        instance: config.instance.clone(),
    };
    let fake = FakeLlm::start().await;
    let connected = support::process::docker_env(&config.instance, &fake.base_url);

    let folder = tempfile::tempdir().unwrap();
    let tarball = folder.path().join("sandbox.tar");
    let tarball_arg = tarball.display().to_string();
    let (ok, stdout, stderr) = codeflux(&["template", "export", &tarball_arg], &connected);
    assert!(ok, "export failed: {stderr}");
    assert!(stdout.contains("Wrote codeflux-sandbox:"), "{stdout}");

    // The offline machine's base image is a name this engine does not have.
    let mut offline = connected.clone();
    set(
        &mut offline,
        "CODEFLUX_SANDBOX_BASE_IMAGE",
        &format!("codeflux-test/offline-base:{}", Uuid::now_v7().simple()),
    );
    set(&mut offline, "CODEFLUX_SANDBOX_NETWORK", "none");
    let (ok, stdout, stderr) = codeflux(&["template", "import", &tarball_arg], &offline);
    assert!(ok, "import failed: {stderr}");
    assert!(
        stdout.contains("tagged it codeflux-sandbox:"),
        "the image is named for the offline settings: {stdout}"
    );
    let tag = stdout
        .split("tagged it ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    let _tag_cleanup = TagCleanup(tag.clone());

    // A tarball that is not an image is refused with the reason, and nothing changes.
    let junk = folder.path().join("junk.tar");
    std::fs::write(&junk, b"not a tarball").unwrap();
    let (ok, _, stderr) = codeflux(
        &["template", "import", &junk.display().to_string()],
        &offline,
    );
    assert!(!ok);
    assert!(
        stderr.contains("could not load"),
        "a clear reason: {stderr}"
    );

    let nonce = format!("offline-{}", Uuid::now_v7().simple());
    let data = tempfile::tempdir().unwrap();
    let server = support::process::ServerProcess::start(&data.path().join("data"), &offline).await;
    let project = server.generate_page(&fake, &nonce, String::new).await;
    let sandbox = docker_cli(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=codeflux.project={project}"),
    ]);
    assert_eq!(
        docker_cli(&["inspect", "--format", "{{.Config.Image}}", &sandbox]),
        tag,
        "the sandbox runs the imported image"
    );
    assert_eq!(
        docker_cli(&[
            "inspect",
            "--format",
            "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}",
            &sandbox
        ]),
        "codeflux-isolated",
        "the sandbox is on the internal network"
    );
    server.preview_shows(&project, &nonce).await;

    let pulls = docker_cli(&[
        "events",
        "--since",
        &started.to_string(),
        "--until",
        &chrono::Utc::now().timestamp().to_string(),
        "--filter",
        "type=image",
        "--filter",
        "event=pull",
        "--format",
        "{{.Actor.ID}}",
    ]);
    assert_eq!(pulls, "", "nothing was pulled");
}

/// `codeflux doctor` with the test engine and `env` on top; returns (exit ok, stdout).
fn doctor(
    env: &[(String, String)],
    data_dir: &std::path::Path,
    ports: (u16, u16),
) -> (bool, String) {
    let (ok, stdout, stderr) = codeflux(
        &[
            "doctor",
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{}", ports.0),
            "--preview-listen",
            &format!("127.0.0.1:{}", ports.1),
        ],
        env,
    );
    (ok, format!("{stdout}{stderr}"))
}

/// The line of `check` in doctor's output, and the fix line after it (if any).
fn doctor_line<'a>(output: &'a str, check: &str) -> (&'a str, &'a str) {
    let mut lines = output.lines();
    while let Some(line) = lines.next() {
        if line.get(6..).is_some_and(|rest| rest.starts_with(check)) {
            let next = lines.next().unwrap_or_default();
            return (line, if next.contains('→') { next } else { "" });
        }
    }
    panic!("no {check:?} line in:\n{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_a_working_setup_after_one_tool_call_request() {
    let config = test_config();
    let fake = FakeLlm::start().await;
    fake.push(Reply::terminal("echo ok"));
    let env = support::process::docker_env(&config.instance, &fake.base_url);
    let data = tempfile::tempdir().unwrap();
    let ports = (support::process::free_port(), support::process::free_port());
    let (ok, output) = doctor(&env, &data.path().join("data"), ports);
    assert!(ok, "{output}");
    for check in [
        "data directory",
        "ports",
        "docker engine",
        "sandbox image",
        "base image",
        "model",
    ] {
        let (line, fix) = doctor_line(&output, check);
        assert!(line.starts_with("ok "), "{line}\n{output}");
        assert_eq!(fix, "");
    }
    assert!(doctor_line(&output, "docker engine").0.contains("API 1."));
    assert!(
        doctor_line(&output, "model")
            .0
            .contains("answered with a tool call")
    );
    assert!(doctor_line(&output, "model images").0.starts_with("ok "));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "one tiny request, and one with an image");
    assert!(support::fake_llm::has_image_parts(&requests[1]));
    let tools: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"terminal"),
        "the agent's own tools: {tools:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_each_blocking_problem_with_its_fix_and_exits_non_zero() {
    let config = test_config();
    let data = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = (
        busy.local_addr().unwrap().port(),
        support::process::free_port(),
    );
    // No model server, an offline setting whose image is neither here nor buildable.
    let mut env = support::process::docker_env(&config.instance, "http://127.0.0.1:9/v1");
    set(
        &mut env,
        "CODEFLUX_SANDBOX_BASE_IMAGE",
        &format!("codeflux-test/absent:{}", Uuid::now_v7().simple()),
    );
    set(&mut env, "CODEFLUX_SANDBOX_NETWORK", "none");
    let (ok, output) = doctor(&env, &data.path().join("data"), ports);
    assert!(!ok, "blocking problems give a non-zero exit:\n{output}");

    let (line, fix) = doctor_line(&output, "ports");
    assert!(
        line.starts_with("FAIL") && line.contains("already in use"),
        "{line}"
    );
    assert!(fix.contains("CODEFLUX_LISTEN"), "{fix}");
    let (line, fix) = doctor_line(&output, "sandbox image");
    assert!(
        line.starts_with("FAIL") && line.contains("missing"),
        "{line}"
    );
    assert!(fix.contains("codeflux template import"), "{fix}");
    let (line, fix) = doctor_line(&output, "model");
    assert!(
        line.starts_with("FAIL") && line.contains("cannot reach"),
        "{line}"
    );
    assert!(fix.contains("start the model server"), "{fix}");
    assert!(doctor_line(&output, "docker engine").0.starts_with("ok "));

    // A model that answers without calling a tool is a warning, not a failure.
    let fake = FakeLlm::start().await;
    fake.push(Reply::Text("I would rather chat.".into()));
    let env = support::process::docker_env(&config.instance, &fake.base_url);
    let (ok, output) = doctor(
        &env,
        &data.path().join("data"),
        (support::process::free_port(), support::process::free_port()),
    );
    assert!(ok, "{output}");
    let (line, fix) = doctor_line(&output, "model");
    assert!(
        line.starts_with("warn") && line.contains("called no tool"),
        "{line}"
    );
    assert!(fix.contains("tool calling"));

    // A model without vision: prompts with images would be refused; a warning.
    fake.push(Reply::terminal("echo ok"));
    fake.refuse_images();
    let (ok, output) = doctor(
        &env,
        &data.path().join("data"),
        (support::process::free_port(), support::process::free_port()),
    );
    assert!(ok, "{output}");
    let (line, fix) = doctor_line(&output, "model images");
    assert!(
        line.starts_with("warn") && line.contains("does not accept images"),
        "{line}"
    );
    assert!(fix.contains("vision model"), "{fix}");

    // A server that refuses the request (e.g. no tool support) fails with that hint.
    fake.push(Reply::Fail {
        status: 400,
        retry_after: None,
    });
    let (ok, output) = doctor(
        &env,
        &data.path().join("data"),
        (support::process::free_port(), support::process::free_port()),
    );
    assert!(!ok);
    let (line, fix) = doctor_line(&output, "model");
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(fix.contains("accepts `tools`"), "{fix}");
    drop(busy);
}

/// On a first run the image is built in the background; the UI reads its state. A build
/// that cannot work ends in `Failed` with the engine's reason, not in silence.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_image_build_is_reported_as_the_sandbox_state() {
    use codeflux::sandbox::readiness::Readiness;
    let mut config = test_config();
    config.base_image = format!("codeflux-test/absent:{}", Uuid::now_v7().simple());
    let (provider, _cleanup) = support::docker_env::provider(config).await;
    let readiness = provider.readiness();
    let mut lines = Vec::new();
    let result = provider
        .prepare_image(&mut |line| lines.push(line.to_string()))
        .await;
    assert!(result.is_err());
    match readiness.get() {
        Readiness::Failed { error } => {
            assert!(error.contains("codeflux-test/absent"), "{error}");
            assert!(error.contains("codeflux template import"), "{error}");
        }
        other => panic!("expected Failed, got {other:?}; build output: {lines:?}"),
    }
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("Building sandbox image")),
        "the build was under way before it failed: {lines:?}"
    );
}

/// `serve --demo` with no model at all (the configured endpoint does not answer): the
/// bundled recording builds its multi-file app in a real sandbox, the app passes the
/// type check and page fetch, the preview shows it, and the UI labels it a replay.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_replays_a_recorded_build_into_a_real_sandbox() {
    let config = test_config();
    let _cleanup = support::docker_env::Cleanup {
        instance: config.instance.clone(),
    };
    let mut env = support::process::docker_env(&config.instance, "http://127.0.0.1:9/v1");
    set(&mut env, "CODEFLUX_DEMO", "true");
    let data = tempfile::tempdir().unwrap();
    let server = support::process::ServerProcess::start(&data.path().join("data"), &env).await;

    let home = support::text_of(&format!("{}/", server.base)).await;
    assert!(
        home.contains("a recorded replay, not a live model"),
        "{home}"
    );
    assert!(
        !home.contains("No model configured"),
        "the demo needs no key"
    );

    let (status, created) = server
        .post(
            "/api/projects",
            json!({ "prompt": "Build me a habit tracker" }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let project = created["id"].as_str().unwrap().to_string();
    let detail = server.settled(&project).await;
    let answer = &detail["messages"][1];
    assert_eq!(answer["type"], "result", "{detail}\n{}", server.log_text());
    let files = answer["fragment"]["files"].as_object().unwrap();
    for path in [
        "lib/habits.ts",
        "components/habit-form.tsx",
        "components/habit-list.tsx",
        "app/page.tsx",
    ] {
        assert!(files.contains_key(path), "{path} in {:?}", files.keys());
    }
    assert_eq!(
        answer["fragment"]["verification"]["status"], "passed",
        "the recorded app type-checks and renders: {answer}"
    );
    server.preview_shows(&project, "Habit Tracker").await;

    // A follow-up is beyond the recording: a plain answer, and the app is unchanged.
    let (status, _) = server
        .post(
            &format!("/api/projects/{project}/messages"),
            json!({ "prompt": "make it blue" }),
        )
        .await;
    assert_eq!(status, 201);
    let detail = server.settled(&project).await;
    let reply = &detail["messages"][3];
    assert!(
        reply["content"]
            .as_str()
            .is_some_and(|text| text.contains("replays one recorded build")),
        "{reply}"
    );

    // Both jobs, the sandbox and the preview visits show in /metrics.
    let metrics = support::text_of(&format!("{}/metrics", server.base)).await;
    for line in [
        r#"codeflux_jobs_finished_total{outcome="done"} 2"#,
        "codeflux_sandboxes_running 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(r#"codeflux_preview_requests_total{status="2xx"} "#)),
        "{metrics}"
    );
}
