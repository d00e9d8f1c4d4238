//! Settings of the Docker backend, read from the environment.

use std::path::PathBuf;
use std::time::Duration;

use crate::sandbox::SandboxError;

pub const DEFAULT_BASE_IMAGE: &str = "node:20-bookworm";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Sandboxes reach the internet (npm install works).
    Bridge,
    /// Air gap: an internal network with no route out; CodeFlux still reaches the previews.
    None,
}

#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// `FROM` of the template: any image with Node ≥ 20, npm, bash and coreutils.
    pub base_image: String,
    /// A PEM bundle to trust inside the image (TLS-intercepting proxies).
    pub ca_cert: Option<PathBuf>,
    pub memory_mb: i64,
    pub cpus: f64,
    pub pids: i64,
    pub network: NetworkMode,
    /// Sandboxes with no activity for this long are stopped.
    pub idle: Duration,
    /// Which CodeFlux installation owns the sandboxes, so that two of them sharing one
    /// engine never reap each other's containers (`serve` derives it from the data dir).
    pub instance: String,
    /// The owning server's data directory, recorded on its sandboxes so that
    /// `codeflux sandboxes prune --all-instances` can tell whether that server still runs.
    pub data_dir: Option<PathBuf>,
    /// The engine's Unix socket, when not the one `DOCKER_HOST` (or the default) names.
    pub socket: Option<PathBuf>,
    /// Warm sandboxes kept ready for new projects (`serve` only).
    pub pool: usize,
    /// Most project sandboxes running at once; `None`: as many as fit in the engine's memory.
    pub max_running: Option<usize>,
    /// First part of the network names (`codeflux-sandboxes`, `codeflux-isolated`); tests
    /// use their own.
    pub network_prefix: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            base_image: DEFAULT_BASE_IMAGE.to_string(),
            ca_cert: None,
            memory_mb: 2048,
            cpus: 2.0,
            pids: 1024,
            network: NetworkMode::Bridge,
            idle: Duration::from_secs(1800),
            instance: "default".to_string(),
            data_dir: None,
            socket: None,
            pool: 1,
            max_running: None,
            network_prefix: "codeflux".to_string(),
        }
    }
}

impl DockerConfig {
    /// Reads `CODEFLUX_SANDBOX_BASE_IMAGE`, `CODEFLUX_SANDBOX_CA_CERT`,
    /// `CODEFLUX_SANDBOX_MEMORY_MB`, `CODEFLUX_SANDBOX_CPUS`, `CODEFLUX_SANDBOX_PIDS`,
    /// `CODEFLUX_SANDBOX_NETWORK` (`bridge` or `none`), `CODEFLUX_SANDBOX_IDLE_SECS` and
    /// `CODEFLUX_SANDBOX_POOL` and `CODEFLUX_SANDBOX_MAX_RUNNING`.
    pub fn from_env() -> Result<Self, SandboxError> {
        let defaults = Self::default();
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let number = |name: &str| -> Result<Option<f64>, SandboxError> {
            var(name)
                .map(|value| {
                    value
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|number| *number > 0.0)
                        .ok_or_else(|| {
                            SandboxError::NotConfigured(format!(
                                "{name} must be a positive number, not {value:?}"
                            ))
                        })
                })
                .transpose()
        };
        let network = match var("CODEFLUX_SANDBOX_NETWORK").as_deref().map(str::trim) {
            None | Some("bridge") => NetworkMode::Bridge,
            Some("none") => NetworkMode::None,
            Some(other) => {
                return Err(SandboxError::NotConfigured(format!(
                    "CODEFLUX_SANDBOX_NETWORK must be `bridge` or `none`, not {other:?}"
                )));
            }
        };
        let ca_cert = var("CODEFLUX_SANDBOX_CA_CERT").map(PathBuf::from);
        if let Some(path) = &ca_cert
            && !path.is_file()
        {
            return Err(SandboxError::NotConfigured(format!(
                "CODEFLUX_SANDBOX_CA_CERT points to {}, which is not a readable file",
                path.display()
            )));
        }
        Ok(Self {
            base_image: var("CODEFLUX_SANDBOX_BASE_IMAGE").unwrap_or(defaults.base_image),
            ca_cert,
            memory_mb: number("CODEFLUX_SANDBOX_MEMORY_MB")?
                .map_or(defaults.memory_mb, |n| n as i64),
            cpus: number("CODEFLUX_SANDBOX_CPUS")?.unwrap_or(defaults.cpus),
            pids: number("CODEFLUX_SANDBOX_PIDS")?.map_or(defaults.pids, |n| n as i64),
            network,
            idle: number("CODEFLUX_SANDBOX_IDLE_SECS")?
                .map_or(defaults.idle, Duration::from_secs_f64),
            instance: defaults.instance,
            data_dir: None,
            socket: None,
            pool: match var("CODEFLUX_SANDBOX_POOL") {
                None => defaults.pool,
                Some(value) => value.trim().parse().map_err(|_| {
                    SandboxError::NotConfigured(format!(
                        "CODEFLUX_SANDBOX_POOL must be a whole number (0 turns the pool off), not {value:?}"
                    ))
                })?,
            },
            max_running: number("CODEFLUX_SANDBOX_MAX_RUNNING")?.map(|n| n as usize),
            network_prefix: defaults.network_prefix,
        })
    }

    /// The CA bundle's bytes, if one is configured.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, SandboxError> {
        self.ca_cert
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|error| {
                    SandboxError::NotConfigured(format!(
                        "cannot read CODEFLUX_SANDBOX_CA_CERT {}: {error}",
                        path.display()
                    ))
                })
            })
            .transpose()
    }

    /// The Docker network the sandboxes join.
    pub fn network_name(&self) -> String {
        let purpose = match self.network {
            NetworkMode::Bridge => "sandboxes",
            NetworkMode::None => "isolated",
        };
        format!("{}-{purpose}", self.network_prefix)
    }
}
