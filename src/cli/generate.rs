//! `codeflux generate`: one prompt, built in a sandbox, its files written to a folder; the
//! progress goes to the terminal.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::{GenerateArgs, offline, setup_for};
use crate::events::EventKind;
use crate::llm::{Llm, OpenAiClient};
use crate::server::Services;
use crate::store::{JobStatus, MessageType};

pub(super) async fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let mut settings = args.agent.settings(None, 1);
    let store = crate::store::Store::temporary()?;
    let instance =
        std::env::var("CODEFLUX_SANDBOX_INSTANCE").unwrap_or_else(|_| "generate".to_string());
    let sandbox =
        crate::sandbox::select::from_env(&instance, None, store.tree("e2b_sandboxes")?).await;
    if let Some(problem) = &sandbox.problem {
        bail!("{problem}");
    }
    settings.agent.offline = offline(&sandbox);
    let setup = setup_for(&settings, &sandbox);
    let llm: Arc<dyn Llm> = Arc::new(OpenAiClient::new(settings.llm.clone())?);
    let services = Services::build_on(store, &settings, llm, sandbox.provider, setup).await?;
    let store = &services.state.store;
    let (project, _, mut job) = store.create_project(args.prompt.trim())?;
    eprintln!("Building {} …", project.name);

    let (_, mut progress) = services.state.events.watch(project.id)?;
    let printer = tokio::spawn(async move {
        while let Ok(event) = progress.recv().await {
            if let Some(line) = describe(&event.kind) {
                eprintln!("  {line}");
            }
        }
    });

    job.status = JobStatus::Running;
    job.attempts = 1;
    store.put_job(&job)?;
    let message = services.jobs.generation().run(&job).await?;
    printer.abort();
    // The files are written out below; the sandbox is not needed any more.
    if let Some(provider) = &services.jobs.generation().sandboxes
        && let Err(error) = provider.release(project.id).await
    {
        tracing::warn!(%error, "could not remove the sandbox");
    }
    if message.kind == MessageType::Error {
        bail!("{}", message.content);
    }
    let fragment = store
        .fragment(message.id)?
        .context("the job finished without files")?;
    write_files(&args.out, &fragment.files)?;
    println!("{}", message.content);
    println!(
        "Wrote {} files to {}",
        fragment.files.len(),
        args.out.display()
    );
    Ok(())
}

fn write_files(
    out: &Path,
    files: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for (path, content) in files {
        // Paths were checked against the workspace when written; check again for the host.
        let relative = crate::sandbox::WorkspacePath::parse(path)?;
        let target = out.join(relative.relative());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(())
}

/// One line of progress for the terminal.
fn describe(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::SandboxReady { backend, .. } => format!("sandbox ready ({backend})"),
        EventKind::PackagesInstalled { detail, .. } => detail.clone(),
        EventKind::ModelTurn {
            iteration,
            max_iterations,
            tokens,
            token_budget,
        } => match token_budget {
            Some(budget) => {
                format!("model turn {iteration}/{max_iterations} ({tokens} of {budget} tokens)")
            }
            None => format!("model turn {iteration}/{max_iterations}"),
        },
        EventKind::ToolFinished {
            summary,
            ok,
            elapsed_ms,
            ..
        } => {
            format!(
                "{} {summary} ({:.1} s)",
                if *ok { "✓" } else { "✗" },
                *elapsed_ms as f64 / 1000.0
            )
        }
        EventKind::Summary { text } => format!("summary: {text}"),
        _ => return None,
    })
}
