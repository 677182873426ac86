//! The `mcall` binary: `mcall operator` runs the controllers, `mcall run -f` runs one task locally.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use mcall::config::{CommandPolicy, ExecutorDefaults, LeaseConfig, OperatorConfig};
use mcall::controller::Clients;
use mcall::controller::lease::Leading;
use mcall::metrics::Metrics;
use mcall::metrics_auth::cache::CachePolicy;
use mcall::metrics_auth::{self, ApiReviewer, CertSource, Gate};
use mcall::server::{PlainMetrics, Readiness};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "mcall",
    version,
    about = "Checks and small jobs as Kubernetes objects"
)]
struct Cli {
    /// DEBUG, INFO, WARN or ERROR.
    #[arg(long, env = "LOG_LEVEL", default_value = "INFO", global = true)]
    log_level: String,
    /// json or text.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers.
    Operator(Box<OperatorArgs>),
    /// Run a McallTask file locally, without a cluster; exit 0 on success, 1 on failure, 2 when
    /// the file cannot be run (missing, not YAML, invalid spec).
    Run {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct OperatorArgs {
    /// Kubeconfig; in-cluster config or $KUBECONFIG when absent.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespaces to watch, comma-separated; all when empty.
    #[arg(long, env = "MCALL_WATCH_NAMESPACES", default_value = "")]
    namespaces: String,
    /// Namespaces where cmd tasks may run, comma-separated, or `*`; none when empty.
    #[arg(long, env = "MCALL_COMMAND_NAMESPACES", default_value = "")]
    command_namespaces: String,
    /// Executions running at once across all tasks.
    #[arg(long, env = "MCALL_MAX_CONCURRENT_EXECUTIONS", default_value_t = 32)]
    max_concurrent_executions: usize,
    /// Seconds a task waits for a missing dependency before it is Skipped.
    #[arg(long, env = "MCALL_DEPENDENCY_GRACE_SECONDS", default_value_t = 60)]
    dependency_grace_seconds: u64,
    /// Where commands of tasks that name no executor run: Process or Pod.
    #[arg(long, env = "MCALL_DEFAULT_EXECUTOR", default_value = "Process", value_parser = ["Process", "Pod"])]
    default_executor: String,
    /// The image of command pods whose executor names none.
    #[arg(long, env = "MCALL_EXECUTOR_IMAGE", default_value = "")]
    executor_image: String,
    /// Let workflow steps use McallTasks of other namespaces as templates (`taskRef.namespace`).
    #[arg(long, env = "MCALL_ALLOW_CROSS_NAMESPACE_TEMPLATES")]
    allow_cross_namespace_templates: bool,
    /// Seconds running executions may finish after SIGTERM before they are cancelled.
    #[arg(long, env = "MCALL_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    shutdown_grace_seconds: u64,
    /// Port of /healthz, /readyz and, unless --metrics-secure, /metrics (plain HTTP).
    #[arg(long, env = "MCALL_METRICS_PORT", default_value_t = 8080)]
    port: u16,
    /// Serve /metrics over HTTPS on --metrics-secure-port, only to callers whose bearer token
    /// passes a TokenReview and a SubjectAccessReview (get on /metrics); --port then serves
    /// /healthz and /readyz only.
    #[arg(long, env = "MCALL_METRICS_SECURE")]
    metrics_secure: bool,
    /// Port of the secured /metrics.
    #[arg(long, env = "MCALL_METRICS_SECURE_PORT", default_value_t = 8443)]
    metrics_secure_port: u16,
    /// The secured metrics' certificate (PEM, leaf first), read at start; a self-signed one
    /// made at start when absent.
    #[arg(long, env = "MCALL_METRICS_CERT_FILE")]
    metrics_cert_file: Option<PathBuf>,
    /// The private key of --metrics-cert-file (PEM).
    #[arg(long, env = "MCALL_METRICS_KEY_FILE")]
    metrics_key_file: Option<PathBuf>,
    #[arg(long, env = "MCALL_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// This replica's name, for Events.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Namespace of the operator's Lease (the first watched namespace, or `default`, if unset).
    #[arg(long, env = "MCALL_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Contend for the Lease and lead only while holding it (run several replicas); false: this
    /// process is the only operator.
    #[arg(long, env = "MCALL_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the operator's Lease.
    #[arg(long, env = "MCALL_LEASE_NAME", default_value = "mcall-operator")]
    lease_name: String,
    /// How long a renewal of the Lease vouches for the leader (whole seconds).
    #[arg(long, env = "MCALL_LEASE_DURATION_SECONDS", default_value_t = 2)]
    lease_duration_seconds: u64,
    /// A leader that has not renewed the Lease for this long stops leading (ms; shorter than the
    /// lease duration).
    #[arg(long, env = "MCALL_LEASE_RENEW_DEADLINE_MS", default_value_t = 1500)]
    lease_renew_deadline_ms: u64,
    /// How often the leader renews the Lease and a follower looks at it (ms).
    #[arg(long, env = "MCALL_LEASE_RETRY_PERIOD_MS", default_value_t = 500)]
    lease_retry_period_ms: u64,
    /// The admission webhook's certificate (PEM, chain first); the webhook is served only when
    /// set. Read again whenever the file changes.
    #[arg(long, env = "MCALL_WEBHOOK_CERT_FILE")]
    webhook_cert_file: Option<PathBuf>,
    /// The private key of that certificate (PEM).
    #[arg(long, env = "MCALL_WEBHOOK_KEY_FILE")]
    webhook_key_file: Option<PathBuf>,
    /// Address of the admission webhook (HTTPS).
    #[arg(long, env = "MCALL_WEBHOOK_ADDRESS", default_value = "0.0.0.0:9443")]
    webhook_address: SocketAddr,
}

/// Exit code of a command that could not do its work because of what it was given: a flag or
/// environment variable (clap's usage errors use it too), or for `mcall run` the file (missing,
/// not YAML, not a valid McallTask). `mcall run` keeps 1 for "the task ran and failed".
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure { error, code }) => {
            // One line whatever RUST_BACKTRACE says: these are the user's mistakes (a missing
            // file, malformed YAML, an invalid spec), not the program's; a panic still shows
            // its backtrace.
            eprintln!("error: {}", one_line(&error));
            ExitCode::from(code)
        }
    }
}

/// An error that ends `mcall`, with the exit code it ends with.
struct Failure {
    error: anyhow::Error,
    code: u8,
}

fn exit_with(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { error, code }
}

fn run(cli: Cli) -> std::result::Result<ExitCode, Failure> {
    // Traces for the operator only; dropped last, after the runtime: flushes the queued spans.
    let traces = matches!(cli.command, Command::Operator(_));
    let _telemetry = mcall::telemetry::init(&cli.log_level, &cli.log_format, traces)
        .map_err(exit_with(EXIT_USAGE))?;
    // One thread: the operator waits on the API server and on child processes, and its own CPU
    // use is a fraction of a core; a single thread keeps one allocator arena and one stack.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(exit_with(1))?;
    match cli.command {
        Command::Run { file } => {
            let ok = runtime
                .block_on(mcall::local_run::run(&file))
                .map_err(exit_with(EXIT_USAGE))?;
            Ok(ExitCode::from(if ok { 0 } else { 1 }))
        }
        Command::Operator(args) => {
            runtime.block_on(operator(*args)).map_err(exit_with(1))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The error and its causes on one line, `context: cause: cause`, without a backtrace. A
/// message's own lines are joined, and a cause is left out when the message before it already
/// says it (many errors repeat their source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let text = text.strip_prefix("error: ").unwrap_or(&text).to_owned();
        if text.is_empty() || parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Requests to the API server in flight at once (watches count only until their response starts).
const MAX_API_REQUESTS_IN_FLIGHT: usize = 16;

async fn operator(args: OperatorArgs) -> Result<()> {
    // Before connecting: a mistake in these flags is the first error shown.
    let secure = secure_metrics(&args).await?;
    let kube_config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    let (bind, port) = (args.bind_address, args.port);
    let webhook = webhook(&args).await?;
    let config = operator_config(args);
    tracing::info!(?config, "starting the operator");
    let leading = mcall::controller::leading_for(&config);
    let metrics = Metrics::default();
    let clients = clients(kube_config.clone(), &leading, &metrics)?;
    let shutdown = shutdown_on_signal();
    let readiness = Readiness::default();
    let plain_metrics = if secure.is_some() {
        PlainMetrics::Withheld
    } else {
        PlainMetrics::Served
    };
    let (address, ready) = (SocketAddr::new(bind, port), readiness.clone());
    let server = mcall::server::serve(
        address,
        ready,
        metrics.clone(),
        plain_metrics,
        shutdown.clone(),
    );
    let server = tokio::spawn(server);
    // The webhook stops last, once the controllers have: a terminating pod stays in the
    // Service's endpoints for a moment, and with failurePolicy Fail a webhook that stopped
    // first would refuse what the API server sends there meanwhile.
    let webhook_stop = CancellationToken::new();
    let webhook = webhook
        .map(|webhook| spawn_webhook(webhook, &kube_config, &metrics, &webhook_stop))
        .transpose()?;
    let secure = match secure {
        Some(secure) => Some(serve_secure_metrics(
            secure,
            kube_config,
            &metrics,
            &shutdown,
        )?),
        None => None,
    };
    tokio::spawn(mcall::memory::return_freed_memory(shutdown.clone()));
    let ran = mcall::controller::run_with(
        clients,
        leading,
        config,
        readiness,
        metrics,
        shutdown.clone(),
    );
    let ran = ran.await;
    shutdown.cancel();
    webhook_stop.cancel();
    server.await??;
    if let Some(webhook) = webhook {
        webhook.await??;
    }
    if let Some(secure) = secure {
        secure.await??;
    }
    ran
}

/// Serves the admission webhook until `stop`, with a client of its own: admission's reads
/// never wait behind the controllers'.
fn spawn_webhook(
    (listener, cert, settings): (
        tokio::net::TcpListener,
        std::sync::Arc<mcall::webhook::ReloadingCert>,
        mcall::webhook::Settings,
    ),
    kube_config: &kube::Config,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let client = kube::client::ClientBuilder::try_from(kube_config.clone())?
        .with_layer(&metrics.api_layer())
        .build();
    Ok(tokio::spawn(mcall::webhook::serve(
        listener,
        cert,
        settings,
        Some(client),
        stop.clone(),
    )))
}

/// Serves the secured metrics until `shutdown`, each scraper reviewed through the API server.
fn serve_secure_metrics(
    (listener, tls): (tokio::net::TcpListener, rustls::ServerConfig),
    kube_config: kube::Config,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let gate = Gate::new(review_client(kube_config, metrics)?, CachePolicy::default());
    let serving = metrics_auth::serve(
        listener,
        tls,
        metrics.clone(),
        Arc::new(gate),
        shutdown.clone(),
    );
    Ok(tokio::spawn(serving))
}

/// The admission webhook's listener, certificate and settings, when a certificate is given.
/// A missing or unreadable file, or a port in use, stops the operator at start.
async fn webhook(
    args: &OperatorArgs,
) -> Result<
    Option<(
        tokio::net::TcpListener,
        std::sync::Arc<mcall::webhook::ReloadingCert>,
        mcall::webhook::Settings,
    )>,
> {
    let given = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    let (cert, key) = match (
        given(&args.webhook_cert_file),
        given(&args.webhook_key_file),
    ) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => anyhow::bail!("--webhook-cert-file and --webhook-key-file go together"),
    };
    let cert = mcall::webhook::ReloadingCert::load(&cert, &key)?;
    let listener = tokio::net::TcpListener::bind(args.webhook_address)
        .await
        .with_context(|| format!("binding the webhook to {}", args.webhook_address))?;
    let settings = mcall::webhook::Settings {
        cross_namespace_templates: args.allow_cross_namespace_templates,
        commands: CommandPolicy::parse(&args.command_namespaces),
    };
    Ok(Some((listener, std::sync::Arc::new(cert), settings)))
}

/// With --metrics-secure, the bound HTTPS port and its TLS configuration: a port in use or an
/// unreadable certificate stops the operator at start, not at the first scrape.
async fn secure_metrics(
    args: &OperatorArgs,
) -> Result<Option<(tokio::net::TcpListener, rustls::ServerConfig)>> {
    let source = CertSource::from_flags(
        args.metrics_cert_file.clone(),
        args.metrics_key_file.clone(),
    )?;
    if !args.metrics_secure {
        if source != CertSource::SelfSigned {
            anyhow::bail!("--metrics-cert-file and --metrics-key-file need --metrics-secure");
        }
        return Ok(None);
    }
    let tls = metrics_auth::server_config(&source)?;
    let addr = SocketAddr::new(args.bind_address, args.metrics_secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the secured metrics to {addr}"))?;
    Ok(Some((listener, tls)))
}

/// The reviews' client: not fenced (every replica serves metrics, and a review is a create),
/// its requests counted in `metrics`.
fn review_client(kube_config: kube::Config, metrics: &Metrics) -> Result<ApiReviewer> {
    let client = kube::client::ClientBuilder::try_from(kube_config)?
        .with_layer(&metrics.api_layer())
        .build();
    Ok(ApiReviewer::new(client))
}

fn operator_config(args: OperatorArgs) -> OperatorConfig {
    OperatorConfig {
        watch_namespaces: args
            .namespaces
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        commands: CommandPolicy::parse(&args.command_namespaces),
        max_concurrent_executions: args.max_concurrent_executions,
        dependency_grace: Duration::from_secs(args.dependency_grace_seconds),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
        instance: args.pod_name,
        lease_namespace: args.lease_namespace.filter(|s| !s.is_empty()),
        lease: LeaseConfig {
            name: args.lease_name,
            leader_election: args.leader_election,
            duration: Duration::from_secs(args.lease_duration_seconds),
            renew_deadline: Duration::from_millis(args.lease_renew_deadline_ms),
            retry_period: Duration::from_millis(args.lease_retry_period_ms),
        },
        cross_namespace_templates: args.allow_cross_namespace_templates,
        executor: ExecutorDefaults {
            pods: args.default_executor == "Pod",
            image: Some(args.executor_image).filter(|i| !i.is_empty()),
        },
    }
}

/// The operator's client, whose writes are fenced by `leading`, and the Lease's own; both count
/// their requests in `metrics`.
fn clients(kube_config: kube::Config, leading: &Leading, metrics: &Metrics) -> Result<Clients> {
    let lease = kube::client::ClientBuilder::try_from(kube_config.clone())?
        .with_layer(&metrics.api_layer())
        .build();
    // The client speaks HTTP/1.1, so every request in flight holds a connection with its TLS
    // state and buffers: bounding them bounds memory and keeps bursts off the API server. The
    // fence refuses a write before it is sent (it may briefly hold a slot). Requests are counted nearest the wire,
    // once they have their turn.
    let api = kube::client::ClientBuilder::try_from(kube_config)?
        .with_layer(&metrics.api_layer())
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(
            MAX_API_REQUESTS_IN_FLIGHT,
        ))
        .with_layer(&mcall::fence::layer(leading.clone()))
        .build();
    Ok(Clients { api, lease })
}

/// Cancelled on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });
    shutdown
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use anyhow::Context as _;

    #[test]
    fn one_line_joins_the_chain_and_drops_repeated_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = Err::<(), _>(io)
            .context("failed to read x: no such file")
            .context("reading x")
            .unwrap_err();
        assert_eq!(
            one_line(&error),
            "reading x: failed to read x: no such file"
        );
    }

    #[test]
    fn one_line_joins_the_lines_of_a_message() {
        let error = anyhow::anyhow!("error: line 4 column 5: bad\n  --> here\n\n")
            .context("f is not a McallTask");
        assert_eq!(
            one_line(&error),
            "f is not a McallTask: line 4 column 5: bad --> here"
        );
    }
}
