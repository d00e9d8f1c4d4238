//! What a sandbox container is: its labels, its user, its limits and its hardening.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use uuid::Uuid;

use super::{
    DATA_DIR_LABEL, DockerConfig, HOST_LABEL, IMAGE_LABEL, INSTANCE_LABEL, PROJECT_LABEL,
    SANDBOX_LABEL, firewall, host_name,
};

/// The container for `project_id` (`None` for a warm one) from `image` on `network`.
pub(super) fn spec(
    config: &DockerConfig,
    image: &str,
    project_id: Option<Uuid>,
    network: String,
) -> ContainerCreateBody {
    let mut labels = HashMap::from([
        (SANDBOX_LABEL.to_string(), "1".to_string()),
        (IMAGE_LABEL.to_string(), image.to_string()),
        (INSTANCE_LABEL.to_string(), config.instance.clone()),
        (HOST_LABEL.to_string(), host_name()),
    ]);
    if let Some(project_id) = project_id {
        labels.insert(PROJECT_LABEL.to_string(), project_id.to_string());
    }
    if let Some(data_dir) = &config.data_dir {
        labels.insert(DATA_DIR_LABEL.to_string(), data_dir.display().to_string());
    }
    ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(labels),
        hostname: Some("sandbox".to_string()),
        // The start script waits for this file: the network rules come first.
        env: Some(vec![
            format!("CODEFLUX_NETWORK_GATE={}", firewall::GATE_FILE),
            format!("HOME={}", crate::sandbox::WORKSPACE_ROOT),
        ]),
        // Root only until the start script hands over to the workspace's owner: execs
        // as root (the command runner) get the capabilities below only this way.
        user: Some("root".to_string()),
        host_config: Some(HostConfig {
            memory: Some(config.memory_mb * 1024 * 1024),
            nano_cpus: Some((config.cpus * 1e9) as i64),
            pids_limit: Some(config.pids),
            // Everything in the sandbox runs as an unprivileged user. Only CodeFlux's own
            // root execs (the command runner) hold these three, to run commands as that
            // user and stop them; `no-new-privileges` keeps the user from gaining any.
            cap_drop: Some(vec!["ALL".to_string()]),
            cap_add: Some(vec![
                "SETUID".to_string(),
                "SETGID".to_string(),
                "KILL".to_string(),
            ]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            init: Some(true),
            network_mode: Some(network),
            // Root's, emptied on every start: the gate closes with each new namespace.
            tmpfs: Some(HashMap::from([(
                firewall::GATE_DIR.to_string(),
                "rw,nosuid,nodev,noexec,size=64k,mode=0755".to_string(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}
