//! The pod a Pod executor runs one command in. Pure: (task, command) → Pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapKeySelector, Container, EnvVar, EnvVarSource, Pod, PodSecurityContext,
    PodSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use mcall_generated::{McallTaskSpec, ResourceList};

/// Labels that link a pod to its task and execution.
pub const TASK_LABEL: &str = "mcall.tz.io/task";
pub const EXECUTION_LABEL: &str = "mcall.tz.io/execution";
/// The task's generation the pod's run ran (older generations' pods are stopped).
pub const GENERATION_LABEL: &str = "mcall.tz.io/generation";
/// Which command the pod runs: the input's name and the attempt, checked when a pod of the
/// same name is found instead of created.
pub const INPUT_ANNOTATION: &str = "mcall.tz.io/input";
pub const ATTEMPT_ANNOTATION: &str = "mcall.tz.io/attempt";

/// What the pod is for.
pub struct PodRequest<'a> {
    pub name: &'a str,
    pub owner: OwnerReference,
    pub task: &'a str,
    pub execution: &'a str,
    pub generation: i64,
    pub input: &'a str,
    pub attempt: u32,
    pub spec: &'a McallTaskSpec,
    pub image: &'a str,
    pub script: &'a str,
    /// The command's environment (resolved); variables that come from `environmentFrom` are
    /// passed by reference instead, never in clear.
    pub environment: &'a BTreeMap<String, String>,
    /// Seconds the pod may run (its `activeDeadlineSeconds`).
    pub deadline_seconds: i64,
}

/// The pod: one container running `/bin/sh -c <script>`, never restarted, owned by the task
/// (deleting the task deletes it), with a restricted security context, the task's resources,
/// and no ServiceAccount token unless the executor asks for one.
pub fn pod(request: &PodRequest<'_>) -> Pod {
    let executor = request.spec.executor.as_ref();
    let labels = BTreeMap::from([
        (TASK_LABEL.to_owned(), label_value(request.task)),
        (EXECUTION_LABEL.to_owned(), label_value(request.execution)),
        (GENERATION_LABEL.to_owned(), request.generation.to_string()),
    ]);
    let annotations = BTreeMap::from([
        (INPUT_ANNOTATION.to_owned(), request.input.to_owned()),
        (ATTEMPT_ANNOTATION.to_owned(), request.attempt.to_string()),
    ]);
    let container = Container {
        name: "command".to_owned(),
        image: Some(request.image.to_owned()),
        command: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            request.script.to_owned(),
        ]),
        env: Some(environment(request)),
        resources: request
            .spec
            .resources
            .as_ref()
            .map(|r| ResourceRequirements {
                requests: r.requests.as_ref().map(quantities),
                limits: r.limits.as_ref().map(quantities),
                ..Default::default()
            }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(request.name.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![request.owner.clone()]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".to_owned()),
            active_deadline_seconds: Some(request.deadline_seconds.max(1)),
            service_account_name: executor.and_then(|e| e.service_account_name.clone()),
            automount_service_account_token: Some(
                executor
                    .and_then(|e| e.automount_service_account_token)
                    .unwrap_or(false),
            ),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(2),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Plain variables by value, `environmentFrom` ones by reference to their Secret or ConfigMap.
fn environment(request: &PodRequest<'_>) -> Vec<EnvVar> {
    let sources = request.spec.environment_from.iter().flatten();
    let by_reference: Vec<EnvVar> = sources
        .map(|source| EnvVar {
            name: source.name.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: source.secret_key_ref.as_ref().map(|r| SecretKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: None,
                }),
                config_map_key_ref: source.config_map_key_ref.as_ref().map(|r| {
                    ConfigMapKeySelector {
                        name: r.name.clone(),
                        key: r.key.clone(),
                        optional: None,
                    }
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let mut env: Vec<EnvVar> = request
        .environment
        .iter()
        .filter(|(name, _)| !by_reference.iter().any(|r| &r.name == *name))
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect();
    env.extend(by_reference);
    env
}

fn quantities(list: &ResourceList) -> BTreeMap<String, Quantity> {
    [("cpu", &list.cpu), ("memory", &list.memory)]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), Quantity(value.clone()?))))
        .collect()
}

/// A label value: at most 63 characters of `[-_.A-Za-z0-9]`, alphanumeric at both ends.
pub fn label_value(text: &str) -> String {
    let mut value: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while value.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        value.pop();
    }
    value
}

/// The pod's name: `<task>-<run>-<input>`, with `-r<n>` for retry n, cut to 63 characters with
/// the suffix kept (a DNS label; the run, input and attempt make it unique and let another
/// operator process find it).
pub fn pod_name(task: &str, run: &str, input: &str, attempt: u32) -> String {
    // The input's name cut short, and a hash of all of it: names that differ only past the
    // cut or in punctuation still get pods of their own.
    let slug: String = dns_label(input).chars().take(12).collect();
    let slug = slug.trim_matches('-');
    let input = format!(
        "{slug}{}{:08x}",
        if slug.is_empty() { "" } else { "-" },
        fnv1a(input)
    );
    let retry = if attempt == 0 {
        String::new()
    } else {
        format!("-r{attempt}")
    };
    let suffix = format!("-{}-{input}{retry}", dns_label(run));
    let room = 63usize.saturating_sub(suffix.len());
    let mut head: String = dns_label(task).chars().take(room).collect();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}{suffix}")
}

/// 32-bit FNV-1a: stable across processes and versions (the pod's name depends on it).
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Lowercase alphanumerics, anything else as `-`.
fn dns_label(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcall_generated::{EnvironmentFromSource, Executor, ExecutorKind, KeyReference};

    fn spec() -> McallTaskSpec {
        serde_json::from_value(serde_json::json!({"type": "cmd", "input": "echo hi"})).unwrap()
    }

    fn request<'a>(spec: &'a McallTaskSpec, env: &'a BTreeMap<String, String>) -> PodRequest<'a> {
        PodRequest {
            name: "t-abc-0",
            owner: OwnerReference::default(),
            task: "t",
            execution: "abc",
            generation: 1,
            input: "input-0",
            attempt: 0,
            spec,
            image: "shell:1",
            script: "echo hi",
            environment: env,
            deadline_seconds: 30,
        }
    }

    #[test]
    fn secrets_are_passed_by_reference_never_by_value() {
        let mut spec = spec();
        spec.environment_from = Some(vec![EnvironmentFromSource {
            name: "TOKEN".into(),
            secret_key_ref: Some(KeyReference {
                name: "creds".into(),
                key: "token".into(),
            }),
            config_map_key_ref: None,
        }]);
        let env = BTreeMap::from([
            ("TOKEN".to_owned(), "s3cret".to_owned()),
            ("MODE".to_owned(), "fast".to_owned()),
        ]);
        let pod = pod(&request(&spec, &env));
        let text = serde_json::to_string(&pod).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let vars = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let token = vars.iter().find(|v| v.name == "TOKEN").unwrap();
        let reference = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("creds", "token")
        );
        assert!(
            vars.iter()
                .any(|v| v.name == "MODE" && v.value.as_deref() == Some("fast"))
        );
    }

    #[test]
    fn the_pod_is_locked_down_and_runs_the_executors_account_without_its_token() {
        let mut spec = spec();
        spec.executor = Some(Executor {
            r#type: ExecutorKind::Pod,
            image: Some("shell:1".into()),
            service_account_name: Some("runner".into()),
            automount_service_account_token: None,
        });
        let env = BTreeMap::new();
        let pod = pod(&request(&spec, &env)).spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("runner"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let container = &pod.containers[0];
        let security = container.security_context.clone().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.capabilities.unwrap().drop.unwrap(), vec!["ALL"]);
        assert_eq!(
            container.command.clone().unwrap(),
            vec!["/bin/sh", "-c", "echo hi"]
        );
    }

    #[test]
    fn names_are_dns_labels_that_keep_the_run_input_and_attempt() {
        let long = "Very.Long_Task".repeat(10);
        let name = pod_name(&long, "r1-9f", "input-3", 0);
        let retry = pod_name(&long, "r1-9f", "input-3", 2);
        for name in [&name, &retry] {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
        assert!(name.contains("-r1-9f-input-3-"), "{name}");
        assert!(
            retry.ends_with("-r2") && retry.contains("-r1-9f-input-3-"),
            "{retry}"
        );
        assert_ne!(retry, name);
        assert_eq!(name, pod_name(&long, "r1-9f", "input-3", 0), "stable");
    }

    #[test]
    fn inputs_whose_names_read_alike_get_pods_of_their_own() {
        let name = |input: &str| pod_name("t", "run", input, 0);
        assert_ne!(name("a_b"), name("a.b"));
        assert_ne!(
            name("check-service-number-1"),
            name("check-service-number-2")
        );
        let punctuation = name("***");
        assert!(
            punctuation.ends_with(|c: char| c.is_ascii_alphanumeric())
                && !punctuation.contains("--"),
            "{punctuation}"
        );
    }
}
