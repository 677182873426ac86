//! The test harness against the real etcd + kube-apiserver: startup, RBAC enforcement for
//! ServiceAccount clients, and kubectl wired to the plane.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use mcall_tests::{ControlPlane, ControlPlaneOptions, create_test_namespace};

/// The status code of a failed API call, or a panic naming what failed otherwise.
fn api_code<T: std::fmt::Debug>(result: kube::Result<T>, what: &str) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("{what}: expected an API error status, got {other:?}"),
    }
}

#[tokio::test]
async fn shared_plane_is_ready_and_serves_namespaces() {
    let plane = ControlPlane::shared();
    eprintln!(
        "control plane at {} ready after {:?} (kubeconfig {})",
        plane.server_url(),
        plane.startup_time(),
        plane.kubeconfig_path().display()
    );
    // The controller manager is opt-in; the default plane is etcd + kube-apiserver only.
    assert!(plane.controller_manager_url().is_none());
    assert_eq!(plane.pids().len(), 2, "{:?}", plane.pids());
    let client = plane.admin_client().await.expect("admin client");

    let readyz = client
        .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
        .await
        .expect("GET /readyz");
    assert_eq!(readyz.trim(), "ok");

    let ns = create_test_namespace(&client, "harness-ready")
        .await
        .expect("create namespace");
    let got = Api::<Namespace>::all(client.clone())
        .get(&ns)
        .await
        .expect("get namespace");
    assert_eq!(got.metadata.name.as_deref(), Some(ns.as_str()));

    // Names are unique even with the same prefix, so tests on the shared plane never collide.
    let other = create_test_namespace(&client, "harness-ready")
        .await
        .expect("second namespace");
    assert_ne!(ns, other);
}

#[tokio::test]
async fn rbac_is_enforced_for_service_accounts() {
    let plane = ControlPlane::shared();
    let admin = plane.admin_client().await.expect("admin client");
    let ns = create_test_namespace(&admin, "harness-rbac")
        .await
        .expect("create namespace");

    let sa = plane
        .service_account_client(&ns, "limited")
        .await
        .expect("service account client");
    let configmaps: Api<ConfigMap> = Api::namespaced(sa.clone(), &ns);

    // No bindings yet: authenticated (so not 401) but not authorized.
    let code = api_code(
        Api::<Namespace>::all(sa.clone())
            .list(&ListParams::default())
            .await,
        "listing namespaces as the service account",
    );
    assert_eq!(code, 403);
    let code = api_code(
        configmaps.list(&ListParams::default()).await,
        "listing configmaps as the unbound service account",
    );
    assert_eq!(code, 403);

    // Grant list on configmaps in this namespace only.
    let role = Role {
        metadata: ObjectMeta {
            name: Some("configmap-lister".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("configmap-lister".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "configmap-lister".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "limited".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create role binding");

    // The RBAC authorizer reads from an informer cache, so the grant shows up after a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match configmaps.list(&ListParams::default()).await {
            Ok(list) => {
                // kube-root-ca.crt is published by a controller that does not run here.
                assert!(list.items.is_empty(), "{:?}", list.items);
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 403 && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("listing configmaps after the binding: {e}"),
        }
    }

    // Still nothing beyond the grant: namespaces stay forbidden, and so do other verbs.
    let code = api_code(
        Api::<Namespace>::all(sa.clone())
            .list(&ListParams::default())
            .await,
        "listing namespaces after the configmap binding",
    );
    assert_eq!(code, 403);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("nope".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let code = api_code(
        configmaps.create(&PostParams::default(), &cm).await,
        "creating a configmap with only list granted",
    );
    assert_eq!(code, 403);
}

#[tokio::test]
async fn kubectl_works_against_the_plane() {
    let plane = ControlPlane::shared();
    let admin = plane.admin_client().await.expect("admin client");
    let ns = create_test_namespace(&admin, "harness-kubectl")
        .await
        .expect("create namespace");

    // kubectl blocks; run it off the async worker.
    let mut cmd = plane.kubectl();
    cmd.args(["get", "ns", "-o", "name"]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join kubectl")
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl get ns failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l == format!("namespace/{ns}")),
        "{ns} missing from:\n{stdout}"
    );
}

/// Owned planes die with their owner; detached ones run until stopped. Sequential on purpose:
/// each start is a full etcd + apiserver, and the machine has two cores.
#[test]
fn owned_and_detached_planes_clean_up() {
    let plane = ControlPlane::start(ControlPlaneOptions::default()).expect("start an owned plane");
    let dir = plane.dir().to_path_buf();
    let log = plane.apiserver_log().to_path_buf();
    assert!(log.is_file(), "{}", log.display());
    drop(plane);
    assert!(!dir.exists(), "{} should be removed on drop", dir.display());

    let state = tempfile::tempdir().expect("state dir");
    let info = ControlPlane::start_detached(state.path(), false).expect("start a detached plane");
    eprintln!("detached plane ready after {:?}", info.startup_time);
    assert!(info.kubeconfig.is_file());
    let status = ControlPlane::status_detached(state.path()).expect("status");
    assert!(
        status.healthy,
        "detached plane unhealthy: {}",
        status.detail
    );
    assert_eq!(status.apiserver_pid, Some(info.apiserver_pid));
    // Detached planes are for humans: they run the controller manager too.
    assert_eq!(
        status.controller_manager_pid,
        Some(info.controller_manager_pid)
    );
    assert!(info.controller_manager_log.is_file());

    // Starting twice in the same state dir is refused rather than orphaning the first.
    let again = ControlPlane::start_detached(state.path(), false);
    assert!(again.is_err(), "a second detached start should fail");

    assert!(ControlPlane::stop_detached(state.path()).expect("stop"));
    let status = ControlPlane::status_detached(state.path()).expect("status after stop");
    assert!(!status.is_running(), "{status:?}");
    assert!(!ControlPlane::stop_detached(state.path()).expect("second stop"));
}

/// A plane that cannot start says which process died and shows the end of its log.
#[test]
fn start_failure_names_the_process_and_shows_its_log() {
    let opts = ControlPlaneOptions {
        extra_apiserver_args: vec!["--no-such-flag".into()],
        ..Default::default()
    };
    let err = ControlPlane::start(opts).expect_err("an unknown flag must fail the start");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            mcall_tests::Error::ProcessExited {
                what: "kube-apiserver",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("unknown flag: --no-such-flag"), "{msg}");
}
