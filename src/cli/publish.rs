//! `codeflux publish`, `codeflux apps` and `codeflux export`: clients of a running
//! CodeFlux's API (the store belongs to the server while it runs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::sandbox::docker::{DockerConfig, DockerProvider};
use crate::ui::publish::duration;

/// The CodeFlux server these commands talk to.
#[derive(Debug, Args)]
pub struct Server {
    /// The running CodeFlux's address.
    #[arg(
        long = "server",
        env = "CODEFLUX_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub url: String,
    /// Its token, when it requires one.
    #[arg(long, env = "CODEFLUX_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The project: its name (e.g. brave-otter) or id.
    pub project: String,
    /// The version to publish (the newest when left out).
    #[arg(long)]
    pub version: Option<u32>,
    /// The app's name in its address (`<name>.apps.localhost`).
    #[arg(long)]
    pub name: Option<String>,
    /// Start the published database empty instead of from the version's data.
    #[arg(long)]
    pub empty_data: bool,
    /// Only signed-in people may open it (with CODEFLUX_AUTH_TOKEN set on the server).
    #[arg(long)]
    pub private: bool,
    /// Return once the publish has started instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The project: its name or id.
    pub project: String,
    /// The version (the newest when left out).
    #[arg(long)]
    pub version: Option<u32>,
    /// Build the production image under this name (`<project>:v<N>` when left out).
    #[arg(long)]
    pub image: Option<String>,
    /// Also write the image to this file, for `docker load -i FILE`.
    #[arg(long)]
    pub tar: Option<PathBuf>,
    /// Also write a docker-compose.yml (with a volume for the data) into this folder.
    #[arg(long)]
    pub compose: Option<PathBuf>,
    /// A new database starts empty instead of from the version's data.
    #[arg(long)]
    pub empty_data: bool,
    #[command(flatten)]
    pub server: Server,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(server: &Server) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().no_proxy().build()?,
            base: server.url.trim_end_matches('/').to_string(),
            token: server.token.clone(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "CodeFlux does not answer at {} (start it with `codeflux serve`, or pass --server)",
                self.base
            )
        })?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .send(reqwest::Method::GET, path, None, Duration::from_secs(60))
            .await?;
        ok(status, body)
    }

    /// The id of the project called `name` (or with that id).
    async fn project_id(&self, name: &str) -> anyhow::Result<String> {
        if uuid::Uuid::parse_str(name).is_ok() {
            return Ok(name.to_string());
        }
        let mut before: Option<String> = None;
        let mut matches = Vec::new();
        loop {
            let path = match &before {
                Some(before) => format!("/api/projects?limit=100&before={before}"),
                None => "/api/projects?limit=100".to_string(),
            };
            let page = self.get(&path).await?;
            for project in page["projects"].as_array().into_iter().flatten() {
                if project["name"] == name {
                    matches.push(project["id"].as_str().unwrap_or_default().to_string());
                }
            }
            match page["next"].as_str() {
                Some(next) => before = Some(next.to_string()),
                None => break,
            }
        }
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "no project is called {name:?} (`codeflux apps` lists published ones; the home page lists all)"
            ),
            _ => bail!(
                "{} projects are called {name:?}: give the id instead ({})",
                matches.len(),
                matches.join(", ")
            ),
        }
    }
}

fn ok(status: u16, body: Value) -> anyhow::Result<Value> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = body["error"].as_str().unwrap_or("no reason given");
    bail!("CodeFlux answered {status}: {message}")
}

fn data_choice(empty: bool) -> &'static str {
    if empty { "empty" } else { "copy" }
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let project = client.project_id(&args.project).await?;
    let mut body = json!({ "data": data_choice(args.empty_data) });
    if let Some(version) = args.version {
        body["version"] = json!(version);
    }
    if let Some(name) = &args.name {
        body["name"] = json!(name);
    }
    if args.private {
        body["private"] = json!(true);
    }
    let (status, answer) = client
        .send(
            reqwest::Method::POST,
            &format!("/api/projects/{project}/publish"),
            Some(body),
            Duration::from_secs(60),
        )
        .await?;
    let answer = ok(status, answer)?;
    let url = answer["url"].as_str().unwrap_or_default().to_string();
    println!("Publishing v{} at {url}", answer["building"]);
    if args.no_wait {
        return Ok(());
    }
    let mut last_step = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let detail = client.get(&format!("/api/projects/{project}")).await?;
        let published = &detail["published"];
        match published["status"].as_str() {
            Some("running") => {
                println!("Running v{} at {url}", published["version"]);
                return Ok(());
            }
            Some("failed") => {
                if let Some(log) = published["log"].as_str() {
                    eprintln!("{log}");
                }
                let serving = match published["version"].as_u64() {
                    Some(version) => format!(" v{version} keeps running at {url}."),
                    None => String::new(),
                };
                bail!(
                    "the publish failed: {}.{serving}",
                    published["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => {
                let step = published["step"].as_str().unwrap_or_default();
                if step != last_step {
                    println!("  {step}");
                    last_step = step.to_string();
                }
            }
        }
    }
}

pub async fn apps(args: AppsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let listing = client.get("/api/apps").await?;
    let apps = listing["apps"].as_array().cloned().unwrap_or_default();
    if apps.is_empty() {
        println!("No published apps. Publish one with `codeflux publish <project>`.");
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:<10} {:<9} {:<8} ADDRESS",
        "NAME", "VERSION", "STATUS", "MEMORY", "UP"
    );
    for app in apps {
        let version = app["version"]
            .as_u64()
            .map_or("-".to_string(), |version| format!("v{version}"));
        let memory = app["memory_bytes"]
            .as_u64()
            .map_or("-".to_string(), |bytes| {
                format!("{} MiB", bytes / (1024 * 1024))
            });
        let up = app["uptime_secs"]
            .as_i64()
            .map_or("-".to_string(), duration);
        println!(
            "{:<24} {:<8} {:<10} {:<9} {:<8} {}",
            app["name"].as_str().unwrap_or_default(),
            version,
            app["status"].as_str().unwrap_or_default(),
            memory,
            up,
            app["url"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let project = client.project_id(&args.project).await?;
    let detail = client.get(&format!("/api/projects/{project}")).await?;
    let slug = detail["name"].as_str().unwrap_or("app").to_string();
    let versions = client
        .get(&format!("/api/projects/{project}/versions"))
        .await?;
    let newest = versions
        .as_array()
        .or_else(|| versions["versions"].as_array())
        .and_then(|list| list.iter().filter_map(|v| v["version"].as_u64()).max());
    let version = match (args.version, newest) {
        (Some(version), _) => version,
        (None, Some(newest)) => newest as u32,
        (None, None) => bail!("{slug} has no version to export yet"),
    };
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| format!("{slug}:v{version}"));
    println!("Building the production image {image} of {slug} v{version} (this takes minutes)");
    let (status, answer) = client
        .send(
            reqwest::Method::POST,
            &format!("/api/projects/{project}/export"),
            Some(json!({
                "version": version,
                "image": image,
                "data": data_choice(args.empty_data),
            })),
            Duration::from_secs(3600),
        )
        .await?;
    ok(status, answer)?;
    println!("Built {image}. Run it: docker run -p 3000:3000 -v {slug}-data:/app/.data {image}");
    if let Some(file) = &args.tar {
        let bytes = write_tar(&image, file).await?;
        println!(
            "Wrote {} ({} MB); load it elsewhere with: docker load -i {}",
            file.display(),
            bytes / 1_000_000,
            file.display()
        );
    }
    if let Some(folder) = &args.compose {
        let written = write_compose(folder, &slug, version, &image, args.tar.as_deref())?;
        println!(
            "Wrote {}; start it with: docker compose -f {} up -d",
            written.display(),
            written.display()
        );
    }
    Ok(())
}

/// `docker save` of one image from the engine (the one `DOCKER_HOST` names).
async fn write_tar(image: &str, file: &Path) -> anyhow::Result<u64> {
    let engine = DockerProvider::connect(DockerConfig::from_env()?).await?;
    let partial = file.with_extension("partial");
    let mut out = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut stream = engine.docker().export_image(image);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("the engine could not save {image}"))?;
        bytes += chunk.len() as u64;
        out.write_all(&chunk).await?;
    }
    out.sync_all().await?;
    tokio::fs::rename(&partial, file).await?;
    Ok(bytes)
}

fn write_compose(
    folder: &Path,
    slug: &str,
    version: u32,
    image: &str,
    tar: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let load = tar.map_or(String::new(), |tar| {
        format!(
            "# On a machine without this image: docker load -i {}\n",
            tar.file_name()
                .map_or("image.tar".into(), |name| name.to_string_lossy())
        )
    });
    let compose = format!(
        "# {slug} v{version}, exported by CodeFlux. The app listens on port 3000; its database\n\
         # (PGlite) lives in the `data` volume, which outlives the container.\n\
         {load}\
         services:\n  \
           app:\n    \
             image: {image}\n    \
             restart: unless-stopped\n    \
             ports:\n      \
               - \"3000:3000\"\n    \
             volumes:\n      \
               - data:/app/.data\n\
         volumes:\n  \
           data:\n"
    );
    let path = folder.join("docker-compose.yml");
    std::fs::write(&path, compose).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_file_runs_the_image_with_its_data_in_a_volume() {
        let folder = tempfile::tempdir().unwrap();
        let tar = Path::new("/x/app.tar");
        let path = write_compose(folder.path(), "brave-otter", 2, "brave-otter:v2", Some(tar));
        let text = std::fs::read_to_string(path.unwrap()).unwrap();
        for line in [
            "services:\n  app:\n    image: brave-otter:v2\n",
            "    restart: unless-stopped\n",
            "    volumes:\n      - data:/app/.data\nvolumes:\n  data:\n",
            "# On a machine without this image: docker load -i app.tar\n",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
    }
}
