//! kube-controller-manager in the test plane: the garbage collector deletes dependents whose
//! owner is gone (background and foreground propagation), and the namespace controller
//! empties and removes a deleted namespace. Every wait polls the API with a deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Resource};
use mcall_generated::McallTask;
use mcall_tests::{ControlPlane, ControlPlaneOptions, create_test_namespace};
use serde_json::json;

/// Generous for a loaded two-core machine: garbage collection takes well under a second, a
/// namespace deletion a little over 5 s (the namespace controller's fixed grace period).
const DEADLINE: Duration = Duration::from_secs(60);

/// A controlling, deletion-blocking reference to `owner` (which must have been created).
fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: meta.name.clone().expect("owner has a name"),
        uid: meta.uid.clone().expect("owner was created"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn config_map(name: &str, owner: Option<OwnerReference>) -> ConfigMap {
    let owner_references = owner.map(|owner| vec![owner]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references,
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

/// Polls until `name` is gone from `api`; returns how long that took. Fails (with the log
/// to look at) if it is still there at the deadline.
async fn await_gone<K>(
    plane: &ControlPlane,
    api: &Api<K>,
    name: &str,
    deadline: Duration,
) -> Duration
where
    K: Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let started = Instant::now();
    loop {
        let found = api.get_opt(name).await.expect("GET while waiting");
        let Some(obj) = found else {
            return started.elapsed();
        };
        assert!(
            started.elapsed() < deadline,
            "{name} still exists after {deadline:?}: {obj:?}; see {:?}",
            plane.controller_manager_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An owner and its dependent in a fresh namespace on the shared controller-manager plane.
async fn owner_and_dependent(prefix: &str) -> Api<ConfigMap> {
    let plane = ControlPlane::shared_with_controller_manager();
    let client = plane.admin_client().await.expect("admin client");
    let ns = create_test_namespace(&client, prefix)
        .await
        .expect("create namespace");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let owner = api
        .create(&pp, &config_map("owner", None))
        .await
        .expect("create owner");
    api.create(&pp, &config_map("dependent", Some(owner_reference(&owner))))
        .await
        .expect("create dependent");
    api
}

#[tokio::test]
async fn background_deletion_collects_the_dependent() {
    let plane = ControlPlane::shared_with_controller_manager();
    let api = owner_and_dependent("kcm-background").await;

    api.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    // Background: the owner goes at once, the garbage collector removes the dependent after.
    assert!(api.get_opt("owner").await.expect("GET owner").is_none());
    let took = await_gone(plane, &api, "dependent", DEADLINE).await;
    eprintln!("dependent collected {took:?} after its owner's background deletion");
}

#[tokio::test]
async fn foreground_deletion_removes_the_dependent_before_the_owner() {
    let plane = ControlPlane::shared_with_controller_manager();
    let api = owner_and_dependent("kcm-foreground").await;

    let deleting = api
        .delete("owner", &DeleteParams::foreground())
        .await
        .expect("delete owner");
    // Foreground: the owner stays, marked, until its blocking dependents are gone.
    let owner = deleting
        .left()
        .expect("the owner is still there, being deleted in the foreground");
    assert!(owner.metadata.deletion_timestamp.is_some(), "{owner:?}");
    assert!(
        owner
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "foregroundDeletion"),
        "{owner:?}"
    );

    let took = await_gone(plane, &api, "owner", DEADLINE).await;
    // The garbage collector lifts the owner's finalizer only once the dependent is deleted.
    assert!(
        api.get_opt("dependent")
            .await
            .expect("GET dependent")
            .is_none(),
        "the owner went first"
    );
    eprintln!("owner and dependent gone {took:?} after the foreground deletion");
}

#[tokio::test]
async fn deleted_namespace_is_emptied_and_removed() {
    let plane = ControlPlane::shared_with_controller_manager();
    let client = plane.admin_client().await.expect("admin client");
    let ns = create_test_namespace(&client, "kcm-namespace")
        .await
        .expect("create namespace");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    config_maps
        .create(&PostParams::default(), &config_map("content", None))
        .await
        .expect("create a ConfigMap in the namespace");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    let took = await_gone(plane, &namespaces, &ns, DEADLINE).await;
    eprintln!("namespace {ns} removed {took:?} after its deletion");
    // The namespace controller deleted the content before lifting the namespace's finalizer.
    assert!(
        config_maps
            .get_opt("content")
            .await
            .expect("GET content")
            .is_none()
    );
}

/// The chart's CRDs are installed before the controller manager starts, so the garbage
/// collector knows McallTask from the beginning: a task's dependent goes as promptly as a
/// ConfigMap's. (A kind installed later is only picked up by the collector's 30 s discovery
/// resync; the deadline is below that, so this fails if the CRDs came too late.)
#[tokio::test]
async fn custom_resource_owners_are_collected_promptly() {
    let plane = ControlPlane::shared_with_controller_manager();
    let client = plane.admin_client().await.expect("admin client");
    let ns = create_test_namespace(&client, "kcm-crd")
        .await
        .expect("create namespace");
    let tasks: Api<McallTask> = Api::namespaced(client.clone(), &ns);
    let task: McallTask = serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1",
        "kind": "McallTask",
        "metadata": {"name": "owner"},
        "spec": {"type": "cmd", "input": "true"},
    }))
    .expect("a McallTask");
    let pp = PostParams::default();
    let task = tasks.create(&pp, &task).await.expect("create task");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    config_maps
        .create(&pp, &config_map("dependent", Some(owner_reference(&task))))
        .await
        .expect("create dependent");

    tasks
        .delete("owner", &DeleteParams::background())
        .await
        .expect("delete task");
    let took = await_gone(plane, &config_maps, "dependent", Duration::from_secs(20)).await;
    eprintln!("a McallTask's dependent collected {took:?} after the task's deletion");
}

/// A controller manager that cannot start fails the plane's start, named, with its log; its
/// process and the plane's directory are gone afterwards.
#[test]
fn controller_manager_start_failure_names_it_and_shows_its_log() {
    let opts = ControlPlaneOptions {
        controller_manager: true,
        extra_controller_manager_args: vec!["--no-such-flag".into()],
        ..Default::default()
    };
    let err = ControlPlane::start(opts).expect_err("an unknown flag must fail the start");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            mcall_tests::Error::ProcessExited {
                what: "kube-controller-manager",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("unknown flag: --no-such-flag"), "{msg}");
}

/// An owned plane with the controller manager reports it, and kills it on drop.
#[test]
fn owned_plane_with_controller_manager_cleans_up() {
    let plane = ControlPlane::start(ControlPlaneOptions {
        controller_manager: true,
        ..Default::default()
    })
    .expect("start a plane with the controller manager");
    eprintln!(
        "plane with kube-controller-manager ready after {:?}",
        plane.startup_time()
    );
    let url = plane.controller_manager_url().expect("its URL").to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let log = plane
        .controller_manager_log()
        .expect("its log")
        .to_path_buf();
    assert!(log.is_file(), "{}", log.display());
    let (_, pid) = *plane
        .pids()
        .iter()
        .find(|(binary, _)| *binary == "kube-controller-manager")
        .expect("its pid");
    let dir = plane.dir().to_path_buf();
    drop(plane);
    // Drop kills and reaps before returning, so there is nothing left to wait for. (The pid
    // could be reused by now, but not by another kube-controller-manager of this plane.)
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()),
        "kube-controller-manager (pid {pid}) survived the drop"
    );
    assert!(!dir.exists(), "{} should be removed on drop", dir.display());
}
