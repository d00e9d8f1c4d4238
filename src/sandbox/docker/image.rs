//! Builds the sandbox image from the embedded template through the classic build endpoint
//! (a tar context), which every engine supports, BuildKit or not.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;

use super::config::DockerConfig;
use super::docker_error;
use crate::sandbox::SandboxError;
use crate::sandbox::template;

/// Returns the image tag for the current template, building it first when it is missing.
/// Each line of build output goes to `progress`.
pub async fn ensure_image(
    docker: &Docker,
    config: &DockerConfig,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<String, SandboxError> {
    let context = pack(config)?;
    if docker.inspect_image(&context.tag).await.is_ok() {
        return Ok(context.tag);
    }
    progress(&format!(
        "Building sandbox image {} from {}",
        context.tag, config.base_image
    ));
    build(docker, config, context, progress).await
}

/// Builds the image even if it exists (`codeflux template build`).
pub async fn build_image(
    docker: &Docker,
    config: &DockerConfig,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<String, SandboxError> {
    let context = pack(config)?;
    build(docker, config, context, progress).await
}

fn pack(config: &DockerConfig) -> Result<template::BuildContext, SandboxError> {
    let ca = config.ca_pem()?;
    template::build_context(&config.base_image, ca.as_deref()).map_err(|error| {
        SandboxError::Backend(format!("cannot pack the sandbox template: {error}"))
    })
}

async fn build(
    docker: &Docker,
    config: &DockerConfig,
    context: template::BuildContext,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<String, SandboxError> {
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&context.tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&HashMap::from([(
            "BASE_IMAGE".to_string(),
            config.base_image.clone(),
        )]))
        .labels(&HashMap::from([(
            "codeflux.template".to_string(),
            "nextjs".to_string(),
        )]))
        .build();
    let mut stream =
        docker.build_image(options, None, Some(bollard::body_full(context.tar.into())));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|error| build_failed(&config.base_image, &docker_error(error)))?;
        if let Some(detail) = info.error_detail.and_then(|detail| detail.message) {
            return Err(build_failed(&config.base_image, &detail));
        }
        if let Some(line) = info.stream {
            let line = line.trim_end();
            if !line.is_empty() {
                progress(line);
            }
        }
    }
    docker
        .inspect_image(&context.tag)
        .await
        .map_err(|error| build_failed(&config.base_image, &docker_error(error)))?;
    progress(&format!("Sandbox image {} is ready", context.tag));
    Ok(context.tag)
}

fn build_failed(base_image: &str, reason: &str) -> SandboxError {
    SandboxError::Backend(format!(
        "building the sandbox image from {base_image} failed: {reason}. If the base image cannot be pulled here, set CODEFLUX_SANDBOX_BASE_IMAGE to a local Node ≥ 20 image; behind a TLS-intercepting proxy set CODEFLUX_SANDBOX_CA_CERT"
    ))
}
