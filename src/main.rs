use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sled=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    codeflux::cli::run(codeflux::cli::Cli::parse()).await
}
