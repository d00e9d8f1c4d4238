//! A Docker engine reached over TCP with mutual TLS (`DOCKER_HOST=tcp://…`,
//! `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`): a second dockerd on this machine, started by the
//! test with certificates it generates and with nothing in it. The sandbox image is carried
//! over with `template export`/`import`, then `codeflux serve` generates an app on that engine,
//! its preview answers, and it is published there. A client certificate from another CA is
//! refused.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::docker_env::test_config;
use support::fake_llm::{FakeLlm, Reply};
use support::process::{ServerProcess, docker_env, free_port};
use uuid::Uuid;

/// A CA that signs a server certificate for 127.0.0.1 and a client certificate.
struct Certificates {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn certificates() -> Certificates {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Certificates {
        ca: ca.pem(),
        server: leaf(vec!["127.0.0.1".into(), "localhost".into()]),
        client: leaf(vec!["codeflux-client".into()]),
    }
}

/// Writes a `DOCKER_CERT_PATH` folder: `ca.pem`, `cert.pem`, `key.pem`.
fn client_folder(root: &Path, name: &str, certs: &Certificates) -> PathBuf {
    let folder = root.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("ca.pem"), &certs.ca).unwrap();
    std::fs::write(folder.join("cert.pem"), &certs.client.0).unwrap();
    std::fs::write(folder.join("key.pem"), &certs.client.1).unwrap();
    folder
}

/// A second dockerd with its own data and state, listening only on TCP with mutual TLS.
/// Stopped (its containers with it) when dropped.
struct TlsEngine {
    child: Child,
    port: u16,
    bridge: String,
    log: PathBuf,
    root: tempfile::TempDir,
}

impl TlsEngine {
    fn start(certs: &Certificates) -> Self {
        // Short paths: containerd's sockets live under the exec root.
        let root = tempfile::Builder::new()
            .prefix("cfx")
            .tempdir_in("/tmp")
            .unwrap();
        let path = |name: &str| root.path().join(name).display().to_string();
        std::fs::write(path("ca.pem"), &certs.ca).unwrap();
        std::fs::write(path("server-cert.pem"), &certs.server.0).unwrap();
        std::fs::write(path("server-key.pem"), &certs.server.1).unwrap();
        let port = free_port();
        let bridge = format!("cfxbr{port}");
        let subnet = format!("10.199.{}.1/24", port % 250);
        for args in [
            vec!["link", "add", &bridge, "type", "bridge"],
            vec!["addr", "add", &subnet, "dev", &bridge],
            vec!["link", "set", &bridge, "up"],
        ] {
            let status = Command::new("ip")
                .args(&args)
                .status()
                .expect("iproute2 runs");
            assert!(status.success(), "ip {args:?}");
        }
        let log = root.path().join("dockerd.log");
        let child = Command::new("dockerd")
            .args(["--tlsverify", "--tlscacert", &path("ca.pem")])
            .args(["--tlscert", &path("server-cert.pem")])
            .args(["--tlskey", &path("server-key.pem")])
            .args(["-H", &format!("tcp://127.0.0.1:{port}")])
            .args(["--data-root", &path("data"), "--exec-root", &path("x")])
            .args(["--pidfile", &path("dockerd.pid")])
            // A default bridge of its own and no iptables rules: the engine must not disturb
            // the machine's main engine. (`--bridge none` would delete the main engine's
            // docker0 interface.) CodeFlux creates its own network besides.
            .args([
                "--bridge",
                &bridge,
                "--iptables=false",
                "--shutdown-timeout",
                "2",
            ])
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("dockerd runs (../shared/ci/docker-up.sh installs it)");
        std::fs::write(path("client-cert.pem"), &certs.client.0).unwrap();
        std::fs::write(path("client-key.pem"), &certs.client.1).unwrap();
        Self {
            child,
            port,
            bridge,
            log,
            root,
        }
    }

    fn env(&self, cert_path: &Path) -> Vec<(String, String)> {
        vec![
            (
                "DOCKER_HOST".into(),
                format!("tcp://127.0.0.1:{}", self.port),
            ),
            ("DOCKER_TLS_VERIFY".into(), "1".into()),
            ("DOCKER_CERT_PATH".into(), cert_path.display().to_string()),
        ]
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        // Containers and networks go through the engine's API first: a network's bridge
        // interface would otherwise outlive the engine on this machine.
        let path = |name: &str| self.root.path().join(name).display().to_string();
        let engine = |args: &[&str]| {
            Command::new("docker")
                .args(["--host", &format!("tcp://127.0.0.1:{}", self.port)])
                .args(["--tlsverify", "--tlscacert", &path("ca.pem")])
                .args(["--tlscert", &path("client-cert.pem")])
                .args(["--tlskey", &path("client-key.pem")])
                .args(args)
                .output()
        };
        if let Ok(listed) = engine(&["ps", "-aq"]) {
            let ids = String::from_utf8_lossy(&listed.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = engine(&[&["rm", "-f"][..], &ids].concat());
            }
        }
        let _ = engine(&["network", "prune", "-f"]);
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
    }
}

fn codeflux(args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the codeflux binary runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn with(mut env: Vec<(String, String)>, extra: Vec<(String, String)>) -> Vec<(String, String)> {
    env.retain(|(key, _)| !extra.iter().any(|(other, _)| other == key));
    env.extend(extra);
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_engine_over_mutual_tls_runs_sandboxes_and_previews() {
    let config = test_config();
    let certs = certificates();
    let folder = tempfile::tempdir().unwrap();
    let client = client_folder(folder.path(), "client", &certs);
    let engine = TlsEngine::start(&certs);

    let fake = FakeLlm::start().await;
    let local = docker_env(&config.instance, &fake.base_url);
    let remote = with(local.clone(), engine.env(&client));
    let doctor_args = |data: &Path| {
        vec![
            "doctor".to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--preview-listen".into(),
            format!("127.0.0.1:{}", free_port()),
        ]
    };
    let data = folder.path().join("data");

    // The engine needs a moment; doctor reports on it once it answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let output = loop {
        fake.push(Reply::terminal("echo ok"));
        let args = doctor_args(&data);
        let (_, output) = codeflux(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &remote,
        );
        if output.contains("ok    docker engine") {
            break output;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the TLS engine did not answer:\n{output}\ndockerd log:\n{}",
            engine.log_text()
        );
        fake.clear();
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        output.contains(&format!("tcp://127.0.0.1:{} answers: Docker", engine.port)),
        "{output}"
    );
    assert!(
        output.contains("warn  sandbox image"),
        "a new engine has no sandbox image yet:\n{output}"
    );
    fake.clear();

    // A client certificate from another CA is refused by the engine.
    let stranger = client_folder(folder.path(), "stranger", &certificates());
    let mut stranger_env = with(local.clone(), engine.env(&stranger));
    // The stranger trusts the real CA, so only its own certificate is wrong.
    std::fs::write(stranger.join("ca.pem"), &certs.ca).unwrap();
    stranger_env.push(("CODEFLUX_SANDBOX".into(), "docker".into()));
    let args = doctor_args(&data);
    let (ok, output) = codeflux(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &stranger_env,
    );
    assert!(!ok, "{output}");
    assert!(output.contains("FAIL  docker engine"), "{output}");

    // The image travels from the machine's engine to the remote one.
    let tarball = folder.path().join("sandbox.tar");
    let tarball = tarball.display().to_string();
    let (ok, output) = codeflux(&["template", "export", &tarball], &local);
    assert!(ok, "{output}");
    let (ok, output) = codeflux(&["template", "import", &tarball], &remote);
    assert!(ok, "{output}\ndockerd log:\n{}", engine.log_text());
    assert!(output.contains("Imported codeflux-sandbox:"), "{output}");
    std::fs::remove_file(&tarball).unwrap();

    let nonce = format!("remote-{}", Uuid::now_v7().simple());
    let server = ServerProcess::start(&data, &remote).await;
    let project = server
        .generate_page(&fake, &nonce, || {
            format!("dockerd log:\n{}", engine.log_text())
        })
        .await;
    server.preview_shows(&project, &nonce).await;

    let (ok, listing) = codeflux(&["sandboxes"], &remote);
    assert!(ok, "{listing}");
    assert!(listing.contains(&project), "{listing}");

    // Publishing uses that engine too: the production build and the app run there, and the
    // app answers at its address through this machine's preview listener.
    let (status, answer) = server
        .post(
            &format!("/api/projects/{project}/publish"),
            serde_json::json!({ "version": 1 }),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    let published = loop {
        let (_, detail) = server.get(&format!("/api/projects/{project}")).await;
        let published = detail["published"].clone();
        if published["status"] != "building" || tokio::time::Instant::now() > deadline {
            break published;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        published["status"],
        "running",
        "{published:#}\ndockerd log:\n{}",
        engine.log_text()
    );
    let name = published["name"].as_str().unwrap();
    support::docker_env::wait_for_text(
        &reqwest::Client::builder().no_proxy().build().unwrap(),
        &format!("http://127.0.0.1:{}/", server.preview_port),
        Some(&format!("{name}.apps.localhost:{}", server.preview_port)),
        &nonce,
    )
    .await;

    // The machine's own engine never saw this project, nor its app.
    for label in [
        format!("label=codeflux.project={project}"),
        format!("label=codeflux.app={project}"),
    ] {
        assert_eq!(
            support::docker_env::docker_cli(&["ps", "-aq", "--filter", &label]),
            ""
        );
    }
}
