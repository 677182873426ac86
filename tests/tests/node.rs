//! The local node: Ready, runs pods, routes Services, serves cluster DNS, keeps pod traffic on
//! the machine. Needs root (it is the CI user here).

use std::process::Command;
use std::time::{Duration, Instant};

use mcall_tests::ControlPlane;
use mcall_tests::image::{
    Image, ImageArchive, Platform, ShellFiles, shell_recipe, write_archive_file,
};

/// The shared plane with a node, and the shell image (busybox) imported into it.
fn cluster() -> (&'static ControlPlane, &'static ImageArchive) {
    static SHELL: std::sync::OnceLock<ImageArchive> = std::sync::OnceLock::new();
    let plane = ControlPlane::shared_with_node();
    let shell = SHELL.get_or_init(|| {
        let recipe = shell_recipe(&ShellFiles::discover().expect("busybox-static"));
        let image = Image::build(&recipe, &Platform::host()).expect("shell image");
        let archive = write_archive_file(&image, &plane.dir().join("shell.tar")).expect("archive");
        plane.import_image(&archive).expect("import");
        archive
    });
    (plane, shell)
}

fn kubectl(plane: &ControlPlane, args: &[&str]) -> (bool, String) {
    let out = plane.kubectl().args(args).output().expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Polls `check` until it returns Some or `timeout` passes.
fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Pods are refused until the namespace's `default` ServiceAccount exists (ServiceAccount
/// admission); the controller manager creates it shortly after the namespace.
fn wait_for_default_service_account(plane: &ControlPlane, ns: &str) {
    eventually(
        "the default ServiceAccount",
        Duration::from_secs(30),
        || {
            kubectl(plane, &["-n", ns, "get", "serviceaccount", "default"])
                .0
                .then_some(())
        },
    );
}

fn shell_pod(name: &str, image: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: {image}
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", {script:?}]
"#
    )
}

fn run_pod(
    plane: &ControlPlane,
    shell: &ImageArchive,
    ns: &str,
    name: &str,
    script: &str,
) -> (String, String) {
    let manifest = plane.dir().join(format!("{ns}-{name}.yaml"));
    std::fs::write(
        &manifest,
        shell_pod(name, &shell.reference.to_string(), script),
    )
    .unwrap();
    wait_for_default_service_account(plane, ns);
    let (ok, out) = kubectl(
        plane,
        &["-n", ns, "apply", "-f", manifest.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let phase = loop {
        let (_, phase) = kubectl(
            plane,
            &[
                "-n",
                ns,
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.status.phase}",
            ],
        );
        if matches!(phase.as_str(), "Succeeded" | "Failed") {
            break phase;
        }
        if Instant::now() > deadline {
            let (_, describe) = kubectl(plane, &["-n", ns, "describe", "pod", name]);
            let dir = plane.node_dir().unwrap();
            let kubelet = std::fs::read_to_string(dir.join("kubelet.log")).unwrap_or_default();
            let tail: Vec<&str> = kubelet.lines().rev().take(30).collect();
            panic!("pod did not end: {describe}\nkubelet:\n{}", tail.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (_, logs) = kubectl(plane, &["-n", ns, "logs", name]);
    (phase, logs)
}

/// Packets the egress guard rejected (pod traffic bound off this machine).
fn rejected_egress_packets() -> u64 {
    let out = Command::new("iptables")
        .args(["-w", "-L", "MCALL-NODE-EGRESS", "-v", "-x", "-n"])
        .output()
        .expect("iptables runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("REJECT"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no REJECT rule in MCALL-NODE-EGRESS:\n{text}"))
}

#[test]
fn a_pod_resolves_cluster_names_and_reaches_the_api_server_through_its_service() {
    let (plane, shell) = cluster();
    let ns = "node-api";
    let _ = kubectl(plane, &["create", "namespace", ns]);
    let (phase, logs) = run_pod(
        plane,
        shell,
        ns,
        "api",
        "nslookup kubernetes.default.svc.cluster.local; \
         echo | nc -w 3 kubernetes.default.svc 443 && echo api-reachable; \
         test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-mounted",
    );
    assert_eq!(phase, "Succeeded", "{logs}");
    // Cluster DNS answers with the `kubernetes` Service's cluster IP, kube-proxy routes it to
    // the apiserver, and the pod has its ServiceAccount token (the operator's own in-cluster
    // access is proven by the chart's tests).
    assert!(logs.contains("Address: 10.96.0.1"), "{logs}");
    assert!(logs.contains("api-reachable"), "{logs}");
    assert!(logs.contains("token-mounted"), "{logs}");
}

#[test]
fn pod_traffic_never_leaves_the_machine() {
    let (plane, shell) = cluster();
    let ns = "node-egress";
    let _ = kubectl(plane, &["create", "namespace", ns]);
    let before = rejected_egress_packets();
    // TEST-NET-1: an address outside the machine.
    let (phase, logs) = run_pod(
        plane,
        shell,
        ns,
        "egress",
        "echo | nc -w 3 192.0.2.123 80 && echo LEFT || echo blocked",
    );
    assert_eq!(phase, "Succeeded", "{logs}");
    assert!(logs.contains("blocked"), "{logs}");
    assert!(
        rejected_egress_packets() > before,
        "the egress guard saw nothing: {logs}"
    );
}

/// A Service backed by a pod, called from another pod on the same bridge: kube-proxy's DNAT
/// and its reverse need bridged traffic to pass iptables (br_netfilter).
#[test]
fn a_pod_reaches_another_pod_through_a_service() {
    let (plane, shell) = cluster();
    let ns = "node-svc";
    let _ = kubectl(plane, &["create", "namespace", ns]);
    let image = shell.reference.to_string();
    let server = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: echo
  labels: {{app: echo}}
spec:
  containers:
    - name: main
      image: {image}
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", "while true; do echo pong | nc -l -p 8080; done"]
      ports: [{{containerPort: 8080, name: http}}]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    );
    let manifest = plane.dir().join("node-svc-echo.yaml");
    std::fs::write(&manifest, server).unwrap();
    wait_for_default_service_account(plane, ns);
    let (ok, out) = kubectl(
        plane,
        &["-n", ns, "apply", "-f", manifest.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    // Routed once kube-proxy has an endpoint chain for the Service (the pod is Running then).
    eventually(
        "kube-proxy to route to the pod",
        Duration::from_secs(60),
        || {
            let rules = Command::new("iptables-save")
                .args(["-t", "nat"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&rules.stdout)
                .lines()
                .any(|l| l.starts_with("-A KUBE-SEP-") && l.contains("node-svc/echo:http"))
                .then_some(())
        },
    );
    let (phase, logs) = run_pod(
        plane,
        shell,
        ns,
        "client",
        "nc -w 3 echo.node-svc.svc 80 </dev/null",
    );
    assert_eq!(phase, "Succeeded", "{logs}");
    assert!(logs.contains("pong"), "{logs}");
}
