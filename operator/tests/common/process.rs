//! The `mcall` binary as a process: started against the test's namespace, its health
//! endpoints, signals, exits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestEnv, plane};

pub const MCALL: &str = env!("CARGO_BIN_EXE_mcall");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

pub fn spawn_operator(env: &TestEnv, port: u16) -> Child {
    operator_command(env, port, 10)
        .stderr(Stdio::null())
        .spawn()
        .expect("mcall operator starts")
}

/// `mcall operator` for the test's namespace, with DEBUG logs.
pub fn operator_command(env: &TestEnv, port: u16, shutdown_grace_seconds: u32) -> Command {
    operator_command_as(plane().kubeconfig_path(), env, port, shutdown_grace_seconds)
}

/// `mcall operator` for the test's namespace with `kubeconfig`'s identity, with DEBUG logs.
pub fn operator_command_as(
    kubeconfig: &std::path::Path,
    env: &TestEnv,
    port: u16,
    shutdown_grace_seconds: u32,
) -> Command {
    let mut command = Command::new(MCALL);
    command
        .args(["operator", "--kubeconfig"])
        .arg(kubeconfig)
        .args([
            "--namespaces",
            &env.namespace,
            "--command-namespaces",
            &env.namespace,
        ])
        .args([
            "--port",
            &port.to_string(),
            "--bind-address",
            "127.0.0.1",
            "--shutdown-grace-seconds",
            &shutdown_grace_seconds.to_string(),
        ])
        .env("LOG_LEVEL", "DEBUG")
        .stdout(Stdio::null());
    command
}

pub fn wait_exit(operator: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = operator.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the operator did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(port, "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "/readyz never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_status(port, "/healthz"), Some(200));
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The chart's RBAC for a release in the test's namespace watching it, and a kubeconfig of the
/// release's ServiceAccount: the operator as the chart runs it, with only the generated RBAC.
pub async fn chart_identity(env: &TestEnv) -> std::path::PathBuf {
    let watch = format!("watchNamespaces={{{}}}", env.namespace);
    let plane = plane();
    plane.apply_chart_rbac(
        &env.namespace,
        &env.namespace,
        "mcall-operator",
        &["--set", &watch],
    );
    plane
        .service_account_kubeconfig(&env.namespace, "mcall-operator")
        .await
        .expect("a ServiceAccount kubeconfig")
}
