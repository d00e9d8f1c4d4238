//! `codeflux template prune` on the real engine: the sandbox images of earlier templates go,
//! the one the settings use stays, and so does one a container still uses. The test's
//! images carry a base-image label of their own, so no other test's image is touched.

mod support;

use support::docker_env::docker_cli;

/// Builds a tiny image labelled as a sandbox image built from `base_label`.
fn sandbox_image(tag: &str, base_label: &str) {
    let base = std::env::var("CODEFLUX_TEST_BASE_IMAGE")
        .expect("CODEFLUX_TEST_BASE_IMAGE is not set: run ../shared/ci/docker-up.sh (see .ci/run)");
    let dockerfile = format!(
        "FROM {base}\nLABEL codeflux.template=nextjs codeflux.template.base-image={base_label} codeflux.prune-test={tag}\n"
    );
    let mut child = std::process::Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "docker build {tag}");
}

fn image_exists(tag: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .unwrap()
        .status
        .success()
}

/// Removes what the test made however it ends.
struct Leftovers {
    tags: Vec<String>,
    container: Option<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Some(container) = &self.container {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", container])
                .output();
        }
        for tag in &self.tags {
            let _ = std::process::Command::new("docker")
                .args(["rmi", tag])
                .output();
        }
    }
}

#[test]
fn prune_removes_earlier_templates_and_keeps_the_current_and_the_used() {
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let base_label = format!("prune-test-{unique}");
    // The tag these settings (this base image, no CA) call for.
    let current = codeflux::sandbox::template::build_context(&base_label, None)
        .unwrap()
        .tag;
    let earlier = format!("codeflux-sandbox:pt{}", &unique[20..30]);
    let used = format!("codeflux-sandbox:pu{}", &unique[20..30]);
    let mut leftovers = Leftovers {
        tags: vec![current.clone(), earlier.clone(), used.clone()],
        container: None,
    };
    for tag in [&current, &earlier, &used] {
        sandbox_image(tag, &base_label);
    }
    leftovers.container = Some(docker_cli(&[
        "run",
        "-d",
        "--entrypoint",
        "sleep",
        &used,
        "infinity",
    ]));

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .args(["template", "prune"])
        .env("CODEFLUX_SANDBOX", "docker")
        .env("CODEFLUX_SANDBOX_BASE_IMAGE", &base_label)
        .env_remove("CODEFLUX_SANDBOX_CA_CERT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("Removed {earlier}")), "{stdout}");
    assert!(
        stdout.contains(&format!("Kept {used}: a container still uses it")),
        "{stdout}"
    );
    // Only that one: this engine's other sandbox images come from other base images.
    assert!(stdout.contains("\n1 removed"), "{stdout}");
    assert!(
        !image_exists(&earlier),
        "the earlier template's image is gone"
    );
    assert!(image_exists(&used) && image_exists(&current));
}
