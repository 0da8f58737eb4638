//! The `thingline` command line: `serve`, and for operators `panel-user add` and `migrate`
//! (SQLite to PostgreSQL).

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
    /// Copy an installation from its SQLite store into an empty PostgreSQL store.
    ///
    /// Stop the server first. Resumable: run it again after an interruption. Checks the row
    /// counts of every table at the end and fails on any difference. See docs/scale-out.md.
    Migrate(MigrateArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API (the one served at /v2/openapi.json), without
    /// a server: `thingline openapi > thingline.json`.
    Openapi,
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// The SQLite store to copy: `sqlite://PATH` (e.g. sqlite://thingline-data/thingline.db).
    #[arg(long, value_name = "sqlite://PATH")]
    from: String,
    /// The PostgreSQL store to copy into: `postgres://…`, an empty database or schema (or the one
    /// an interrupted migrate of the same source left, which it resumes).
    #[arg(long, value_name = "postgres://…")]
    to: String,
    /// Rows per batch (1 to 1000000); each batch is one transaction in the target.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch: u32,
    /// Milliseconds between progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 10_000, hide = true)]
    progress_every_ms: u64,
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
        Command::Migrate(args) => return migrate(args),
        Command::Openapi => return print_openapi(),
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
    crate::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("thingline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `thingline migrate`: the copy with its progress on stderr, then the table of counts on stdout.
fn migrate(args: MigrateArgs) -> ExitCode {
    let code = run_migrate(args);
    crate::logging::flush();
    code
}

fn run_migrate(args: MigrateArgs) -> ExitCode {
    crate::logging::init(&std::env::var("THINGLINE_LOG").unwrap_or_else(|_| "warn".into()), false);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("thingline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = thingline_store::migrate::Options {
        batch: args.batch as usize,
        progress_every: std::time::Duration::from_millis(args.progress_every_ms),
    };
    let started = std::time::Instant::now();
    let report = match runtime.block_on(thingline_store::migrate::migrate(&args.from, &args.to, &options)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("thingline migrate: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render());
    let mismatches = report.mismatches();
    if mismatches.is_empty() {
        println!(
            "migrated in {:.1} s: every table holds as many rows in PostgreSQL as in SQLite",
            started.elapsed().as_secs_f64()
        );
        ExitCode::SUCCESS
    } else {
        let names: Vec<&str> = mismatches.iter().map(|t| t.table).collect();
        eprintln!(
            "thingline migrate: the row counts differ in {} (see above); the target is not a complete copy",
            names.join(", ")
        );
        ExitCode::FAILURE
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

/// `thingline openapi`: the document, pretty-printed, on stdout.
fn print_openapi() -> ExitCode {
    use std::io::Write;
    let written = crate::http::openapi::document()
        .to_pretty_json()
        .map_err(anyhow::Error::from)
        .and_then(|json| Ok(writeln!(std::io::stdout().lock(), "{json}")?));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
