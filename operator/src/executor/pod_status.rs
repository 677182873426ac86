//! Reading a Pod executor's pod: where its command is. Pure.

use k8s_openapi::api::core::v1::Pod;

/// Error codes of what ended a command in a pod other than its exit.
pub const IMAGE_PULL_FAILED: &str = "ImagePullFailed";
pub const UNSCHEDULABLE: &str = "Unschedulable";
pub const OOM_KILLED: &str = "OOMKilled";
pub const EVICTED: &str = "Evicted";
pub const POD_REFUSED: &str = "PodRefused";
pub const POD_DELETED: &str = "PodDeleted";
pub const SERVICE_ACCOUNT_MISSING: &str = "ServiceAccountMissing";

/// Where the command is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not running yet, for no reason to give up on.
    Pending,
    /// The scheduler finds no node for it (yet: resources may free up); why.
    Unschedulable(String),
    Running,
    /// The container exited with this code.
    Exited(i32),
    /// Kubernetes stopped it at its `activeDeadlineSeconds`.
    DeadlineExceeded,
    /// It cannot end with an exit code: the error code and message the task reports.
    Failed {
        error_code: &'static str,
        message: String,
    },
}

/// Waiting reasons that will not resolve by themselves.
const IMAGE_WAITING: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

pub fn progress(pod: &Pod) -> Progress {
    let Some(status) = &pod.status else {
        return Progress::Pending;
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let reason = status.reason.as_deref().unwrap_or("");
    if phase == "Failed" && reason == "DeadlineExceeded" {
        return Progress::DeadlineExceeded;
    }
    if phase == "Failed" && reason == "Evicted" {
        let message = status.message.clone().unwrap_or_default();
        return Progress::Failed {
            error_code: EVICTED,
            message: format!("its pod was evicted: {message}"),
        };
    }
    let container = status.container_statuses.iter().flatten().next();
    let state = container.and_then(|c| c.state.as_ref());
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        // cgroup v1 does not always let the runtime see the OOM event: a SIGKILL (137) of a
        // container with a memory limit is, in practice, the kernel's OOM killer.
        let killed_with_limit = terminated.exit_code == 137 && has_memory_limit(pod);
        if terminated.reason.as_deref() == Some("OOMKilled") || killed_with_limit {
            return Progress::Failed {
                error_code: OOM_KILLED,
                message: format!(
                    "it was killed for exceeding its memory limit (exit code {})",
                    terminated.exit_code
                ),
            };
        }
        return Progress::Exited(terminated.exit_code);
    }
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let why = waiting.reason.as_deref().unwrap_or("");
        let message = waiting.message.clone().unwrap_or_default();
        if IMAGE_WAITING.contains(&why) {
            let image = container.map(|c| c.image.as_str()).unwrap_or("");
            return Progress::Failed {
                error_code: IMAGE_PULL_FAILED,
                message: format!("its image {image:?} could not be pulled ({why}): {message}"),
            };
        }
        if why == "CreateContainerConfigError" || why == "CreateContainerError" {
            return Progress::Failed {
                error_code: POD_REFUSED,
                message: format!("its container could not be created ({why}): {message}"),
            };
        }
    }
    if state.is_some_and(|s| s.running.is_some()) {
        return Progress::Running;
    }
    match phase {
        "Succeeded" => Progress::Exited(0),
        "Failed" => Progress::Failed {
            error_code: POD_REFUSED,
            message: format!(
                "its pod failed ({reason}): {}",
                status.message.clone().unwrap_or_default()
            ),
        },
        _ => unschedulable(pod).map_or(Progress::Pending, Progress::Unschedulable),
    }
}

fn has_memory_limit(pod: &Pod) -> bool {
    pod.spec.iter().flat_map(|s| &s.containers).any(|c| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| l.contains_key("memory"))
    })
}

fn unschedulable(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    #[test]
    fn reads_each_way_a_command_ends() {
        let cases = [
            (json!({"phase": "Pending"}), Progress::Pending),
            (
                json!({"phase": "Running", "containerStatuses": [{"name": "command", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
                Progress::Running,
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [{"name": "command", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}),
                Progress::Exited(3),
            ),
            (
                json!({"phase": "Failed", "reason": "DeadlineExceeded"}),
                Progress::DeadlineExceeded,
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(progress(&pod(status.clone())), expected, "{status}");
        }
    }

    #[test]
    fn names_what_the_user_can_act_on() {
        let code = |status: serde_json::Value| match progress(&pod(status)) {
            Progress::Failed { error_code, .. } => error_code,
            other => panic!("{other:?}"),
        };
        let waiting = |reason: &str| json!({"phase": "Pending", "containerStatuses": [{"name": "command", "image": "nope:1", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}}]});
        assert_eq!(code(waiting("ErrImageNeverPull")), IMAGE_PULL_FAILED);
        assert_eq!(code(waiting("ImagePullBackOff")), IMAGE_PULL_FAILED);
        assert_eq!(code(waiting("CreateContainerConfigError")), POD_REFUSED);
        assert_eq!(
            code(
                json!({"phase": "Failed", "containerStatuses": [{"name": "command", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]})
            ),
            OOM_KILLED
        );
        assert_eq!(
            code(json!({"phase": "Failed", "reason": "Evicted"})),
            EVICTED
        );
        let pending = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes: Insufficient memory"}]});
        assert_eq!(
            progress(&pod(pending)),
            Progress::Unschedulable("0/1 nodes: Insufficient memory".into())
        );
    }
}
