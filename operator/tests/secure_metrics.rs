//! Secured metrics on the real control plane (no node): the `mcall` binary with
//! `--metrics-secure`, running as the chart's ServiceAccount with only the chart's RBAC, serves
//! `/metrics` over HTTPS to the ServiceAccount bound to the chart's metrics-reader ClusterRole,
//! refuses everyone else (401 without a valid token, 403 without the right), and keeps only the
//! probes on its plain port.

mod common;

use std::process::{Child, Stdio};

use common::cluster::kubectl;
use common::process::*;
use common::*;

/// The release's name: the test's namespace, as in the other tests of the chart's RBAC.
fn fullname(env: &TestEnv) -> String {
    format!("{}-mcall-operator", env.namespace)
}

/// Renders the chart's `templates/metrics.yaml` with `metrics.secure=true` (the metrics Service
/// and the metrics-reader ClusterRole) for the test's release, and applies it.
fn apply_chart_metrics(env: &TestEnv) {
    let plane = plane();
    let rendered = plane
        .helm()
        .current_dir(root())
        .args(["template", &env.namespace, "helm/mcall-operator"])
        .args(["--namespace", &env.namespace])
        .args(["--show-only", "templates/metrics.yaml"])
        .args(["--set", "metrics.secure=true"])
        .output()
        .expect("helm starts");
    assert!(
        rendered.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut apply = plane.kubectl();
    apply.args(["apply", "-f", "-"]);
    let out = mcall_tests::run_with_stdin(apply, &rendered.stdout).expect("kubectl starts");
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ServiceAccounts `scraper` (bound to the chart's metrics-reader ClusterRole) and `nobody`
/// (bound to nothing), and a token of each.
fn scraper_and_nobody(env: &TestEnv) -> (String, String) {
    let (plane, ns) = (plane(), env.namespace.as_str());
    for name in ["scraper", "nobody"] {
        kubectl(plane, &["-n", ns, "create", "serviceaccount", name]);
    }
    kubectl(
        plane,
        &[
            "create",
            "clusterrolebinding",
            &format!("{ns}-scraper"),
            &format!("--clusterrole={}-metrics-reader", fullname(env)),
            &format!("--serviceaccount={ns}:scraper"),
        ],
    );
    let token = |name| kubectl(plane, &["-n", ns, "create", "token", name]);
    (token("scraper"), token("nobody"))
}

/// An HTTPS client that does not verify the certificate: the operator's is self-signed, made at
/// start, and a scraper accepts it with `insecure_skip_verify`.
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("an HTTPS client")
}

/// A GET of `https://127.0.0.1:<port>/metrics` with `token` as bearer: (status, body).
async fn scrape(port: u16, token: Option<&str>) -> (u16, String) {
    let mut request = client().get(format!("https://127.0.0.1:{port}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the secured port answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// Kills the operator when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn only_the_bound_scraper_reads_the_secured_metrics() {
    let env = test_env("secure-metrics").await;
    let identity = chart_identity(&env).await;
    apply_chart_metrics(&env);
    let (scraper, nobody) = scraper_and_nobody(&env);

    let (port, secure_port) = (free_port(), free_port());
    let operator = operator_command_as(&identity, &env, port, 10)
        .args(["--metrics-secure", "--metrics-secure-port"])
        .arg(secure_port.to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("mcall operator starts");
    let _operator = Killed(operator);
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .unwrap();

    assert_eq!(http_status(port, "/healthz"), Some(200));
    assert_eq!(
        http_status(port, "/metrics"),
        Some(404),
        "the plain port no longer serves /metrics"
    );

    let (status, body) = scrape(secure_port, None).await;
    assert_eq!(status, 401, "no token: {body}");
    let (status, body) = scrape(secure_port, Some("not-a-token")).await;
    assert_eq!(status, 401, "a token the API server refuses: {body}");
    let (status, body) = scrape(secure_port, Some(&nobody)).await;
    assert_eq!(status, 403, "a ServiceAccount without the right: {body}");
    for scrape_number in 1..=2 {
        // The second answer comes from the cache; it must be the same.
        let (status, body) = scrape(secure_port, Some(&scraper)).await;
        assert_eq!(status, 200, "scrape {scrape_number} as scraper: {body}");
        assert!(body.contains("mcall_build_info"), "{body}");
    }
    let (status, _) = scrape(secure_port, Some(&nobody)).await;
    assert_eq!(status, 403, "a cached refusal stays a refusal");
}

/// Polls the secured port until it answers a scrape (the operator's startup), or fails.
async fn first_answer(port: u16, token: &str) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let sent = client()
            .get(format!("https://127.0.0.1:{port}/metrics"))
            .bearer_auth(token)
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            return (status, response.text().await.expect("a body"));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the secured port never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// An operator whose identity may not create reviews cannot tell who scrapes: it answers with
/// an error naming the review, never with the metrics.
#[tokio::test]
async fn an_operator_without_the_review_rbac_refuses_with_an_error() {
    let env = test_env("secure-metrics-norbac").await;
    apply_chart_metrics(&env);
    let (scraper, _) = scraper_and_nobody(&env);
    // A ServiceAccount bound to nothing: its watches and reviews are all forbidden.
    let bare = plane()
        .service_account_kubeconfig(&env.namespace, "bare")
        .await
        .expect("a ServiceAccount kubeconfig");

    let (port, secure_port) = (free_port(), free_port());
    let operator = operator_command_as(&bare, &env, port, 10)
        .args(["--metrics-secure", "--metrics-secure-port"])
        .arg(secure_port.to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("mcall operator starts");
    let _operator = Killed(operator);

    let (status, body) = first_answer(secure_port, &scraper).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("TokenReview"), "{body}");
    assert!(!body.contains("mcall_build_info"), "{body}");
}
