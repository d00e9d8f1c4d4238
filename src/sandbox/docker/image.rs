//! Builds the sandbox image from the embedded template through the classic build endpoint
//! (a tar context), which every engine supports, BuildKit or not.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ImportImageOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

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

/// Labels on every sandbox image: that it is one, and what it was built from.
const TEMPLATE_LABEL: &str = "codeflux.template";
const BASE_IMAGE_LABEL: &str = "codeflux.template.base-image";

/// Whether this machine has the sandbox image its settings call for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageState {
    Ready {
        tag: String,
    },
    /// Not built yet; `older` lists sandbox images of other templates or settings.
    Missing {
        tag: String,
        older: Vec<String>,
    },
}

/// Looks up the image for `config` without building anything.
pub async fn image_state(
    docker: &Docker,
    config: &DockerConfig,
) -> Result<ImageState, SandboxError> {
    let tag = pack(config)?.tag;
    if docker.inspect_image(&tag).await.is_ok() {
        return Ok(ImageState::Ready { tag });
    }
    let options = ListImagesOptionsBuilder::new()
        .filters(&HashMap::from([("label", vec![TEMPLATE_LABEL])]))
        .build();
    let older = docker
        .list_images(Some(options))
        .await
        .map_err(|error| SandboxError::Backend(docker_error(error)))?
        .into_iter()
        .flat_map(|image| image.repo_tags)
        .filter(|name| name != "<none>:<none>")
        .collect();
    Ok(ImageState::Missing { tag, older })
}

/// What `codeflux template prune` did.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Tags removed, with the size of their image.
    pub removed: Vec<(String, i64)>,
    /// Tags kept because a container (a sandbox, a published app) still uses them.
    pub in_use: Vec<String>,
}

/// Removes the sandbox images of earlier templates: every image labelled as one, built
/// from the same base image (`all_bases`: from any), except the one these settings use.
/// An image a container still uses is kept and reported.
pub async fn prune_images(
    docker: &Docker,
    config: &DockerConfig,
    all_bases: bool,
) -> Result<Pruned, SandboxError> {
    let current = pack(config)?.tag;
    let options = ListImagesOptionsBuilder::new()
        .filters(&HashMap::from([("label", vec![TEMPLATE_LABEL])]))
        .build();
    let images = docker
        .list_images(Some(options))
        .await
        .map_err(|error| SandboxError::Backend(docker_error(error)))?;
    let mut pruned = Pruned::default();
    for image in images {
        let same_base = image.labels.get(BASE_IMAGE_LABEL) == Some(&config.base_image);
        if (!all_bases && !same_base) || image.repo_tags.contains(&current) {
            continue;
        }
        for tag in image.repo_tags.iter().filter(|tag| *tag != "<none>:<none>") {
            let options = RemoveImageOptionsBuilder::new().build();
            match docker.remove_image(tag, Some(options), None).await {
                Ok(_) => pruned.removed.push((tag.clone(), image.size)),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => pruned.in_use.push(tag.clone()),
                Err(error) => return Err(SandboxError::Backend(docker_error(error))),
            }
        }
    }
    Ok(pruned)
}

/// Why moving the sandbox image between machines failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the engine could not load {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("{0}")]
    WrongImage(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// What `codeflux template export` wrote.
pub struct Exported {
    pub tag: String,
    pub bytes: u64,
}

/// Writes the sandbox image (building it first if needed) to `file` as a `docker save`
/// tarball, for `codeflux template import` on a machine that cannot build it.
pub async fn export_image(
    docker: &Docker,
    config: &DockerConfig,
    file: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Exported, TransferError> {
    let tag = ensure_image(docker, config, progress).await?;
    progress(&format!("Writing {tag} to {}", file.display()));
    let io_error = |source| TransferError::Write {
        path: file.display().to_string(),
        source,
    };
    // Written beside the target and renamed at the end, so a failed export leaves no
    // tarball that looks complete.
    let partial = file.with_file_name(format!(
        ".{}.partial",
        file.file_name()
            .map_or("image".into(), |name| name.to_string_lossy())
    ));
    let mut out = tokio::fs::File::create(&partial).await.map_err(io_error)?;
    // The base image goes along (its layers are the template's first ones, so it costs
    // almost nothing): published apps' production images start from it, and an engine
    // without a registry could not get it otherwise.
    let mut images = vec![tag.as_str()];
    if docker.inspect_image(&config.base_image).await.is_ok() {
        images.push(config.base_image.as_str());
    }
    let mut stream = docker.export_images(&images);
    let mut bytes = 0u64;
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| SandboxError::Backend(docker_error(error)))?;
            bytes += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(io_error)?;
        }
        out.sync_all().await.map_err(io_error)?;
        tokio::fs::rename(&partial, file).await.map_err(io_error)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result?;
    Ok(Exported { tag, bytes })
}

/// What `codeflux template import` loaded.
pub struct Imported {
    /// The image's name as exported.
    pub loaded: String,
    /// The name this machine's settings look for (equal to `loaded` when both machines are
    /// configured alike).
    pub tag: String,
}

/// Loads a tarball made by [`export_image`] (gzip-compressed or not) into the engine and
/// makes it the sandbox image for `config`, after checking it was built from this binary's
/// template. Nothing is pulled or built.
pub async fn import_image(
    docker: &Docker,
    config: &DockerConfig,
    file: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Imported, TransferError> {
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(|source| TransferError::Read {
            path: file.display().to_string(),
            source,
        })?;
    let load_failed = |reason: String| TransferError::Load {
        path: file.display().to_string(),
        reason,
    };
    let context = pack(config)?;
    progress(&format!("Loading {} into the engine", file.display()));
    let body = tokio_util::io::ReaderStream::new(opened);
    let options = ImportImageOptionsBuilder::new().quiet(true).build();
    let mut stream = docker.import_image_stream(options, body, None);
    let mut loaded = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|error| load_failed(docker_error(error)))?;
        if let Some(detail) = info.error_detail.and_then(|detail| detail.message) {
            return Err(load_failed(detail));
        }
        for line in info.stream.iter().flat_map(|text| text.lines()) {
            if let Some(name) = line.strip_prefix("Loaded image: ") {
                loaded.push(name.trim().to_string());
            }
        }
    }
    let mut found = Vec::new();
    for name in &loaded {
        let labels = docker
            .inspect_image(name)
            .await
            .ok()
            .and_then(|image| image.config)
            .and_then(|config| config.labels)
            .unwrap_or_default();
        match labels.get(template::DIGEST_LABEL) {
            Some(digest) if *digest == context.template_digest => {
                if *name != context.tag {
                    let (repo, tag) = context
                        .tag
                        .split_once(':')
                        .unwrap_or((&context.tag, "latest"));
                    let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
                    docker
                        .tag_image(name, Some(options))
                        .await
                        .map_err(|error| SandboxError::Backend(docker_error(error)))?;
                }
                return Ok(Imported {
                    loaded: name.clone(),
                    tag: context.tag,
                });
            }
            other => found.push(format!(
                "{name} (template {})",
                other.map_or("unknown", String::as_str)
            )),
        }
    }
    Err(TransferError::WrongImage(if found.is_empty() {
        format!(
            "{} holds no image; make it with `codeflux template export FILE`",
            file.display()
        )
    } else {
        format!(
            "{} holds {}, but this CodeFlux needs template {}: export the image with the same CodeFlux version",
            file.display(),
            found.join(", "),
            context.template_digest
        )
    }))
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
        .labels(&HashMap::from([
            (TEMPLATE_LABEL.to_string(), "nextjs".to_string()),
            (
                template::DIGEST_LABEL.to_string(),
                context.template_digest.clone(),
            ),
            (BASE_IMAGE_LABEL.to_string(), config.base_image.clone()),
        ]))
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
        "building the sandbox image from {base_image} failed: {reason}. If the base image cannot be pulled here, set CODEFLUX_SANDBOX_BASE_IMAGE to a local Node ≥ 20 image; behind a TLS-intercepting proxy set CODEFLUX_SANDBOX_CA_CERT; on a machine without internet, bring the image with `codeflux template export` and `codeflux template import` (docs/air-gapped.md)"
    ))
}
