//! `codeflux sandboxes`: what this installation left on the Docker engine, and pruning it.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};

use crate::sandbox::docker::{DockerConfig, DockerProvider, Owner, SandboxInfo, owner_of};

#[derive(Debug, Args)]
pub struct SandboxesArgs {
    /// The data directory of the installation whose sandboxes to show.
    #[arg(long, env = "CODEFLUX_DATA_DIR", default_value = "./codeflux-data")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub action: Option<SandboxesAction>,
}

#[derive(Debug, Subcommand)]
pub enum SandboxesAction {
    /// Remove stopped sandboxes (their files go; projects keep their versions).
    Prune {
        /// Instead: remove every CodeFlux sandbox on the engine whose server is not running.
        #[arg(long)]
        all_instances: bool,
    },
}

pub async fn run(args: SandboxesArgs) -> anyhow::Result<()> {
    let (instance, data_dir) = super::installation(&args.data_dir);
    let mut config = DockerConfig::from_env()?;
    config.instance = instance;
    config.data_dir = Some(data_dir);
    let docker = DockerProvider::connect(config)
        .await
        .context("the Docker engine does not answer")?;
    match args.action {
        None => list(&docker.inventory(false).await?),
        Some(SandboxesAction::Prune {
            all_instances: false,
        }) => {
            let mut removed = 0;
            for sandbox in docker.inventory(false).await? {
                if !sandbox.running {
                    docker.remove_sandbox(&sandbox.container_id).await?;
                    removed += 1;
                }
            }
            println!("removed {removed} stopped sandbox(es)");
        }
        Some(SandboxesAction::Prune {
            all_instances: true,
        }) => {
            let mut removed = 0;
            for sandbox in docker.inventory(true).await? {
                match owner_of(&sandbox) {
                    Owner::Gone => {
                        docker.remove_sandbox(&sandbox.container_id).await?;
                        removed += 1;
                    }
                    Owner::Running => {}
                    Owner::Unknown(reason) => println!(
                        "kept {} (instance {}): cannot tell whether its server runs: {reason}",
                        short(&sandbox.container_id),
                        sandbox.instance
                    ),
                }
            }
            println!("removed {removed} sandbox(es) whose server is not running");
        }
    }
    Ok(())
}

fn list(sandboxes: &[SandboxInfo]) {
    if sandboxes.is_empty() {
        println!("no sandboxes");
        return;
    }
    println!(
        "{:<36}  {:<8}  {:>8}  {:>9}  CONTAINER",
        "PROJECT", "STATE", "AGE", "MEMORY"
    );
    let now = Utc::now();
    for sandbox in sandboxes {
        let project = match sandbox.project_id {
            Some(id) => id.to_string(),
            None if sandbox.warm => "(warm, unclaimed)".to_string(),
            None => "?".to_string(),
        };
        let age = sandbox.created.map_or_else(
            || "?".to_string(),
            |created| crate::ui::age(created, now).replace(" ago", ""),
        );
        let memory = sandbox.memory_bytes.map_or_else(
            || "-".to_string(),
            |bytes| format!("{} MB", bytes / (1024 * 1024)),
        );
        println!(
            "{project:<36}  {:<8}  {age:>8}  {memory:>9}  {}",
            if sandbox.running {
                "running"
            } else {
                "stopped"
            },
            short(&sandbox.container_id)
        );
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
