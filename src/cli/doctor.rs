//! `codeflux doctor`: checks the setup `serve` would use, one line per check with a fix for
//! each problem, and fails (exit 1) when something would stop a generation.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;

use crate::llm::{ChatMessage, ChatRequest, Llm, LlmConfig, LlmError, OpenAiClient};
use crate::sandbox::docker::{
    DockerConfig, DockerProvider, ImageState, NetworkMode, Owner, data_dir_in_use, image_state,
};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub places: super::Places,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Works, but something deserves attention (a slow first start, a weak model).
    Warn,
    /// Generation cannot work until this is fixed.
    Fail,
}

#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check, prints them, and returns whether generation can work.
pub async fn run(args: DoctorArgs) -> bool {
    let mut checks = Vec::new();
    let server_running = check_data_dir(&args.places.data_dir, &mut checks);
    checks.push(check_ports(&args.places, server_running));
    check_sandboxes(&mut checks).await;
    checks.push(check_git().await);
    let model = LlmConfig::from_env();
    let model_check = check_model(model.clone()).await;
    let model_answers = model_check.outcome != Outcome::Fail;
    checks.push(model_check);
    if model_answers {
        checks.push(check_images(model).await);
    }
    print(&checks);
    !checks.iter().any(|check| check.outcome == Outcome::Fail)
}

fn print(checks: &[Check]) {
    let width = checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    for check in checks {
        let label = match check.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        println!("{label}  {:width$}  {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("      {:width$}  → {fix}", "");
        }
    }
    let failed = checks
        .iter()
        .filter(|check| check.outcome == Outcome::Fail)
        .count();
    println!();
    if failed == 0 {
        println!("Ready to generate.");
    } else {
        println!("{failed} problem(s) stop generation; fix the lines marked FAIL.");
    }
}

/// Returns whether a CodeFlux server holds the directory right now.
fn check_data_dir(data_dir: &Path, checks: &mut Vec<Check>) -> bool {
    const NAME: &str = "data directory";
    let shown = data_dir.display();
    let probe = data_dir.join(".codeflux-doctor");
    let writable = std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&probe, b"probe"))
        .and_then(|()| std::fs::remove_file(&probe));
    if let Err(error) = writable {
        checks.push(Check::fail(
            NAME,
            format!("{shown} is not writable: {error}"),
            "set CODEFLUX_DATA_DIR to a folder this user may write, or fix its owner",
        ));
        return false;
    }
    let running = matches!(data_dir_in_use(data_dir), Owner::Running);
    checks.push(Check::ok(
        NAME,
        if running {
            format!("{shown} is writable; a CodeFlux server is using it now")
        } else {
            format!("{shown} is writable")
        },
    ));
    running
}

fn check_ports(args: &super::Places, server_running: bool) -> Check {
    const NAME: &str = "ports";
    let busy: Vec<String> = [args.listen, args.preview_listen]
        .into_iter()
        .filter(|address| std::net::TcpListener::bind(address).is_err())
        .map(|address| address.to_string())
        .collect();
    if busy.is_empty() {
        Check::ok(
            NAME,
            format!("{} and {} are free", args.listen, args.preview_listen),
        )
    } else if server_running {
        Check::ok(
            NAME,
            format!(
                "{} in use, by the CodeFlux server running on this data directory",
                busy.join(" and ")
            ),
        )
    } else {
        Check::fail(
            NAME,
            format!("{} already in use", busy.join(" and ")),
            "stop what listens there, or choose CODEFLUX_LISTEN / CODEFLUX_PREVIEW_LISTEN",
        )
    }
}

async fn check_sandboxes(checks: &mut Vec<Check>) {
    let choice = std::env::var("CODEFLUX_SANDBOX")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    match choice.as_str() {
        "e2b" => checks.push(check_e2b().await),
        "docker" => {
            check_docker(checks, true).await;
        }
        "" | "auto" => {
            let docker_works =
                check_docker(checks, std::env::var_os("E2B_API_KEY").is_none()).await;
            if !docker_works && std::env::var_os("E2B_API_KEY").is_some() {
                checks.push(check_e2b().await);
            }
        }
        other => checks.push(Check::fail(
            "sandbox backend",
            format!("CODEFLUX_SANDBOX is {other:?}"),
            "set CODEFLUX_SANDBOX to docker, e2b or auto",
        )),
    }
}

/// Returns whether the engine answered. An unreachable engine fails the run only when
/// nothing else (E2B) would take over.
async fn check_docker(checks: &mut Vec<Check>, required: bool) -> bool {
    const ENGINE: &str = "docker engine";
    let config = match DockerConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            checks.push(Check::fail(
                ENGINE,
                error.to_string(),
                "fix the CODEFLUX_SANDBOX_* setting named above",
            ));
            return false;
        }
    };
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the local socket".into());
    let provider = match DockerProvider::connect(config).await {
        Ok(provider) => provider,
        Err(error) => {
            let fix = "start Docker, or point DOCKER_HOST at an engine (tcp:// with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH for TLS); the user needs access to its socket";
            checks.push(if required {
                Check::fail(ENGINE, format!("{host}: {error}"), fix)
            } else {
                Check::warn(ENGINE, format!("{host}: {error}; E2B is used instead"), fix)
            });
            return false;
        }
    };
    let docker = provider.docker();
    let version = docker.version().await.ok();
    checks.push(Check::ok(
        ENGINE,
        format!(
            "{host} answers: Docker {} (API {})",
            version
                .as_ref()
                .and_then(|v| v.version.clone())
                .unwrap_or_else(|| "?".into()),
            version
                .as_ref()
                .and_then(|v| v.api_version.clone())
                .unwrap_or_else(|| "?".into())
        ),
    ));
    let config = provider.config();
    let offline = config.network == NetworkMode::None;
    let base_present = docker.inspect_image(&config.base_image).await.is_ok();
    match image_state(docker, config).await {
        Ok(ImageState::Ready { tag }) => {
            checks.push(Check::ok("sandbox image", format!("{tag} is present")));
            checks.push(browser_in_image(docker, &tag).await);
        }
        Ok(ImageState::Missing { tag, older }) => {
            let older = if older.is_empty() {
                String::new()
            } else {
                format!(
                    "; older images from other versions or settings: {}",
                    older.join(", ")
                )
            };
            checks.push(if offline && !base_present {
                Check::fail(
                    "sandbox image",
                    format!("{tag} is missing and cannot be built without a network{older}"),
                    "bring it from a connected machine: `codeflux template export FILE` there, `codeflux template import FILE` here (docs/air-gapped.md)",
                )
            } else {
                Check::warn(
                    "sandbox image",
                    format!("{tag} is missing{older}; `serve` builds it at start, which takes a few minutes"),
                    "build it now with `codeflux template build`",
                )
            });
        }
        Err(error) => checks.push(Check::fail(
            "sandbox image",
            error.to_string(),
            "check the CODEFLUX_SANDBOX_CA_CERT file",
        )),
    }
    checks.push(if base_present {
        Check::ok(
            "base image",
            format!("{} is on the engine", config.base_image),
        )
    } else {
        Check::ok(
            "base image",
            format!(
                "{} is not on the engine; it is pulled only when the sandbox image is built",
                config.base_image
            ),
        )
    });
    if offline {
        checks.push(Check::ok(
            "sandbox network",
            "none: sandboxes have no route out; the agent uses the preinstalled packages",
        ));
    }
    true
}

/// `git clone` of projects needs the git binary on this machine.
async fn check_git() -> Check {
    const NAME: &str = "git";
    match tokio::process::Command::new("git")
        .arg("--version")
        .output()
        .await
    {
        Ok(output) if output.status.success() => Check::ok(
            NAME,
            format!(
                "{}: projects can be cloned from /git/<project>.git",
                String::from_utf8_lossy(&output.stdout).trim()
            ),
        ),
        _ => Check::warn(
            NAME,
            "git is not installed: `git clone` of projects answers 503; everything else works",
            "install git (Debian: apt-get install git)",
        ),
    }
}

/// Whether the sandbox image carries the browser the last check opens each page in.
async fn browser_in_image(docker: &bollard::Docker, tag: &str) -> Check {
    const NAME: &str = "browser check";
    let browser = docker
        .inspect_image(tag)
        .await
        .ok()
        .and_then(|image| image.config)
        .and_then(|config| config.labels)
        .and_then(|labels| labels.get("codeflux.browser").cloned());
    match browser {
        Some(browser) => Check::ok(
            NAME,
            format!(
                "{browser} is in the sandbox image: each page is opened and clicked through after the other checks"
            ),
        ),
        None => Check::warn(
            NAME,
            format!("{tag} has no Chromium: answers say \"Not checked in a browser\""),
            "rebuild the sandbox image from this version's template: `codeflux template build`",
        ),
    }
}

async fn check_e2b() -> Check {
    const NAME: &str = "e2b";
    let config = match crate::sandbox::e2b::E2bConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            return Check::fail(
                NAME,
                error.to_string(),
                "set E2B_API_KEY (and E2B_DOMAIN for a self-hosted E2B)",
            );
        }
    };
    let api_url = config.api_url.clone();
    let template = config.template.clone();
    let provider = match crate::sandbox::e2b::E2bProvider::new(
        config,
        crate::store::Store::temporary()
            .and_then(|store| store.tree("doctor"))
            .expect("a temporary store opens"),
    ) {
        Ok(provider) => provider,
        Err(error) => return Check::fail(NAME, error.to_string(), "check the E2B settings"),
    };
    match provider.check().await {
        Ok(()) => Check::ok(
            NAME,
            format!(
                "{api_url} accepts the key; template {template} (the browser check needs Chromium in it: e2b.Dockerfile installs it, so rebuild a template made from an older one)"
            ),
        ),
        Err(error) => Check::fail(
            NAME,
            format!("{api_url}: {error}"),
            "check E2B_API_KEY and that this machine reaches the E2B API",
        ),
    }
}

/// One tiny request with the agent's own tools: does the model answer, and does it call one?
async fn check_model(mut config: LlmConfig) -> Check {
    const NAME: &str = "model";
    if config.missing_key() {
        return Check::fail(
            NAME,
            format!("no API key for {}", config.base_url),
            "set CODEFLUX_LLM_API_KEY (or OPENROUTER_API_KEY), or point CODEFLUX_LLM_BASE_URL at a local server such as http://127.0.0.1:11434/v1",
        );
    }
    config.max_attempts = 1;
    config.request_timeout = config.request_timeout.min(Duration::from_secs(120));
    let (base_url, model) = (config.base_url.clone(), config.model.clone());
    let client = match OpenAiClient::new(config) {
        Ok(client) => client,
        Err(error) => return Check::fail(NAME, error.to_string(), "check CODEFLUX_LLM_BASE_URL"),
    };
    let request = ChatRequest {
        messages: vec![ChatMessage::user(
            "This is a connectivity check. Call the `terminal` tool once with the command `echo ok`, and nothing else.",
        )],
        tools: crate::agent::tools::specs(),
        temperature: 0.0,
    };
    let started = Instant::now();
    let answer = client.chat(&request).await;
    let elapsed = started.elapsed().as_secs_f64();
    match answer {
        Ok(response) => {
            let reply = crate::agent::reply::normalize(&response.message);
            if reply.calls.is_empty() {
                Check::warn(
                    NAME,
                    format!("{model} at {base_url} answered in {elapsed:.1} s but called no tool"),
                    "the agent works through tool calls: choose a model with tool calling (and turn it on in the server, e.g. vLLM's --enable-auto-tool-choice)",
                )
            } else {
                Check::ok(
                    NAME,
                    format!("{model} at {base_url} answered with a tool call in {elapsed:.1} s"),
                )
            }
        }
        Err(error) => {
            let fix = match &error {
                LlmError::Unreachable { .. } => {
                    "start the model server, or fix CODEFLUX_LLM_BASE_URL".to_string()
                }
                LlmError::Unauthorized { .. } => "set a valid CODEFLUX_LLM_API_KEY".to_string(),
                LlmError::Rejected { .. } => format!(
                    "check that the server knows the model {model:?} and accepts `tools` (some servers need tool calling turned on)"
                ),
                _ => "try again; if it persists, check the model server's log".to_string(),
            };
            Check::fail(NAME, error.to_string(), fix)
        }
    }
}

/// A 1×1 PNG: the smallest image a vision model can be asked about.
const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// Whether the model takes images in a prompt (one tiny request); a refusal is a warning,
/// since prompts without images still work.
async fn check_images(mut config: LlmConfig) -> Check {
    const NAME: &str = "model images";
    config.max_attempts = 1;
    config.request_timeout = config.request_timeout.min(Duration::from_secs(120));
    let model = config.model.clone();
    let Ok(client) = OpenAiClient::new(config) else {
        return Check::warn(
            NAME,
            "could not ask the model",
            "check CODEFLUX_LLM_BASE_URL",
        );
    };
    let request = ChatRequest {
        messages: vec![ChatMessage::user_with_images(
            "This is a connectivity check. What colour is this image? One word.",
            vec![format!("data:image/png;base64,{TINY_PNG}")],
        )],
        tools: Vec::new(),
        temperature: 0.0,
    };
    match client.chat(&request).await {
        Ok(_) => {
            let judging = std::env::var("CODEFLUX_MODEL_SEES_IMAGES")
                .is_ok_and(|value| matches!(value.as_str(), "1" | "true" | "yes" | "on"));
            let hint = if judging {
                "; it judges the browser check's screenshot of / (CODEFLUX_MODEL_SEES_IMAGES)"
            } else {
                "; set CODEFLUX_MODEL_SEES_IMAGES=true to have it judge the browser check's screenshot of /"
            };
            Check::ok(NAME, format!("{model} accepts images in prompts{hint}"))
        }
        Err(LlmError::Rejected { message, .. }) => Check::warn(
            NAME,
            format!(
                "{model} does not accept images ({message}); prompts with images will be refused"
            ),
            "to build from screenshots or mockups, choose a vision model (for example gpt-4o, Claude, Gemini, Qwen2.5-VL, LLaVA)",
        ),
        Err(error) => Check::warn(
            NAME,
            format!("could not tell whether {model} accepts images: {error}"),
            "try again; if it persists, check the model server's log",
        ),
    }
}
