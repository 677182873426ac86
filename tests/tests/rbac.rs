//! The RBAC the chart generates from spec/rbac.yaml, on a real API server with RBAC on: a
//! ServiceAccount without it is refused; bound to the generated role it can do exactly what the
//! operator needs (list tasks, patch their status, create and delete workflow steps) and no more
//! (no workflow deletes, no Secret lists).

use std::path::Path;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use mcall_generated::{McallTask, McallWorkflow, Phase};
use mcall_tests::{ControlPlane, create_test_namespace};
use serde_json::json;

fn status_code<T: std::fmt::Debug>(result: kube::Result<T>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn install_crds(plane: &ControlPlane) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = plane
        .kubectl()
        .current_dir(root)
        .args(["apply", "--server-side", "-f", "helm/mcall-operator/crds/"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = plane
        .kubectl()
        .args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/mcalltasks.mcall.tz.io",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// RBAC grants reach the authorizer through an informer, so a fresh binding may take a moment.
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

async fn check_operator_rights(plane: &ControlPlane, ns: &str, bind: impl FnOnce()) {
    let admin = plane.admin_client().await.unwrap();
    let sa = plane
        .service_account_client(ns, "mcall-operator")
        .await
        .unwrap();
    let tasks_as_sa: Api<McallTask> = Api::namespaced(sa.clone(), ns);

    // Not bound yet: authenticated but not authorized.
    assert_eq!(
        status_code(tasks_as_sa.list(&ListParams::default()).await),
        403
    );

    let task: McallTask = serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
        "metadata": {"name": "probe"}, "spec": {"type": "cmd", "input": "true"}
    }))
    .unwrap();
    Api::<McallTask>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &task)
        .await
        .unwrap();

    bind();

    let all = ListParams::default();
    let listed = eventually("listing tasks as the bound operator", || {
        tasks_as_sa.list(&all)
    })
    .await;
    assert_eq!(listed.items.len(), 1);
    let patch =
        json!({"status": {"phase": "Succeeded", "message": "patched by the operator's identity"}});
    tasks_as_sa
        .patch_status("probe", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the generated role allows patching status");
    let stored = Api::<McallTask>::namespaced(admin, ns)
        .get("probe")
        .await
        .unwrap();
    assert_eq!(stored.status.unwrap().phase, Some(Phase::Succeeded));

    // Workflow steps are tasks the operator creates and deletes.
    tasks_as_sa
        .delete("probe", &DeleteParams::default())
        .await
        .expect("the generated role allows deleting a workflow's step tasks");
    // Least privilege: the operator never deletes workflows, and cannot list Secrets.
    let workflows_as_sa: Api<McallWorkflow> = Api::namespaced(sa.clone(), ns);
    assert_eq!(
        status_code(
            workflows_as_sa
                .delete("any", &DeleteParams::default())
                .await
        ),
        403
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(sa, ns);
    assert_eq!(
        status_code(secrets.list(&ListParams::default()).await),
        403,
        "secrets are get-only"
    );
}

#[tokio::test]
async fn cluster_role_from_spec_grants_exactly_what_the_operator_needs() {
    let plane = ControlPlane::shared();
    install_crds(plane);
    let admin = plane.admin_client().await.unwrap();
    let ns = create_test_namespace(&admin, "rbac-cluster").await.unwrap();
    check_operator_rights(plane, &ns, || {
        plane.apply_chart_rbac(&ns, &ns, "mcall-operator", &[])
    })
    .await;
}

#[tokio::test]
async fn namespaced_roles_when_the_chart_watches_listed_namespaces() {
    let plane = ControlPlane::shared();
    install_crds(plane);
    let admin = plane.admin_client().await.unwrap();
    let ns = create_test_namespace(&admin, "rbac-ns").await.unwrap();
    let other = create_test_namespace(&admin, "rbac-other").await.unwrap();
    let watch = format!("watchNamespaces={{{ns}}}");
    check_operator_rights(plane, &ns, || {
        plane.apply_chart_rbac(&ns, &ns, "mcall-operator", &["--set", &watch])
    })
    .await;

    // The Role is confined to the watched namespace.
    let sa = plane
        .service_account_client(&ns, "mcall-operator")
        .await
        .unwrap();
    assert_eq!(
        status_code(
            Api::<McallTask>::namespaced(sa.clone(), &other)
                .list(&ListParams::default())
                .await
        ),
        403
    );
    assert_eq!(
        status_code(Api::<McallTask>::all(sa).list(&ListParams::default()).await),
        403
    );
}
