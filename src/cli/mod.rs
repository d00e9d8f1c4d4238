//! The command line: `serve`, `generate`, `template build|export|import|prune`, `sandboxes`,
//! `doctor`, and the API clients `publish`, `apps`, `export` and `import`.

mod doctor;
mod generate;
mod import;
mod publish;
mod sandboxes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::agent::AgentSettings;
use crate::llm::{Llm, LlmConfig, OpenAiClient, ReplayLlm};
use crate::sandbox::docker::{DockerConfig, DockerProvider};
use crate::server::{Services, Settings};
use crate::web::Setup;

#[derive(Debug, Parser)]
#[command(
    name = "codeflux",
    version,
    about = "A self-hosted AI app builder: describe an app, watch an agent build it, click the live preview."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web UI, the JSON API and the preview proxy.
    Serve(ServeArgs),
    /// Build one app from a prompt without the web UI and write its files to a folder.
    Generate(GenerateArgs),
    /// Manage the sandbox template image.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// List this installation's Docker sandboxes with their state, age and memory; prune them.
    Sandboxes(sandboxes::SandboxesArgs),
    /// Check the setup (engine, sandbox image, model, data directory, ports) and say how to
    /// fix what is wrong. Exits with 1 when something stops generation.
    Doctor(doctor::DoctorArgs),
    /// Publish a version of a project on this machine's Docker engine, at its stable
    /// address (talks to the running CodeFlux).
    Publish(publish::PublishArgs),
    /// List the published apps: name, version, address, memory, uptime.
    Apps(publish::AppsArgs),
    /// Build a version's production image to run elsewhere (`--image`), and write it as a
    /// tarball (`--tar`) or a docker-compose.yml (`--compose`).
    Export(publish::ExportArgs),
    /// Import an app from a folder on this machine as a new project (talks to the running
    /// CodeFlux; node_modules, .git and .env files stay out).
    Import(import::ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Build the Docker sandbox image from the template embedded in this binary.
    Build,
    /// Write the sandbox image (built first if needed) to a tarball for an offline machine.
    Export {
        /// The tarball to write.
        file: PathBuf,
    },
    /// Load a tarball made by `template export` (plain or gzip) as this machine's sandbox image.
    Import {
        /// The tarball to read.
        file: PathBuf,
    },
    /// Remove the sandbox images of earlier templates (each about 1.5 GB); images that a
    /// container still uses are kept.
    Prune {
        /// Also images built from other base images (other settings on this engine).
        #[arg(long)]
        all_bases: bool,
    },
}

/// Settings shared by `serve` and `generate`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Most model turns one request may take.
    #[arg(long, env = "CODEFLUX_MAX_ITERATIONS", default_value_t = 30)]
    pub max_iterations: u32,
    /// Most tokens one request may spend in all (agent, fixes, title, reply); 0: no limit.
    /// Reaching it stops the run between calls and keeps what was written as a version.
    #[arg(long, env = "CODEFLUX_REQUEST_TOKEN_BUDGET", default_value_t = 0)]
    pub request_token_budget: u64,
    /// Seconds a single terminal command may run before it is killed.
    #[arg(long, env = "CODEFLUX_COMMAND_TIMEOUT_SECS", default_value_t = 300)]
    pub command_timeout_secs: u64,
    /// Seconds one whole job may take before it is stopped with an error.
    #[arg(long, env = "CODEFLUX_JOB_TIMEOUT_SECS", default_value_t = 1800)]
    pub job_timeout_secs: u64,
    /// Rounds of fixing after the app fails its check (type check, dev server, pages).
    #[arg(long, env = "CODEFLUX_FIX_ATTEMPTS", default_value_t = 3)]
    pub fix_attempts: u32,
    /// Open each page in the sandbox's headless Chromium as the last check (exceptions,
    /// failed requests, blank pages, each first-screen button and link clicked).
    #[arg(long, env = "CODEFLUX_BROWSER_CHECK", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub browser_check: bool,
    /// The model reads images: it is shown the front page's screenshot once, to judge
    /// whether the app looks like what was asked.
    #[arg(long, env = "CODEFLUX_MODEL_SEES_IMAGES", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub model_sees_images: bool,
    /// Public URL of a project's preview; `{project}` becomes the project id. Default:
    /// `http://{project}.localhost:<port of the preview listener>`.
    #[arg(long, env = "CODEFLUX_PREVIEW_URL")]
    pub preview_url: Option<String>,
    /// Snapshots of each app's data kept besides the latest copy (one per version, and one
    /// before each change or restore that replaced data); the oldest go first.
    #[arg(long, env = "CODEFLUX_DATA_SNAPSHOTS", default_value_t = 30)]
    pub data_snapshots: usize,
    /// Most megabytes those snapshots may take per project (gzipped).
    #[arg(long, env = "CODEFLUX_DATA_SNAPSHOTS_MB", default_value_t = 100)]
    pub data_snapshots_mb: usize,
    /// Seconds between backups of each published app's data into its project's snapshots,
    /// taken only when the data changed since the last one; 0 turns them off.
    #[arg(long, env = "CODEFLUX_PUBLISHED_BACKUP_SECS", default_value_t = 3600)]
    pub published_backup_secs: u64,
    /// US dollars per million prompt tokens, for cost figures when the model server
    /// reports no cost (OpenRouter does); both prices or neither.
    #[arg(long, env = "CODEFLUX_PRICE_INPUT", requires = "price_output")]
    pub price_input: Option<f64>,
    /// US dollars per million completion tokens.
    #[arg(long, env = "CODEFLUX_PRICE_OUTPUT", requires = "price_input")]
    pub price_output: Option<f64>,
}

/// Where `serve` listens and keeps its data (`doctor` checks the same).
#[derive(Debug, Args)]
pub struct Places {
    /// Address for the UI and API.
    #[arg(long, env = "CODEFLUX_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Address of the preview proxy (each project at `http://<project-id>.localhost:<port>`).
    #[arg(
        long,
        env = "CODEFLUX_PREVIEW_LISTEN",
        default_value = "127.0.0.1:3001"
    )]
    pub preview_listen: SocketAddr,
    /// Where projects, messages and jobs are kept.
    #[arg(long, env = "CODEFLUX_DATA_DIR", default_value = "./codeflux-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub places: Places,
    /// How many jobs run at the same time.
    #[arg(long, env = "CODEFLUX_MAX_JOBS", default_value_t = 2)]
    pub max_jobs: usize,
    /// Token that people and API clients must present; required when the UI or the previews
    /// listen on an address other machines can reach.
    #[arg(long, env = "CODEFLUX_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// The address people open CodeFlux at, when it differs from `--listen` (behind a
    /// reverse proxy, or by a LAN name), e.g. `https://codeflux.example.com`. Selecting
    /// elements in the preview talks only to this origin and the listen address's.
    #[arg(long, env = "CODEFLUX_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// More names the UI and the previews answer to (reverse proxies, LAN names),
    /// comma-separated: `codeflux.lan,box.lan:8080`. Other `Host`s get 421, which keeps
    /// web pages from reaching CodeFlux by DNS rebinding.
    #[arg(long, env = "CODEFLUX_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// PEM bundle the preview proxy trusts for `https` dev servers (a self-hosted E2B).
    #[arg(long, env = "CODEFLUX_PREVIEW_CA_CERT")]
    pub preview_ca_cert: Option<PathBuf>,
    /// Answer with a bundled recorded model transcript (a habit tracker) instead of a model:
    /// try CodeFlux with no API key. The sandbox, checks and preview are real.
    #[arg(long, env = "CODEFLUX_DEMO")]
    pub demo: bool,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to build.
    pub prompt: String,
    /// Folder to write the generated files into.
    #[arg(long, default_value = "./codeflux-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub agent: AgentArgs,
}

impl AgentArgs {
    fn settings(&self, data_dir: Option<PathBuf>, max_jobs: usize) -> Settings {
        Settings {
            data_dir,
            max_jobs,
            agent: AgentSettings {
                max_iterations: self.max_iterations,
                command_timeout: Duration::from_secs(self.command_timeout_secs),
                job_timeout: Duration::from_secs(self.job_timeout_secs.max(1)),
                fix_attempts: self.fix_attempts,
                browser_check: self.browser_check,
                model_sees_images: self.model_sees_images,
                token_budget: (self.request_token_budget > 0).then_some(self.request_token_budget),
                ..AgentSettings::default()
            },
            preview_url_template: self
                .preview_url
                .clone()
                .unwrap_or_else(|| default_preview_url(DEFAULT_PREVIEW_PORT)),
            llm: LlmConfig::from_env(),
            auth: crate::auth::Auth::default(),
            preview_extra_ca: None,
            public_origin: None,
            allowed_hosts: Vec::new(),
            data_limits: crate::store::snapshots::SnapshotLimits {
                count: self.data_snapshots.max(1),
                bytes: self.data_snapshots_mb.max(1) * 1024 * 1024,
            },
            apps_url: std::env::var("CODEFLUX_APPS_URL")
                .ok()
                .filter(|url| !url.trim().is_empty()),
            publish_engine: Default::default(),
            published_backup: (self.published_backup_secs > 0)
                .then(|| std::time::Duration::from_secs(self.published_backup_secs)),
            prices: self
                .price_input
                .zip(self.price_output)
                .map(|(input, output)| crate::llm::Prices {
                    input_per_million: input,
                    output_per_million: output,
                }),
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Generate(args) => generate::generate(args).await,
        Command::Template(command) => template(command).await,
        Command::Sandboxes(args) => sandboxes::run(args).await,
        Command::Publish(args) => publish::publish(args).await,
        Command::Apps(args) => publish::apps(args).await,
        Command::Export(args) => publish::export(args).await,
        Command::Import(args) => import::run(args).await,
        Command::Doctor(args) => {
            if !doctor::run(args).await {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn template(command: TemplateCommand) -> anyhow::Result<()> {
    use crate::sandbox::docker::{build_image, export_image, import_image, prune_images};
    let provider = DockerProvider::connect(DockerConfig::from_env()?).await?;
    let (docker, config) = (provider.docker(), provider.config());
    let mut log = |line: &str| eprintln!("{line}");
    match command {
        TemplateCommand::Build => println!("{}", build_image(docker, config, &mut log).await?),
        TemplateCommand::Export { file } => {
            let exported = export_image(docker, config, &file, &mut log).await?;
            println!(
                "Wrote {} ({:.0} MB) to {}",
                exported.tag,
                exported.bytes as f64 / 1e6,
                file.display()
            );
        }
        TemplateCommand::Import { file } => {
            let imported = import_image(docker, config, &file, &mut log).await?;
            if imported.loaded == imported.tag {
                println!("Imported {}", imported.tag);
            } else {
                println!(
                    "Imported {} and tagged it {} for this machine's settings",
                    imported.loaded, imported.tag
                );
            }
        }
        TemplateCommand::Prune { all_bases } => {
            let pruned = prune_images(docker, config, all_bases).await?;
            for (tag, bytes) in &pruned.removed {
                println!("Removed {tag} ({:.0} MB)", *bytes as f64 / 1e6);
            }
            for tag in &pruned.in_use {
                println!("Kept {tag}: a container still uses it");
            }
            println!(
                "{} removed (layers that other images share stay until none uses them)",
                pruned.removed.len()
            );
        }
    }
    Ok(())
}

fn setup_for(settings: &Settings, sandbox: &crate::sandbox::select::Selected) -> Setup {
    Setup {
        demo: false,
        sandbox_backend: sandbox.provider.as_ref().map(|provider| provider.name().to_string()),
        sandbox_problem: sandbox.problem.clone(),
        model: settings.llm.model.clone(),
        // Services sets this from the settings.
        auth_enabled: false,
        sandbox_readiness: sandbox.docker.as_ref().map(|docker| docker.readiness()),
        model_problem: settings.llm.missing_key().then(|| {
            format!(
                "No API key for {}: set CODEFLUX_LLM_API_KEY (or OPENROUTER_API_KEY), or point CODEFLUX_LLM_BASE_URL at a local server such as http://localhost:11434/v1",
                settings.llm.base_url
            )
        }),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let Places {
        listen,
        preview_listen,
        ref data_dir,
    } = args.places;
    let mut settings = args.agent.settings(Some(data_dir.clone()), args.max_jobs);
    if args.agent.preview_url.is_none() {
        settings.preview_url_template = default_preview_url(preview_listen.port());
    }
    settings.auth = crate::auth::Auth::new(args.auth_token.clone())?;
    settings.auth.check_exposure("the UI", listen)?;
    settings
        .auth
        .check_exposure("the preview proxy", preview_listen)?;
    if let Some(path) = &args.preview_ca_cert {
        settings.preview_extra_ca =
            Some(std::fs::read(path).with_context(|| {
                format!("cannot read CODEFLUX_PREVIEW_CA_CERT {}", path.display())
            })?);
    }
    if let Some(url) = &args.public_url {
        settings.public_origin = Some(public_origin(url)?);
    }
    settings.allowed_hosts = args.allowed_hosts.clone();
    // Checked now, so a wrong name stops the start instead of every request.
    crate::hosts::UiHosts::new(
        listen,
        settings.public_origin.as_deref(),
        &settings.allowed_hosts,
    )?;
    crate::hosts::PreviewHosts::new(&settings.preview_url_template, &settings.allowed_hosts)?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let (instance, full_data_dir) = installation(data_dir);
    // The store is opened once here; its tree for E2B sandbox ids goes to the backend.
    let store = crate::store::Store::open(data_dir)
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    let sandbox = crate::sandbox::select::from_env(
        &instance,
        Some(&full_data_dir),
        store.tree("e2b_sandboxes")?,
    )
    .await;
    settings.agent.offline = offline(&sandbox);
    settings.publish_engine = crate::server::PublishEngine(
        crate::sandbox::select::publish_engine(&sandbox, &instance, Some(&full_data_dir)).await,
    );
    let mut setup = setup_for(&settings, &sandbox);
    let llm: Arc<dyn Llm> = if args.demo {
        tracing::info!("demo mode: answers replay a recorded transcript, no model is called");
        setup.demo = true;
        setup.model = crate::llm::DEMO_MODEL.to_string();
        setup.model_problem = None;
        Arc::new(ReplayLlm::demo())
    } else {
        Arc::new(OpenAiClient::new(settings.llm.clone())?)
    };
    if let Some(problem) = &setup.sandbox_problem {
        tracing::warn!("{problem}");
    }
    if let Some(problem) = &setup.model_problem {
        tracing::warn!("{problem}");
    }
    let services = Services::build_on(store, &settings, llm, sandbox.provider, setup).await?;
    if let Some(docker) = sandbox.docker {
        let live = services
            .state
            .store
            .all_project_ids()?
            .into_iter()
            .collect();
        match docker.remove_orphans(&live).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed sandboxes of deleted projects"),
            Err(error) => tracing::warn!(%error, "could not look for orphaned sandboxes"),
        }
        docker.spawn_reaper();
        docker.spawn_pool();
        // Build the image now rather than on the first prompt, and join the sandboxes'
        // network now (in a container), so the previews of sandboxes that outlived an earlier
        // CodeFlux container answer before any new job runs.
        tokio::spawn(async move {
            if let Err(error) = docker.ensure_network().await {
                tracing::warn!(%error, "could not prepare the sandboxes' network");
            }
            let mut log = |line: &str| tracing::info!(target: "codeflux::template", "{line}");
            if let Err(error) = docker.prepare_image(&mut log).await {
                tracing::error!(%error, "the sandbox image could not be built");
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {}", listen))?;
    let preview_listener = tokio::net::TcpListener::bind(preview_listen)
        .await
        .with_context(|| format!("cannot listen for previews on {}", preview_listen))?;
    services
        .serve(listener, Some(preview_listener), shutdown_signal())
        .await?;
    Ok(())
}

const DEFAULT_PREVIEW_PORT: u16 = 3001;

/// The origin of `CODEFLUX_PUBLIC_URL` (`https://codeflux.example.com/some/path` →
/// `https://codeflux.example.com`).
fn public_origin(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url)
        .with_context(|| format!("CODEFLUX_PUBLIC_URL {url:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        anyhow::bail!("CODEFLUX_PUBLIC_URL {url:?} must be an http:// or https:// address");
    }
    Ok(parsed.origin().ascii_serialization())
}

/// Previews at `<project>.localhost` on the preview listener's port.
fn default_preview_url(port: u16) -> String {
    format!("http://{{project}}.localhost:{port}")
}

/// Whether the chosen sandboxes have no network (the agent is told it cannot install).
fn offline(sandbox: &crate::sandbox::select::Selected) -> bool {
    sandbox
        .docker
        .as_ref()
        .is_some_and(|docker| docker.config().network == crate::sandbox::docker::NetworkMode::None)
}

/// Names this installation's sandboxes after its data directory (unless
/// `CODEFLUX_SANDBOX_INSTANCE` says otherwise), so two CodeFlux servers on one Docker engine
/// keep their hands off each other's containers. Also returns the directory's full path.
fn installation(data_dir: &Path) -> (String, PathBuf) {
    use sha2::Digest;
    let path = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let instance = std::env::var("CODEFLUX_SANDBOX_INSTANCE")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| {
            hex::encode(sha2::Sha256::digest(path.display().to_string().as_bytes()))[..10]
                .to_string()
        });
    (instance, path)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
