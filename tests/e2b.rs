//! The E2B backend, proven in layers: the fake E2B service is checked by the official SDK,
//! then the Rust backend runs the sandbox conformance suite and its error paths against it.

mod support;

use support::fake_e2b::{API_KEY, FakeE2b};

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_speaks_the_protocol_the_official_e2b_sdk_expects() {
    let fake = FakeE2b::start().await;
    let output = tokio::process::Command::new("python3")
        .arg("tests/sdk_checks/e2b_check.py")
        .env("E2B_API_KEY", API_KEY)
        .env("E2B_API_URL", &fake.url)
        .env("E2B_SANDBOX_URL", &fake.url)
        .env("E2B_DOMAIN", "e2b.test")
        .output()
        .await
        .expect("python3 must be installed (see .ci/run)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "e2b SDK check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("e2b SDK check passed"), "{stdout}");
    assert!(fake.sandbox_ids().is_empty(), "the SDK killed its sandbox");
}
