//! `matrixrtc-auth`: the MatrixRTC authorization service binary.
//!
//! Configured like element-hq/lk-jwt-service (`LIVEKIT_URL`, `LIVEKIT_KEY`, `LIVEKIT_SECRET`,
//! `LIVEKIT_FULL_ACCESS_HOMESERVERS`, `LIVEKIT_JWT_BIND`, ...), each also a flag: see `--help`.

use clap::Parser;
use matrixrtc_auth::config::{Config, RawConfig};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(version, about = "MatrixRTC authorization service (lk-jwt-service compatible)")]
struct Cli {
    #[command(flatten)]
    config: RawConfig,
    /// Log filter (tracing syntax), used when RUST_LOG is not set.
    #[arg(long, env = "LIVEKIT_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let config = match Config::from_raw(cli.config) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return std::process::ExitCode::from(2);
        }
    };
    if config.accept_invalid_certs {
        tracing::warn!(
            "LIVEKIT_INSECURE_SKIP_VERIFY_TLS: TLS certificates are NOT checked; use only for testing"
        );
    }
    let listener = match tokio::net::TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(bind = %config.bind, %error, "cannot listen");
            return std::process::ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().map_or_else(|_| config.bind.to_string(), |a| a.to_string());
    tracing::info!(
        %address,
        livekit_url = %config.livekit_url,
        full_access = ?config.full_access,
        "matrixrtc-auth listening"
    );
    match matrixrtc_auth::serve(listener, config, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "server error");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
