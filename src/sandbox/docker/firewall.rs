//! What a sandbox may reach. Everything in a sandbox is untrusted (the app, its npm
//! scripts, the agent's shell), and a bridge network alone lets it reach other sandboxes,
//! the host's ports through the gateway, the LAN and cloud metadata. So every sandbox's own
//! network namespace gets egress rules before any of its code runs:
//!
//! - `bridge`: the public internet only (the npm registry); private, link-local, CGNAT,
//!   multicast and reserved ranges, and the host's own addresses, are refused.
//! - `none`: nothing at all.
//!
//! In both, loopback and answers to connections made *to* the sandbox (CodeFlux reaching
//! the dev server) pass, and IPv6 leaves not at all. The rules are set by a short-lived
//! helper container from the sandbox image that shares the sandbox's network namespace and
//! alone holds `NET_ADMIN`; the sandbox keeps no capability, so nothing in it (root
//! included) can change them. The dev server waits for a gate file that CodeFlux creates
//! only after the rules are in place; the gate lives on a tmpfs, so it closes again
//! whenever the container restarts and gets a fresh namespace.

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures::StreamExt;

use super::{NetworkMode, docker_error};
use crate::sandbox::SandboxError;

/// The tmpfs (root-owned, so the sandbox's user cannot write it) that holds the gate.
pub const GATE_DIR: &str = "/run/codeflux";
/// The file the template's start script waits for (`CODEFLUX_NETWORK_GATE`).
pub const GATE_FILE: &str = "/run/codeflux/network-sealed";
/// Label of the helper containers, so a leaked one can be found.
pub const HELPER_LABEL: &str = "codeflux.firewall";

/// IPv4 ranges no sandbox may reach in `bridge` mode (RFC 6890's non-global ones).
const BLOCKED_V4: [&str; 10] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",
];

/// Where a sandbox may send what: the host's addresses to refuse, and the DNS servers the
/// engine forwards to (Docker's embedded DNS sends a sandbox's lookups from inside the
/// sandbox's namespace, so they must pass; only port 53, only in `bridge` mode).
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    pub host_addresses: Vec<IpAddr>,
    /// Empty when they could not be found: then port 53 is open to any address.
    pub dns_servers: Vec<IpAddr>,
}

impl Destinations {
    /// What this machine says; nothing of the host when CodeFlux runs in a container of
    /// this engine (see [`host_addresses`]).
    pub async fn discover(docker: &Docker) -> Self {
        Self {
            host_addresses: host_addresses(docker).await,
            dns_servers: dns_servers(),
        }
    }
}

/// The nameservers of this machine's resolver configuration that are not loopback (the
/// engine replaces loopback ones, such as systemd-resolved's stub, by these or its own).
fn dns_servers() -> Vec<IpAddr> {
    let mut servers = Vec::new();
    for file in ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("nameserver")
                && let Some(Ok(address)) = words.next().map(str::parse::<IpAddr>)
                && !address.is_loopback()
                && !servers.contains(&address)
            {
                servers.push(address);
            }
        }
    }
    servers
}

/// The `iptables-restore` input for IPv4.
pub fn ipv4_rules(mode: NetworkMode, destinations: &Destinations) -> String {
    let host_addresses = &destinations.host_addresses;
    let mut rules = String::from(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A OUTPUT -o lo -j ACCEPT\n\
         -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
    );
    let reject = "-j REJECT --reject-with icmp-admin-prohibited";
    match mode {
        NetworkMode::None => rules.push_str(&format!("-A OUTPUT {reject}\n")),
        NetworkMode::Bridge => {
            let dns: Vec<String> = match destinations.dns_servers.as_slice() {
                [] => vec![String::new()],
                servers => servers
                    .iter()
                    .filter(|server| server.is_ipv4())
                    .map(|server| format!("-d {server}/32 "))
                    .collect(),
            };
            for server in dns {
                for protocol in ["udp", "tcp"] {
                    rules.push_str(&format!(
                        "-A OUTPUT {server}-p {protocol} --dport 53 -j ACCEPT\n"
                    ));
                }
            }
            let hosts = host_addresses
                .iter()
                .filter(|address| address.is_ipv4())
                .map(|address| format!("{address}/32"));
            for destination in BLOCKED_V4
                .iter()
                .map(|range| range.to_string())
                .chain(hosts)
            {
                rules.push_str(&format!("-A OUTPUT -d {destination} {reject}\n"));
            }
        }
    }
    rules.push_str("COMMIT\n");
    rules
}

/// IPv6: nothing leaves but loopback and answers.
pub fn ipv6_rules() -> String {
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
     -A OUTPUT -o lo -j ACCEPT\n\
     -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
     -A OUTPUT -j REJECT --reject-with icmp6-adm-prohibited\nCOMMIT\n"
        .to_string()
}

/// Applies the rules to the running container's namespace, then opens the gate.
pub async fn seal(
    docker: &Docker,
    image: &str,
    container_id: &str,
    mode: NetworkMode,
    destinations: &Destinations,
) -> Result<(), SandboxError> {
    let failed = |detail: String| {
        SandboxError::Backend(format!(
            "could not set the sandbox's network rules: {detail}"
        ))
    };
    let script = "printf '%s' \"$RULES_V4\" | iptables-restore || exit 1; \
                  if [ -d /proc/sys/net/ipv6 ]; then printf '%s' \"$RULES_V6\" | ip6tables-restore || exit 2; fi";
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        user: Some("root".to_string()),
        entrypoint: Some(vec!["sh".to_string(), "-c".to_string()]),
        cmd: Some(vec![script.to_string()]),
        env: Some(vec![
            format!("RULES_V4={}", ipv4_rules(mode, destinations)),
            format!("RULES_V6={}", ipv6_rules()),
        ]),
        labels: Some(HashMap::from([(HELPER_LABEL.to_string(), "1".to_string())])),
        network_disabled: None,
        host_config: Some(HostConfig {
            network_mode: Some(format!("container:{container_id}")),
            cap_drop: Some(vec!["ALL".to_string()]),
            cap_add: Some(vec!["NET_ADMIN".to_string(), "NET_RAW".to_string()]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = format!("{}-firewall", super::sandbox::short(container_id));
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    // A helper left by a crash has this name: it goes first.
    remove(docker, &name).await;
    let helper = docker
        .create_container(Some(options), body)
        .await
        .map_err(|error| failed(docker_error(error)))?
        .id;
    let outcome = run_to_end(docker, &helper).await;
    let logs = if outcome.as_ref().is_ok_and(|code| *code == 0) {
        String::new()
    } else {
        helper_logs(docker, &helper).await
    };
    remove(docker, &helper).await;
    match outcome {
        Ok(0) => {}
        Ok(code) => {
            return Err(failed(format!(
                "the helper exited with {code}: {}. The sandbox image needs iptables (rebuild it with `codeflux template build`)",
                logs.trim()
            )));
        }
        Err(error) => return Err(failed(error)),
    }
    open_gate(docker, container_id)
        .await
        .map_err(|error| failed(format!("cannot open the gate: {error}")))
}

async fn run_to_end(docker: &Docker, helper: &str) -> Result<i64, String> {
    docker
        .start_container(helper, None)
        .await
        .map_err(docker_error)?;
    let mut waits = docker.wait_container(helper, Some(WaitContainerOptionsBuilder::new().build()));
    match waits.next().await {
        Some(Ok(answer)) => Ok(answer.status_code),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(error)) => Err(docker_error(error)),
        None => Err("the helper's end was not reported".to_string()),
    }
}

async fn helper_logs(docker: &Docker, helper: &str) -> String {
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
    let mut logs = docker.logs(helper, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text
}

async fn remove(docker: &Docker, container: &str) {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    let _ = docker.remove_container(container, Some(options)).await;
}

/// Creates the gate file as root (no capability is needed: the tmpfs is root's).
async fn open_gate(docker: &Docker, container_id: &str) -> Result<(), String> {
    use bollard::exec::StartExecResults;
    let exec = docker
        .create_exec(
            container_id,
            bollard::models::ExecConfig {
                user: Some("root".to_string()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["touch".to_string(), GATE_FILE.to_string()]),
                ..Default::default()
            },
        )
        .await
        .map_err(docker_error)?;
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(docker_error)?
    {
        while output.next().await.is_some() {}
    }
    let inspected = docker.inspect_exec(&exec.id).await.map_err(docker_error)?;
    match inspected.exit_code {
        Some(0) => Ok(()),
        other => Err(format!("touch {GATE_FILE} exited with {other:?}")),
    }
}

/// This machine's own addresses, which a sandbox must not reach through the gateway when
/// CodeFlux runs on the engine's host (its public address included). Inside a container
/// of that engine (the single-container setting) they are the container's, which the
/// private ranges already cover.
async fn host_addresses(docker: &Docker) -> Vec<IpAddr> {
    if let Some(own) = super::own_container_id()
        && docker.inspect_container(&own, None).await.is_ok()
    {
        return Vec::new();
    }
    if_addrs::get_if_addrs()
        .map(|interfaces| {
            interfaces
                .into_iter()
                .map(|interface| interface.ip())
                .filter(|address| !address.is_loopback())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_refuses_private_ranges_and_the_host_none_refuses_everything() {
        let host: IpAddr = "192.0.2.2".parse().unwrap();
        let destinations = Destinations {
            host_addresses: vec![host, "fd00::1".parse().unwrap()],
            dns_servers: vec!["10.255.255.53".parse().unwrap()],
        };
        let bridge = ipv4_rules(NetworkMode::Bridge, &destinations);
        for range in BLOCKED_V4 {
            assert!(bridge.contains(&format!("-d {range} -j REJECT")), "{range}");
        }
        assert!(bridge.contains("-d 192.0.2.2/32 -j REJECT"));
        assert!(!bridge.contains("fd00"), "IPv6 goes to ip6tables");
        assert!(
            !bridge.contains("-A OUTPUT -j REJECT"),
            "the internet stays open"
        );
        // Lookups reach the engine's resolver (a private address here) before the refusals.
        let dns = bridge
            .find("-A OUTPUT -d 10.255.255.53/32 -p udp --dport 53 -j ACCEPT")
            .unwrap();
        assert!(dns < bridge.find("-d 10.0.0.0/8").unwrap());
        let unknown = ipv4_rules(NetworkMode::Bridge, &Destinations::default());
        assert!(unknown.contains("-A OUTPUT -p tcp --dport 53 -j ACCEPT"));
        let none = ipv4_rules(NetworkMode::None, &destinations);
        assert!(none.contains("-A OUTPUT -j REJECT"));
        assert!(
            !none.contains("--dport 53"),
            "the air gap has no lookups out"
        );
        for rules in [&bridge, &none, &ipv6_rules()] {
            // Answers to CodeFlux's connections (the preview) must pass before any refusal.
            let answers = rules.find("ESTABLISHED").unwrap();
            assert!(answers < rules.find("REJECT").unwrap());
            assert!(rules.ends_with("COMMIT\n"));
        }
    }
}
