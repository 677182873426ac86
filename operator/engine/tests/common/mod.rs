//! Shared by the engine's integration tests: a loopback HTTP server with canned answers, request
//! builders, and process inspection.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcall_engine::{EngineEvent, Limits, TaskKind, TaskOutcome, TaskPlan, TaskRequest, execute};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering by path:
///
/// - `/ok` → 200 `hello ok`
/// - `/status/<code>` → that status, body `status <code>`
/// - `/redirect/<n>` → 302 to `/redirect/<n-1>`; `/redirect/0` → 200 `arrived`
/// - `/slow/<ms>` → 200 `slow` after that many milliseconds
/// - `/headers` → 200 with `X-Version: 2` and a JSON content type
/// - `/json` → 200 with a JSON document
/// - `/echo` → 200 echoing the request body
/// - `/lines` → 200 with three lines
/// - `/big/<bytes>` → 200 with that many bytes of `x` (chunks, never all in memory)
/// - anything else → 404
pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, recorded).await;
                });
            }
        });
        TestServer { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests reached `path` (exactly).
    pub fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, recorded: Arc<Mutex<Vec<Recorded>>>) -> std::io::Result<()> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    recorded.lock().unwrap().push(Recorded {
        method,
        path: path.clone(),
        headers,
        body: body.clone(),
    });

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["ok"] => respond(&mut stream, 200, &[], "hello ok").await,
        ["status", code] => {
            let code: u16 = code.parse().unwrap_or(500);
            respond(&mut stream, code, &[], &format!("status {code}")).await
        }
        ["redirect", "0"] => respond(&mut stream, 200, &[], "arrived").await,
        ["redirect", n] => {
            let next = n.parse::<u32>().unwrap_or(1) - 1;
            let location = format!("/redirect/{next}");
            respond(&mut stream, 302, &[("Location", &location)], "").await
        }
        ["slow", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(1000))).await;
            respond(&mut stream, 200, &[], "slow").await
        }
        ["headers"] => {
            let headers = [
                ("X-Version", "2"),
                ("Content-Type", "application/json; charset=utf-8"),
            ];
            respond(&mut stream, 200, &headers, "{}").await
        }
        ["json"] => {
            let json = r#"{"status":"up","count":3,"checks":[{"name":"db","ok":true},{"name":"cache","ok":false}]}"#;
            respond(
                &mut stream,
                200,
                &[("Content-Type", "application/json")],
                json,
            )
            .await
        }
        ["echo"] => respond(&mut stream, 200, &[], &body).await,
        ["lines"] => respond(&mut stream, 200, &[], "one\ntwo\nthree\n").await,
        ["big", n] => {
            let total: usize = n.parse().unwrap_or(0);
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len());
                stream.write_all(&chunk[..n]).await?;
                left -= n;
            }
            stream.shutdown().await
        }
        _ => respond(&mut stream, 404, &[], "not found").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {status} Canned\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A request with a test-sized timeout.
pub fn request(kind: TaskKind, input: impl Into<String>) -> TaskRequest {
    let mut req = TaskRequest::new(kind, input);
    req.timeout = Duration::from_secs(10);
    req
}

/// Limits with fast retries and a short kill grace, so tests stay quick.
pub fn limits() -> Limits {
    Limits {
        kill_grace: Duration::from_millis(500),
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(200),
        ..Limits::default()
    }
}

/// Compiles and runs `req` without cancellation, ignoring events.
pub async fn run(req: TaskRequest) -> TaskOutcome {
    run_with(req, &limits()).await
}

pub async fn run_with(req: TaskRequest, limits: &Limits) -> TaskOutcome {
    let plan = TaskPlan::compile(req).expect("the request compiles");
    execute(
        &plan,
        limits,
        CancellationToken::new(),
        &|_: EngineEvent| {},
    )
    .await
}

/// PIDs of live (non-zombie) processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Waits up to `within` for a process with `marker` to run: the anchor for acting on a running
/// command (a fixed delay would act before the spawn on a busy machine, and the test would pass
/// without proving anything).
pub async fn wait_for_process_with(marker: &str, within: Duration) {
    let until = std::time::Instant::now() + within;
    while processes_with(marker).is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "no process with {marker:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits up to `within` for no process with `marker` to be left.
pub async fn assert_no_process_with(marker: &str, within: Duration) {
    let until = std::time::Instant::now() + within;
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "processes with {marker:?} survived: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
