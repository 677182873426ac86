//! Helpers of the tests on the local node (operator/tests/in_cluster.rs): kubectl, polling,
//! and an HTTP server on the node address that pods reach (directly or through a Service).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcall_tests::ControlPlane;
use mcall_tests::node::NODE_IP;
use serde_json::Value;

pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("command starts")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// kubectl; its stdout, panicking with its output on failure.
pub fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    let out = run({
        let mut cmd = plane.kubectl();
        cmd.args(args);
        cmd
    });
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn kubectl_apply(plane: &ControlPlane, namespace: &str, manifest: &str) {
    let mut apply = plane.kubectl();
    apply.args(["-n", namespace, "apply", "-f", "-"]);
    let out = mcall_tests::run_with_stdin(apply, manifest.as_bytes()).expect("kubectl starts");
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
}

/// Polls `check` every 200 ms until it returns Some; panics naming `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    eventually_or(what, timeout, check).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Like [`eventually`], `None` after `timeout`.
pub fn eventually_or<T>(
    _what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn task_status(plane: &ControlPlane, namespace: &str, name: &str) -> Value {
    let json = kubectl(
        plane,
        &["-n", namespace, "get", "mcalltask", name, "-o", "json"],
    );
    serde_json::from_str::<Value>(&json).unwrap()["status"].clone()
}

pub fn wait_phase(plane: &ControlPlane, namespace: &str, name: &str) -> Value {
    eventually(&format!("{name} to end"), Duration::from_secs(60), || {
        let status = task_status(plane, namespace, name);
        matches!(status["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(status)
    })
}

/// An HTTP server on the node address (reachable from pods): path → times requested.
pub type Seen = Arc<Mutex<HashMap<String, usize>>>;

pub fn recorder() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let port = serve_on_node(move |path| {
        *log.lock().unwrap().entry(path).or_default() += 1;
        true
    });
    (port, seen)
}

/// An HTTP server on the node address that answers 503 until `open` is set, 200 after: a
/// command in a pod waits on it (`until wget …`) so that it cannot end before the test lets it.
pub fn gate() -> (u16, Arc<AtomicBool>) {
    let open = Arc::new(AtomicBool::new(false));
    let opened = open.clone();
    let port = serve_on_node(move |_| opened.load(Ordering::SeqCst));
    (port, open)
}

/// Serves HTTP on the node address, one request per connection: `answer(path)` says 200 or 503.
fn serve_on_node(answer: impl Fn(String) -> bool + Send + 'static) -> u16 {
    let listener = TcpListener::bind((NODE_IP, 0)).expect("bind on the node address");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            // A client that sends nothing does not hold up the others for long.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            let response: &[u8] = match answer(path) {
                true => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                false => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            };
            let _ = stream.write_all(response);
        }
    });
    port
}

/// A Service `recorder` on port 80 whose endpoint is the recorder at the node address.
pub fn recorder_service(port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: recorder
spec:
  ports: [{{name: http, port: 80, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: recorder-node
  labels:
    kubernetes.io/service-name: recorder
addressType: IPv4
endpoints:
  - addresses: ["{NODE_IP}"]
ports:
  - name: http
    port: {port}
    protocol: TCP
"#
    )
}

/// Waits until kube-proxy routes Service `namespace/name` (its iptables rules name it): until
/// then its cluster IP leads nowhere, as in any cluster right after a Service is created.
pub fn wait_routed(namespace: &str, name: &str) {
    let comment = format!("{namespace}/{name}:");
    eventually(
        &format!("kube-proxy to route {namespace}/{name}"),
        Duration::from_secs(30),
        || {
            let out = run({
                let mut cmd = Command::new("iptables-save");
                cmd.args(["-t", "nat"]);
                cmd
            });
            String::from_utf8_lossy(&out.stdout)
                .contains(&comment)
                .then_some(())
        },
    );
}

pub fn count(seen: &Seen, path: &str) -> usize {
    seen.lock().unwrap().get(path).copied().unwrap_or(0)
}
