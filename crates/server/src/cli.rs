//! The `thingline` command line: `serve`, and `panel-user add` for operators.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::Config;
use crate::config::ConfigArgs;

#[derive(Parser)]
#[command(
    name = "thingline",
    version,
    about = "Self-hosted IoT platform server, wire-compatible with thethings.iO API v2"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded SQLite store and a generated TLS certificate by default).
    Serve(ConfigArgs),
    /// Manage panel (operator) accounts.
    PanelUser {
        #[command(subcommand)]
        action: PanelUserAction,
    },
}

#[derive(Subcommand)]
enum PanelUserAction {
    /// Create a panel account in the configured store.
    Add {
        /// Email of the account.
        #[arg(long)]
        email: String,
        /// Password (or set THINGLINE_NEW_PANEL_PASSWORD to keep it out of the shell history).
        #[arg(long, env = "THINGLINE_NEW_PANEL_PASSWORD", hide_env_values = true)]
        password: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> ExitCode {
    fixed_mmap_threshold();
    let cli = Cli::parse();
    let (config_args, action) = match cli.command {
        Command::Serve(args) => (args, None),
        Command::PanelUser { action: PanelUserAction::Add { email, password, config } } => {
            (config, Some((email, password)))
        }
    };
    let config = match Config::resolve(config_args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("thingline: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    crate::logging::init(&config.log, config.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("thingline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match action {
        None => runtime.block_on(serve(config)),
        Some((email, password)) => runtime.block_on(add_panel_user(config, &email, &password)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("thingline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = crate::start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down: draining connections and flushing writes");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn add_panel_user(config: Config, email: &str, password: &str) -> anyhow::Result<()> {
    // Checked before anything is opened or created.
    if let Err(e) = thingline_core::email::normalize_email(email) {
        anyhow::bail!("--email {email:?}: {}", e.public_message());
    }
    crate::install_crypto_provider();
    std::fs::create_dir_all(&config.data_dir)?;
    let store = thingline_store::open(&config.store_url, &Default::default()).await?;
    let platform = crate::platform::Platform::new(
        store,
        thingline_bus::InProcessBus::new(thingline_bus::Notifier::new(1)),
        Default::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    let result = platform.create_panel_user(email, password).await;
    platform.store().close().await;
    let user = result.map_err(|e| anyhow::anyhow!(e.public_message()))?;
    println!("created panel user {}", user.email);
    Ok(())
}

/// Makes glibc serve every allocation of 1 MiB or more with its own mapping, returned to the OS
/// when freed. Without it glibc raises that threshold after the first large free, and the 19 MiB
/// blocks of each Argon2 hash then stay in the allocator arenas of the blocking threads: a burst
/// of registrations left the server at 600 MB resident for good.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called first thing in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
