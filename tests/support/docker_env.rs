//! The real Docker engine for tests: a provider scoped to one test (its own instance label),
//! and a guard that removes that test's containers however the test ends.

use std::sync::Arc;
use std::time::Duration;

use codeflux::sandbox::docker::{DockerConfig, DockerProvider, NetworkMode};

/// The base image and CA that `../shared/ci/docker-up.sh` provides on machines without a
/// registry. Missing variables are a set-up error, not a reason to skip.
pub fn test_config() -> DockerConfig {
    let base_image = std::env::var("CODEFLUX_TEST_BASE_IMAGE")
        .expect("CODEFLUX_TEST_BASE_IMAGE is not set: run `eval \"$(../shared/ci/docker-up.sh | grep '^export ')\"` first");
    let ca_cert = std::env::var("CODEFLUX_TEST_CA_CERT")
        .ok()
        .filter(|path| !path.is_empty());
    DockerConfig {
        base_image,
        ca_cert: ca_cert.map(Into::into),
        memory_mb: 2048,
        cpus: 2.0,
        pids: 1024,
        network: NetworkMode::Bridge,
        idle: Duration::from_secs(1800),
        instance: format!("test-{}", uuid::Uuid::now_v7().simple()),
        data_dir: None,
        socket: None,
        pool: 0,
        max_running: None,
        network_prefix: "codeflux".to_string(),
    }
}

/// Removes every container of this test's instance when dropped, even after a panic.
pub struct Cleanup {
    pub instance: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = remove_instance(&self.instance);
    }
}

fn remove_instance(instance: &str) -> std::io::Result<()> {
    let ids = instance_containers(instance)?;
    if !ids.is_empty() {
        std::process::Command::new("docker")
            .arg("rm")
            .arg("-f")
            .args(&ids)
            .output()?;
    }
    Ok(())
}

/// Ids of every container (running or not) labelled with `instance`.
fn instance_containers(instance: &str) -> std::io::Result<Vec<String>> {
    let listed = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=codeflux.instance={instance}"),
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Ids of the running containers labelled with `instance`.
pub fn running_containers_of(instance: &str) -> usize {
    let listed = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=codeflux.instance={instance}"),
        ])
        .output()
        .expect("the docker CLI runs");
    String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .count()
}

/// How many containers this test's instance has on the engine.
pub fn containers_of(instance: &str) -> usize {
    instance_containers(instance)
        .expect("the docker CLI runs")
        .len()
}

/// A connected provider for `config`, plus the guard that cleans up after it.
pub async fn provider(config: DockerConfig) -> (Arc<DockerProvider>, Cleanup) {
    let cleanup = Cleanup {
        instance: config.instance.clone(),
    };
    let provider = DockerProvider::connect(config)
        .await
        .expect("a Docker engine must be running for these tests (../shared/ci/docker-up.sh)");
    (Arc::new(provider), cleanup)
}

/// Fetches `url` until it answers 200 and its body contains `needle` (bounded wait).
pub async fn wait_for_text(
    client: &reqwest::Client,
    url: &str,
    host: Option<&str>,
    needle: &str,
) -> String {
    let mut last = String::new();
    for _ in 0..600 {
        let mut request = client.get(url);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Ok(response) = request.send().await {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if status == 200 && body.contains(needle) {
                return body;
            }
            last = format!("{status}: {}", body.chars().take(300).collect::<String>());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{url} never showed {needle:?}; last answer: {last}");
}

/// `docker run -d` of an image's own command with its port 3000 on a free loopback port,
/// labelled with the test's instance (so the test's cleanup removes it). Returns the
/// container and the port.
pub fn run_image(image: &str, instance: &str) -> (String, String) {
    let container = docker_cli(&[
        "run",
        "-d",
        "-p",
        "127.0.0.1::3000",
        "--label",
        &format!("codeflux.instance={instance}"),
        image,
    ]);
    let mapped = docker_cli(&["port", &container, "3000/tcp"]);
    let port = mapped
        .lines()
        .next()
        .and_then(|line| line.rsplit(':').next())
        .unwrap_or_default()
        .to_string();
    (container, port)
}

/// Runs `docker` and returns its trimmed stdout, failing the test on an error.
pub fn docker_cli(args: &[&str]) -> String {
    let output = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
