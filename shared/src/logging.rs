//! Log setup: one JSON line per event (SAM sets `AWS_LAMBDA_LOG_FORMAT=JSON`), at the level Lambda
//! asks for, with the SDK, HTTP and runtime crates capped at INFO whatever that level is: at
//! DEBUG and TRACE they print whole request and response bodies, password hashes and tokens
//! included (ER-02).

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Dependencies that may log payloads below INFO.
const CHATTY: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_sdk",
    "aws_sigv4",
    "aws_smithy",
    "h2",
    "hyper",
    "lambda_http",
    "lambda_runtime",
    "rustls",
    "tower",
];

/// Installs the global subscriber on stdout, from `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`, a
/// level name) and `AWS_LAMBDA_LOG_FORMAT`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|raw| LevelFilter::from_str(&raw).ok())
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    init_with(level, json, std::io::stdout);
}

/// Installs the global subscriber with an explicit level, format and writer.
pub fn init_with<W>(level: LevelFilter, json: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let capped = level.min(LevelFilter::INFO);
    let filter = CHATTY
        .iter()
        .fold(Targets::new().with_default(level), |targets, target| {
            targets.with_target(*target, capped)
        });
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if json {
        registry
            .with(format.json().flatten_event(true).with_current_span(false))
            .try_init()
    } else {
        registry.with(format).try_init()
    };
    if installed.is_err() {
        tracing::debug!("a global log subscriber was already installed");
    }
}
