//! `codeflux import ./dir`: a folder on this machine becomes a project of the running
//! CodeFlux. The folder is read and checked here (what stays out never leaves the
//! machine), then sent as a zip to `POST /api/projects/import`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use super::publish::Server;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The app's folder (its package.json at the top).
    pub folder: PathBuf,
    #[command(flatten)]
    pub server: Server,
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let imported = crate::import::from_folder(&args.folder)
        .with_context(|| format!("{} cannot be imported", args.folder.display()))?;
    let zip = zip_of(&imported.files)?;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(zip).file_name("app.zip"),
    );
    let base = args.server.url.trim_end_matches('/');
    let mut request = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("{base}/api/projects/import"))
        .timeout(Duration::from_secs(300))
        .multipart(form);
    if let Some(token) = &args.server.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| {
        format!(
            "CodeFlux does not answer at {base} (start it with `codeflux serve`, or pass --server)"
        )
    })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "the import was refused ({status}): {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    println!(
        "Imported {} files as {} ({})",
        imported.files.len(),
        body["name"].as_str().unwrap_or_default(),
        imported.stack.describe()
    );
    println!(
        "Preview: {}",
        body["preview_url"].as_str().unwrap_or_default()
    );
    for (path, why) in &imported.skipped {
        println!("  left out {path}: {why}");
    }
    Ok(())
}

fn zip_of(files: &std::collections::BTreeMap<String, String>) -> anyhow::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, content) in files {
        writer.start_file(path, options)?;
        std::io::Write::write_all(&mut writer, content.as_bytes())?;
    }
    Ok(writer.finish()?.into_inner())
}
