//! Sandboxes are strangers to each other, to the host and to private networks, on the real
//! engine: each forbidden target is tried from inside a sandbox (a TCP connect with a short
//! timeout), and the same targets are shown to answer from a container without the rules,
//! so a broken firewall fails here. The registry, the previews and the air gap keep working,
//! and concurrent starts leave one network of each name.

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use codeflux::sandbox::docker::{DockerConfig, DockerProvider, NetworkMode};
use codeflux::sandbox::{Sandbox, SandboxProvider};
use support::docker_env::{Cleanup, docker_cli, provider, test_config};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(600);

/// Prints `open`, an error code (`EHOSTUNREACH` for the rules' refusal) or `timeout`.
const PROBE: &str = r#"const [h,p]=process.argv.slice(1);const s=require("net").connect({host:h,port:+p,timeout:3000});s.on("connect",()=>{console.log("open");process.exit(0)});s.on("error",e=>{console.log(e.code);process.exit(0)});s.on("timeout",()=>{console.log("timeout");process.exit(0)})"#;

/// The address of the host on `network`.
fn gateway_of(network: &str) -> String {
    docker_cli(&[
        "network",
        "inspect",
        "--format",
        "{{(index .IPAM.Config 0).Gateway}}",
        network,
    ])
}

/// Networks whose name is exactly `name`.
fn networks_named(name: &str) -> Vec<String> {
    docker_cli(&[
        "network",
        "ls",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Name}} {{.ID}}",
    ])
    .lines()
    .filter_map(|line| line.split_once(' '))
    .filter(|(found, _)| *found == name)
    .map(|(_, id)| id.to_string())
    .collect()
}

/// Removes a test's networks (by prefix) and containers when dropped.
struct Networks {
    prefix: String,
    containers: Option<Cleanup>,
}

impl Drop for Networks {
    fn drop(&mut self) {
        // Containers first: a network with containers on it cannot be removed.
        drop(self.containers.take());
        for mode in ["sandboxes", "isolated"] {
            for id in networks_named(&format!("{}-{mode}", self.prefix)) {
                // The engine may still be letting go of removed containers' endpoints.
                for _ in 0..20 {
                    let removed = std::process::Command::new("docker")
                        .args(["network", "rm", &id])
                        .output()
                        .is_ok_and(|output| output.status.success());
                    if removed {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }
}

async fn isolated_provider(network: NetworkMode) -> (Arc<DockerProvider>, DockerConfig, Networks) {
    let config = DockerConfig {
        network,
        network_prefix: format!("cf-test-{}", &Uuid::now_v7().simple().to_string()[20..]),
        ..test_config()
    };
    let (provider, cleanup) = provider(config.clone()).await;
    let guard = Networks {
        prefix: config.network_prefix.clone(),
        containers: Some(cleanup),
    };
    (provider, config, guard)
}

async fn probe(sandbox: &dyn Sandbox, host: &str, port: u16) -> String {
    let command = format!("node -e '{PROBE}' '{host}' {port}");
    let output = sandbox
        .run(&command, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(output.success(), "{output:?}");
    output.stdout.trim().to_string()
}

/// The same probe from a plain container on the network, without the rules.
fn probe_unsealed(image: &str, network: &str, host: &str, port: u16) -> String {
    docker_cli(&[
        "run",
        "--rm",
        "--network",
        network,
        "--entrypoint",
        "node",
        image,
        "-e",
        PROBE,
        host,
        &port.to_string(),
    ])
}

fn container_of(project: Uuid) -> String {
    docker_cli(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=codeflux.project={project}"),
    ])
}

fn address_of(container: &str) -> String {
    docker_cli(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ])
}

/// A listener on every address of this machine, like any service of the host's.
async fn host_service() -> u16 {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    port
}

async fn wait_for_dev_server(provider: &DockerProvider, project: Uuid) {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Ok(Some(upstream)) = provider.preview_upstream(project).await
            && let Ok(response) = client.get(&upstream.base_url).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dev server of {project} never answered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxes_reach_the_registry_but_not_each_other_the_host_or_private_ranges() {
    let (provider, config, _networks) = isolated_provider(NetworkMode::Bridge).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    // Two projects at once.
    let (first, second) = tokio::join!(provider.acquire(a), provider.acquire(b));
    let (first, _second) = (first.unwrap().sandbox, second.unwrap().sandbox);
    wait_for_dev_server(&provider, a).await;
    wait_for_dev_server(&provider, b).await;

    let network = config.network_name();
    let gateway = gateway_of(&network);
    let other = address_of(&container_of(b));
    let service = host_service().await;
    let host_address = if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
        .map(|interface| interface.ip())
        .find(|ip| matches!(ip, IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_private()))
        .or_else(|| {
            if_addrs::get_if_addrs()
                .unwrap()
                .into_iter()
                .map(|interface| interface.ip())
                .find(|ip| ip.is_ipv4() && !ip.is_loopback() && ip.to_string() != gateway)
        })
        .expect("this machine has an address besides loopback")
        .to_string();

    // Real targets that answer a container without the rules: the other project's dev
    // server, a service of the host through the gateway and at the host's own address.
    let image = docker_cli(&["inspect", "--format", "{{.Config.Image}}", &container_of(a)]);
    let reachable = [
        (other.as_str(), 3000),
        (gateway.as_str(), service),
        (host_address.as_str(), service),
    ];
    for (host, port) in reachable {
        assert_eq!(
            probe_unsealed(&image, &network, host, port),
            "open",
            "{host}:{port} without the rules"
        );
        assert_eq!(
            probe(first.as_ref(), host, port).await,
            "EHOSTUNREACH",
            "{host}:{port} from a sandbox"
        );
    }
    // Private ranges, cloud metadata and CGNAT are refused before a packet leaves.
    for host in [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
    ] {
        assert_eq!(
            probe(first.as_ref(), host, 80).await,
            "EHOSTUNREACH",
            "{host}"
        );
    }
    // No IPv6 leaves (unique-local, or anything else).
    assert_ne!(probe(first.as_ref(), "fd00::1", 80).await, "open");

    // Root inside the sandbox (no capability) cannot lift the rules.
    let container = container_of(a);
    let flush = std::process::Command::new("docker")
        .args(["exec", "-u", "root", &container, "iptables", "-F"])
        .output()
        .unwrap();
    assert!(
        !flush.status.success(),
        "root in the sandbox flushed the rules"
    );
    assert_eq!(
        probe(first.as_ref(), &gateway, service).await,
        "EHOSTUNREACH"
    );

    // What must keep working: the registry (behind the intercepting proxy when there is
    // one) and the preview from CodeFlux's side.
    let npm = first
        .run("npm view left-pad version", Duration::from_secs(120))
        .await
        .unwrap();
    assert!(npm.success() && !npm.stdout.trim().is_empty(), "{npm:?}");
    wait_for_dev_server(&provider, a).await;

    // A restart gets a new namespace: the rules are set again before the dev server runs.
    docker_cli(&["stop", "-t", "1", &container]);
    let again = provider.acquire(a).await.unwrap().sandbox;
    assert_eq!(
        probe(again.as_ref(), &gateway, service).await,
        "EHOSTUNREACH",
        "after a restart"
    );
    wait_for_dev_server(&provider, a).await;
    assert!(
        docker_cli(&["ps", "-aq", "--filter", "label=codeflux.firewall"]).is_empty(),
        "no firewall helper is left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn air_gapped_sandboxes_reach_nothing_and_still_show_their_preview() {
    let (provider, config, _networks) = isolated_provider(NetworkMode::None).await;
    let project = Uuid::now_v7();
    let sandbox = provider.acquire(project).await.unwrap().sandbox;
    wait_for_dev_server(&provider, project).await;
    let network = config.network_name();
    let gateway = gateway_of(&network);
    let service = host_service().await;
    let registry = tokio::net::lookup_host("registry.npmjs.org:443")
        .await
        .unwrap()
        .find(|address| address.is_ipv4())
        .expect("the registry resolves on this machine")
        .ip()
        .to_string();
    for (host, port) in [
        (registry.as_str(), 443),
        (gateway.as_str(), service),
        ("10.0.0.1", 80),
    ] {
        assert_eq!(
            probe(sandbox.as_ref(), host, port).await,
            "EHOSTUNREACH",
            "{host}:{port}"
        );
    }
    let npm = sandbox
        .run(
            "npm view left-pad version --fetch-retries=0 --fetch-timeout=5000",
            Duration::from_secs(60),
        )
        .await;
    assert!(
        !matches!(&npm, Ok(output) if output.success()),
        "npm reached the registry in the air gap: {npm:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_starts_leave_one_network_of_each_name_and_duplicates_are_healed() {
    for mode in [NetworkMode::Bridge, NetworkMode::None] {
        let (first, config, _networks) = isolated_provider(mode).await;
        let name = config.network_name();
        // One server, ten sandboxes started at once on an engine without the network
        // (what made three networks and then broke every start).
        let starts = (0..10).map(|_| {
            let provider = first.clone();
            tokio::spawn(async move { provider.acquire(Uuid::now_v7()).await.map(|_| ()) })
        });
        for started in futures::future::join_all(starts).await {
            started.unwrap().unwrap();
        }
        assert_eq!(
            networks_named(&name).len(),
            1,
            "{name} after ten concurrent starts"
        );
        let id = first.ensure_network().await.unwrap();
        let attached = docker_cli(&["network", "inspect", "--format", "{{len .Containers}}", &id]);
        assert_eq!(attached, "10", "all ten sandboxes are on it");
        let ids = [id];

        // Two servers on one engine starting at once, on a name nobody made yet: they may
        // each create one, but they end on the same single network.
        let (one, raced, _raced_networks) = isolated_provider(mode).await;
        let other = Arc::new(DockerProvider::connect(raced.clone()).await.unwrap());
        let calls = (0..10).map(|n| {
            let provider = if n % 2 == 0 {
                one.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move { provider.ensure_network().await })
        });
        for joined in futures::future::join_all(calls).await {
            joined.unwrap().unwrap();
        }
        let survivor = networks_named(&raced.network_name());
        assert_eq!(survivor.len(), 1, "after two servers raced: {survivor:?}");
        for provider in [&one, &other] {
            let id = provider.ensure_network().await.unwrap();
            assert_eq!(id[..12], survivor[0], "both servers use the one left");
        }

        // An engine that already holds duplicates (what older versions left) is healed,
        // and sandboxes start on it.
        // Created the way the engine's API allows (no duplicate check before API 1.44).
        for _ in 0..2 {
            first
                .docker()
                .create_network(bollard::models::NetworkCreateRequest {
                    name: name.clone(),
                    internal: Some(mode == NetworkMode::None),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        assert_eq!(networks_named(&name).len(), 3);
        let fresh = DockerProvider::connect(config.clone()).await.unwrap();
        let kept = fresh.ensure_network().await.unwrap();
        assert_eq!(networks_named(&name), vec![kept[..12].to_string()]);
        assert_eq!(kept, ids[0], "the oldest network is kept");
    }
}

/// A command in the sandbox cannot answer for the command runner: the runner runs as root
/// and its output is not the sandbox user's to open, so a forged "exit 0" never arrives.
#[tokio::test(flavor = "multi_thread")]
async fn no_command_can_write_to_the_runners_output() {
    let (provider, _config, _networks) = isolated_provider(NetworkMode::None).await;
    let sandbox = provider.acquire(Uuid::now_v7()).await.unwrap().sandbox;
    let forge = r#"for p in /proc/[0-9]*; do
  if [ "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" = "node /usr/local/lib/codeflux-runner.cjs " ]; then
    echo "runner uid $(stat -c %u "$p")"
    if printf '{"id":1,"code":0}\n' > "$p/fd/1" 2>/dev/null; then echo wrote; else echo refused; fi
  fi
done
echo "command uid $(id -u)""#;
    let output = sandbox.run(forge, Duration::from_secs(30)).await.unwrap();
    assert!(output.success(), "{output:?}");
    assert!(
        output.stdout.contains("runner uid 0"),
        "the runner was found: {output:?}"
    );
    assert!(output.stdout.contains("refused"), "{output:?}");
    assert!(!output.stdout.contains("wrote"), "{output:?}");
    assert!(
        !output.stdout.contains("command uid 0"),
        "commands do not run as root: {output:?}"
    );
    // Commands still run, are stopped on time, and can still be killed with their children.
    let slept = sandbox
        .run("sleep 30 & sleep 30; echo never", Duration::from_secs(2))
        .await;
    assert!(
        matches!(slept, Err(codeflux::sandbox::SandboxError::Timeout(_))),
        "{slept:?}"
    );
    // The kill is sent as the timeout ends; give the signal a moment to land.
    let mut left = String::new();
    for _ in 0..50 {
        left = sandbox
            .run(
                "grep -lx sleep /proc/[0-9]*/comm 2>/dev/null | wc -l",
                Duration::from_secs(10),
            )
            .await
            .unwrap()
            .stdout
            .trim()
            .to_string();
        if left == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(left, "0", "the timed-out group was killed");
}
