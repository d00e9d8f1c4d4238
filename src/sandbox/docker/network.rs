//! The Docker network the sandboxes join: created once, referred to by id. The engine
//! allows several networks of one name (before API 1.44 it checks only when asked), and
//! then refuses to attach a container to the name ("ambiguous"). So creation is serialised
//! in this process, and whatever holds duplicates (two servers starting at once, an older
//! CodeFlux) is healed: every process keeps the oldest network of the name and moves the
//! others' containers to it.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    Network, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::ListNetworksOptionsBuilder;

use super::{DockerProvider, NetworkMode, SANDBOX_LABEL, docker_error};
use crate::sandbox::SandboxError;

impl DockerProvider {
    /// The id of the sandboxes' network, created if needed; also joins it when CodeFlux
    /// itself runs in a container on the same engine, so previews are reached without
    /// published ports.
    pub async fn ensure_network(&self) -> Result<String, SandboxError> {
        // Held across the engine calls: two tasks of this process never both create it.
        let mut known = self.network_id.lock().await;
        if let Some(id) = known.as_ref()
            && self
                .docker
                .inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>)
                .await
                .is_ok()
        {
            return Ok(id.clone());
        }
        let name = self.config.network_name();
        let id = match one_network(&self.docker, &name).await? {
            Some(id) => id,
            None => {
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".to_string()),
                    internal: Some(self.config.network == NetworkMode::None),
                    labels: Some(HashMap::from([(
                        SANDBOX_LABEL.to_string(),
                        "network".to_string(),
                    )])),
                    ..Default::default()
                };
                if let Err(error) = self.docker.create_network(request).await {
                    // A newer engine refuses a duplicate: another server made it meanwhile.
                    tracing::debug!(error = %docker_error(error), "network creation refused");
                }
                // Read back, so that a race with another server ends on the same network.
                one_network(&self.docker, &name).await?.ok_or_else(|| {
                    SandboxError::Backend(format!("cannot create the Docker network {name}"))
                })?
            }
        };
        if let Some(own_id) = super::own_container_id()
            && self.docker.inspect_container(&own_id, None).await.is_ok()
        {
            let request = NetworkConnectRequest {
                container: own_id,
                ..Default::default()
            };
            // Already connected is fine.
            let _ = self.docker.connect_network(&id, request).await;
        }
        *known = Some(id.clone());
        Ok(id)
    }
}

/// The one network called `name`, after removing any duplicates; `None` if there is none.
async fn one_network(docker: &Docker, name: &str) -> Result<Option<String>, SandboxError> {
    let filters = HashMap::from([("name", vec![name])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let listed = docker
        .list_networks(Some(options))
        .await
        .map_err(|error| SandboxError::Backend(docker_error(error)))?;
    // The engine's name filter matches parts of names too.
    let mut same: Vec<Network> = listed
        .into_iter()
        .filter(|network| network.name.as_deref() == Some(name))
        .collect();
    // Oldest first (ids break ties), so every process keeps the same one.
    let created = |network: &Network| {
        network
            .created
            .as_deref()
            .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
    };
    same.sort_by(|a, b| (created(a), a.id.as_deref()).cmp(&(created(b), b.id.as_deref())));
    let mut networks = same.into_iter();
    let Some(kept) = networks.next().and_then(|network| network.id) else {
        return Ok(None);
    };
    for duplicate in networks.filter_map(|network| network.id) {
        tracing::warn!(network = name, %duplicate, "removing a duplicate of the sandboxes' network");
        move_containers(docker, &duplicate, &kept).await?;
        match docker.remove_network(&duplicate).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(error) => return Err(SandboxError::Backend(docker_error(error))),
        }
    }
    Ok(Some(kept))
}

/// Moves every container of network `from` to network `to`.
async fn move_containers(docker: &Docker, from: &str, to: &str) -> Result<(), SandboxError> {
    let inspected = docker
        .inspect_network(
            from,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .map_err(|error| SandboxError::Backend(docker_error(error)))?;
    for container in inspected.containers.unwrap_or_default().into_keys() {
        let _ = docker
            .disconnect_network(
                from,
                NetworkDisconnectRequest {
                    container: container.clone(),
                    force: Some(true),
                },
            )
            .await;
        let _ = docker
            .connect_network(
                to,
                NetworkConnectRequest {
                    container,
                    ..Default::default()
                },
            )
            .await;
    }
    Ok(())
}
