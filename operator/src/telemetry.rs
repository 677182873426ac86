//! Logging: `LOG_LEVEL` (DEBUG, INFO, WARN, ERROR; default INFO) and `LOG_FORMAT` (json, text).

use tracing_subscriber::EnvFilter;

pub fn init(level: &str, format: &str) -> anyhow::Result<()> {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "INFO" | "" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" => "error",
        other => anyhow::bail!("LOG_LEVEL {other:?} is not one of DEBUG, INFO, WARN, ERROR"),
    };
    // Our crates at the chosen level; libraries one step quieter unless debugging.
    let filter = EnvFilter::new(format!(
        "warn,mcall={level},mcall_engine={level},kube_runtime={}",
        if level == "debug" { "debug" } else { "warn" }
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        "text" | "" => builder.init(),
        other => anyhow::bail!("LOG_FORMAT {other:?} is not json or text"),
    }
    Ok(())
}
