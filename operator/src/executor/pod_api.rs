//! The Pod executor's requests: create a pod (or find this command's pod created already), stop
//! it, delete it, read its log.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use mcall_engine::{Captured, CommandEnd};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pod_spec::{ATTEMPT_ANNOTATION, EXECUTION_LABEL, INPUT_ANNOTATION};
use super::pod_status::{POD_REFUSED, SERVICE_ACCOUNT_MISSING};

/// Between tries to create a pod whose ServiceAccount is missing.
const ACCOUNT_RETRY: Duration = Duration::from_millis(500);

/// Why a pod is stopped while its run goes on (kept until the run's result is recorded, so a
/// successor adopting the run does not start the command again).
pub const STOPPED_ANNOTATION: &str = "mcall.tz.io/stopped";
/// Stopped because a sibling input failed (failFast): nothing worth keeping once the run ends.
pub const STOPPED_CANCELLED: &str = "cancelled";
/// Stopped at its deadline: kept as a failed pod for `kubectl logs`.
pub const STOPPED_TIMEOUT: &str = "timeout";

/// Creates the pod, or finds it created already by this run in a process that stopped: a pod
/// of the same name is followed when it runs the same command (run, input, attempt), refused
/// otherwise. A missing ServiceAccount is retried until the deadline: a new namespace's
/// `default` one comes a moment after the namespace.
pub async fn create_or_find(
    api: &Api<Pod>,
    pod: &Pod,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<(), CommandEnd> {
    let name = pod.name_any();
    loop {
        let error = match api.create(&PostParams::default(), pod).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                return found(api, pod).await;
            }
            Err(e) => e,
        };
        let text = error.to_string();
        let account_missing = text.contains("serviceaccount") && text.contains("not found");
        let refused = |error_code: &str| CommandEnd::Failed {
            error_code: error_code.to_owned(),
            message: format!("its pod {name} could not be created: {text}"),
        };
        if !account_missing {
            return Err(refused(POD_REFUSED));
        }
        if Instant::now() + ACCOUNT_RETRY >= deadline {
            return Err(refused(SERVICE_ACCOUNT_MISSING));
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(CommandEnd::Cancelled),
            () = tokio::time::sleep(ACCOUNT_RETRY) => {}
        }
    }
}

/// A pod named like `wanted` exists: it is followed if it is the same command's.
async fn found(api: &Api<Pod>, wanted: &Pod) -> Result<(), CommandEnd> {
    let name = wanted.name_any();
    let existing = api.get(&name).await.map_err(|e| CommandEnd::Failed {
        error_code: POD_REFUSED.to_owned(),
        message: format!("its pod {name} exists but could not be read: {e}"),
    })?;
    let same = |of: &Pod| {
        (
            of.labels().get(EXECUTION_LABEL).cloned(),
            of.annotations().get(INPUT_ANNOTATION).cloned(),
            of.annotations().get(ATTEMPT_ANNOTATION).cloned(),
        )
    };
    if same(&existing) != same(wanted) {
        return Err(CommandEnd::Failed {
            error_code: POD_REFUSED.to_owned(),
            message: format!("a pod named {name} exists and runs another command"),
        });
    }
    tracing::info!(pod = name, "following the run's existing pod");
    Ok(())
}

/// Ends the pod's command but keeps the pod: a pod that started gets a deadline of one second
/// (the kubelet stops it) and says why; one that never started is deleted (nothing ran).
pub async fn stop(api: &Api<Pod>, name: &str, last_seen: Option<&Pod>, why: &str) {
    let started = last_seen
        .and_then(|pod| pod.status.as_ref())
        .is_some_and(|status| status.start_time.is_some());
    if !started {
        delete(api, name).await;
        return;
    }
    let patch = serde_json::json!({
        "metadata": {"annotations": {STOPPED_ANNOTATION: why}},
        "spec": {"activeDeadlineSeconds": 1},
    });
    if let Err(e) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(pod = name, error = %e, "stopping the pod; deleting it instead");
        delete(api, name).await;
    }
}

/// Deletes the pod at once (its process is killed, no grace period); a failure is logged.
pub async fn delete(api: &Api<Pod>, name: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => tracing::warn!(pod = name, error = %e, "deleting the pod"),
    }
}

/// The container's log, the first `keep` bytes (lines past them are not counted).
pub async fn logs(api: &Api<Pod>, name: &str, keep: usize) -> Captured {
    let params = LogParams {
        container: Some("command".to_owned()),
        limit_bytes: Some(keep.max(1) as i64),
        ..Default::default()
    };
    match api.logs(name, &params).await {
        Ok(text) => Captured::of(text.as_bytes(), keep),
        Err(e) => {
            tracing::warn!(pod = name, error = %e, "no log of the pod");
            Captured::default()
        }
    }
}
