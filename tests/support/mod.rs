//! Stand-ins for what the test machine cannot reach, shared by the integration tests.
#![allow(dead_code)]

pub mod checks;
pub mod chromium;
pub mod docker_env;
pub mod engine_relay;
pub mod fake_e2b;
pub mod fake_llm;
pub mod git_server;
pub mod harness;
pub mod host_sandbox;
pub mod postgres;
pub mod process;
pub mod publishing;
pub mod todo_app;

/// Runs one of `tests/sdk_checks/*.py` (an official SDK against a fake) and returns what it
/// printed; fails with the output when the check fails or Python is missing.
pub async fn run_sdk_check(script: &str, envs: &[(&str, &str)]) -> String {
    // The fake runs on the calling test's runtime, so the check is awaited, not blocked on.
    let output = tokio::process::Command::new("python3")
        .arg(format!("tests/sdk_checks/{script}"))
        .envs(envs.iter().copied())
        .output()
        .await
        .expect("python3 must be installed (see .ci/run)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The body of a GET to `url` as text (a page, `/metrics`).
pub async fn text_of(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Serves `app` on a free loopback port for the rest of the test; returns the port.
pub async fn serve_on_loopback(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}
