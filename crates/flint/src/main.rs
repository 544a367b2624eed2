//! The `flint` command: `serve` runs the server on the embedded store, `import` loads
//! Bundles and NDJSON into a data directory, `config` prints the documented defaults.

mod config;
mod import;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use flint_engine::Engine;
use flint_http::HttpConfig;
use flint_store_sqlite::SqliteStore;

use config::Config;

// glibc's malloc showed as a tenth of the import and write profiles; mimalloc is made for
// many small, short-lived allocations across threads, which is what JSON handling does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "flint", version, about = "Flint, a FHIR R4 server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// Configuration file (TOML); also FLINT_CONFIG.
    #[arg(long, env = "FLINT_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the embedded store (default ./flint-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the FHIR server.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Port to listen on (default 8080; 0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Address to listen on (default 127.0.0.1).
        #[arg(long)]
        host: Option<String>,
        /// Absolute base URL used in links and Location headers.
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Load transaction/batch/collection Bundles and NDJSON files or folders into the store.
    Import {
        #[command(flatten)]
        common: Common,
        /// Files or folders (*.json Bundles or resources, *.ndjson).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Bundles processed at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Print the documented default configuration.
    Config,
    /// Evaluate a FHIRPath expression against a resource and print the result as typed JSON.
    Fhirpath {
        /// The expression, e.g. `Patient.name.given.first()`.
        expression: String,
        /// A JSON resource file; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// An environment variable `%name`: `--var name=value`, the value JSON or a string.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
}

fn load(common: &Common) -> Result<Config, String> {
    let mut config = Config::load(common.config.as_deref(), std::env::vars())?;
    if let Some(dir) = &common.data_dir {
        config.storage.data_dir = dir.clone();
    }
    Ok(config)
}

fn init_logging(level: &str) {
    let level = level.parse().unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        Command::Serve {
            common,
            port,
            host,
            base_url,
        } => load(&common).and_then(|mut config| {
            if let Some(port) = port {
                config.server.port = port;
            }
            if let Some(host) = host {
                config.server.host = host;
            }
            if let Some(base) = base_url {
                config.server.base_url = base;
            }
            init_logging(&config.log.level);
            runtime()?.block_on(serve(config))
        }),
        Command::Fhirpath {
            expression,
            file,
            vars,
        } => fhirpath(&expression, file.as_deref(), &vars),
        Command::Import {
            common,
            paths,
            concurrency,
        } => load(&common).and_then(|config| {
            init_logging("warn");
            runtime()?.block_on(import::run(&config, &paths, concurrency.max(1)))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("flint: {message}");
            ExitCode::FAILURE
        }
    }
}

fn fhirpath(
    expression: &str,
    file: Option<&std::path::Path>,
    vars: &[String],
) -> Result<(), String> {
    use std::io::Read;
    let text = match file {
        Some(path) if path != std::path::Path::new("-") => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            s
        }
    };
    let resource: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("the input is not JSON: {e}"))?;
    let mut variables = Vec::new();
    for var in vars {
        let (name, value) = var
            .split_once('=')
            .ok_or_else(|| format!("--var {var}: expected NAME=VALUE"))?;
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        variables.push((name.to_string(), value));
    }
    let result =
        flint_fhirpath::evaluate_to_json(expression, &resource, &variables).map_err(|e| {
            e.issues
                .iter()
                .map(|i| i.diagnostics.clone())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&result).unwrap_or_default()
    );
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// The engine's limits, from the configuration.
fn limits(config: &Config) -> flint_engine::Limits {
    let ms = std::time::Duration::from_millis;
    let mut lanes = flint_engine::lanes::LaneLimits {
        quick_in_flight: config.server.max_requests_in_flight,
        costly_queue: config.server.costly_queue,
        ..Default::default()
    };
    if config.server.costly_threads > 0 {
        lanes.costly_threads = config.server.costly_threads;
    }
    flint_engine::Limits {
        search_timeout: ms(config.search.timeout_ms),
        async_search_timeout: ms(config.search.async_timeout_ms),
        default_count: config.search.default_count,
        max_count: config.search.max_count,
        max_included: config.search.max_include,
        history_default_count: config.history.default_page_size,
        history_max_count: config.history.max_page_size,
        async_budget: ms(config.server.async_budget_ms),
        async_kept: std::time::Duration::from_secs(
            config.server.async_results_kept_hours.saturating_mul(3600),
        ),
        export_dir: Some(config.storage.data_dir.join("exports")),
        node: if config.server.node_id.is_empty() {
            flint_engine::jobs::host_name()
        } else {
            config.server.node_id.clone()
        },
        lanes,
        apps: flint_engine::custom::AppLimits {
            enabled: config.apps.enabled,
            max_operations_per_app: config.apps.max_operations_per_app as usize,
            operation_timeout: std::time::Duration::from_secs(
                config.apps.operation_timeout_seconds.max(1),
            ),
            trusted_roots_pem: None,
            sandbox: flint_sandbox::Limits {
                workers: if config.apps.sandbox.workers == 0 {
                    std::thread::available_parallelism().map_or(2, usize::from)
                } else {
                    config.apps.sandbox.workers
                },
                max_memory_bytes: usize::try_from(config.apps.sandbox.max_memory_mb)
                    .unwrap_or(64)
                    .saturating_mul(1024 * 1024),
                max_execution: ms(config.apps.sandbox.max_execution_ms),
                niceness: config.apps.sandbox.niceness.clamp(0, 19),
                ..Default::default()
            },
        },
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let mut limits = limits(&config);
    if !config.apps.tls_ca_file.is_empty() {
        let path = &config.apps.tls_ca_file;
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read apps.tls_ca_file {path}: {e}"))?;
        let n = flint_engine::custom::check_trusted_roots(&pem)
            .map_err(|e| format!("apps.tls_ca_file {path}: {e}"))?;
        tracing::info!(certificates = n, file = %path, "HTTP handlers trust these roots only");
        limits.apps.trusted_roots_pem = Some(pem);
    }
    let store = SqliteStore::open(&config.storage.data_dir)
        .map_err(|e| format!("cannot open the store: {e}"))?;
    // Parse the embedded definitions now rather than on the first request.
    let model = flint_fhir::model::r4();
    tracing::debug!(types = model.resource_types().len(), "definitions loaded");
    let engine = Engine::with(
        store.clone(),
        limits,
        Box::new(flint_engine::paging::SystemClock),
    );
    let http = HttpConfig {
        base_url: (!config.server.base_url.is_empty()).then(|| config.server.base_url.clone()),
        context_path: config.server.context_path.clone(),
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: std::time::Duration::from_millis(config.server.body_timeout_ms),
    };
    engine
        .start()
        .await
        .map_err(|e| format!("cannot start the request core: {e}"))?;
    let app = flint_http::router(Arc::clone(&engine), http);
    let address = format!("{}:{}", config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this line to learn the port.
    println!(
        "Flint listening on http://{local}{}",
        config.server.context_path
    );
    tracing::info!(address = %local, data_dir = %config.storage.data_dir.display(), "Flint started");
    let limits = flint_http::ServeLimits {
        header_read_timeout: std::time::Duration::from_millis(config.server.header_timeout_ms),
        ..Default::default()
    };
    // On SIGTERM or Ctrl-C: stop accepting, interrupt the work in flight (it answers 503),
    // then wait for the connections to finish.
    let stopping = Arc::clone(&engine);
    let shutdown = async move {
        shutdown_signal().await;
        stopping.stop();
    };
    flint_http::serve(listener, app, limits, shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))?;
    // What the custom operations' audit queue holds is written before the store closes.
    engine.flush_audit();
    store.close();
    tracing::info!("Flint stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
