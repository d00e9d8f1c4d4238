//! Docker sandbox timings: cold create → preview ready, exec round trip (ours vs the
//! `docker exec` CLI), and file write → visible through the preview proxy.
//!
//!   eval "$(../shared/ci/docker-up.sh | grep '^export ')"
//!   cargo bench --bench sandbox
//!
//! Results are recorded by hand in docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codeflux::preview::RunningOnly;
use codeflux::sandbox::docker::{DockerConfig, DockerProvider};
use codeflux::sandbox::{FileWrite, SandboxProvider, WorkspacePath};
use uuid::Uuid;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

async fn wait_for(client: &reqwest::Client, url: &str, host: &str, needle: &str) {
    loop {
        if let Ok(response) = client.get(url).header("host", host).send().await
            && response.status() == 200
            && response.text().await.unwrap_or_default().contains(needle)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn page(text: &str) -> FileWrite {
    FileWrite {
        path: WorkspacePath::parse("app/page.tsx").unwrap(),
        content: format!("export default function Page() {{ return <main>{text}</main>; }}\n")
            .into_bytes(),
    }
}

#[tokio::main]
async fn main() {
    let mut config = DockerConfig::from_env().expect("sandbox configuration");
    if let Ok(base) = std::env::var("CODEFLUX_TEST_BASE_IMAGE") {
        config.base_image = base;
    }
    if let Ok(ca) = std::env::var("CODEFLUX_TEST_CA_CERT") {
        config.ca_cert = Some(ca.into());
    }
    config.instance = format!("bench-{}", Uuid::now_v7().simple());
    let provider = Arc::new(
        DockerProvider::connect(config)
            .await
            .expect("a Docker engine"),
    );
    provider
        .prepare_image(&mut |_| {})
        .await
        .expect("the sandbox image");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router =
        codeflux::preview::router(Arc::new(RunningOnly(provider.clone())), Default::default())
            .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/");

    let mut cold = Vec::new();
    let mut projects = Vec::new();
    for _ in 0..3 {
        let project = Uuid::now_v7();
        let started = Instant::now();
        provider.acquire(project).await.unwrap();
        wait_for(&client, &url, &format!("{project}.localhost"), "CodeFlux").await;
        cold.push(started.elapsed());
        projects.push(project);
    }
    println!(
        "cold create -> preview 200 (median of 3): {}",
        ms(median(cold))
    );

    let project = projects[0];
    let sandbox = provider.acquire(project).await.unwrap().sandbox;
    let mut ours = Vec::new();
    let mut cli = Vec::new();
    for _ in 0..20 {
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
    println!(
        "exec round trip, Sandbox::run (median of 20): {}",
        ms(median(ours))
    );
    println!(
        "exec round trip, docker exec CLI (median of 20): {}",
        ms(median(cli))
    );

    let host = format!("{project}.localhost");
    let mut visible = Vec::new();
    for round in 0..5 {
        let nonce = format!("bench-{round}-{}", Uuid::now_v7().simple());
        let started = Instant::now();
        sandbox.write_files(&[page(&nonce)]).await.unwrap();
        wait_for(&client, &url, &host, &nonce).await;
        visible.push(started.elapsed());
    }
    println!(
        "file write -> visible in preview (median of 5): {}",
        ms(median(visible))
    );

    for project in projects {
        provider.release(project).await.unwrap();
    }
}
