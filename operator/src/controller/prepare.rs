//! Preparing a run: `inputTemplate` filled from `inputSources` (read from the cache),
//! `environmentFrom` resolved from the namespace's Secrets and ConfigMaps, the plan compiled.
//! Also what a reconcile learns from compiling the spec without resolving anything.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use mcall_engine::{TaskKind, TaskPlan};
use mcall_generated::{KeyReference, McallTask, McallTaskSpec, Reason, TaskType};

use super::context::Context;
use crate::request::{ResolvedEnvironment, task_request};
use crate::{Error, Result};

/// What preparing a run came to.
pub enum Prepared {
    Ready(Box<TaskPlan>),
    /// The run cannot start: a condition reason and why.
    CannotRun {
        reason: Reason,
        message: String,
    },
}

/// Fills the template, resolves the environment, compiles the plan. Writes nothing: what cannot
/// run is reported by the caller, which knows the version to write onto. `Err`: the API server
/// failed a read (worth retrying; not the spec's fault).
pub async fn prepare(ctx: &Context, task: &McallTask) -> Result<Prepared> {
    let (spec, input_unavailable) = rendered_spec(&ctx.store, task);
    let cannot_run = |reason, message: String| Ok(Prepared::CannotRun { reason, message });
    if let Some(message) = input_unavailable {
        return cannot_run(Reason::InputUnavailable, message);
    }
    let namespace = task.namespace().unwrap_or_default();
    let resolved = match resolve_environment(&ctx.client, &namespace, &spec).await {
        Ok(resolved) => resolved,
        Err(ResolveError::Spec(message)) => return cannot_run(Reason::InvalidSpec, message),
        Err(ResolveError::Api(source)) => {
            return Err(Error::Kube {
                op: "reading environmentFrom",
                source,
            });
        }
    };
    match TaskPlan::compile(task_request(&spec, resolved)) {
        Ok(plan) => Ok(Prepared::Ready(Box::new(plan))),
        Err(e) => cannot_run(Reason::InvalidSpec, e.to_string()),
    }
}

/// What compiling the spec (template filled, environment not resolved) says about a task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validation {
    /// The spec problem the engine found, if any.
    pub invalid_spec: Option<String>,
    /// Why `inputTemplate` could not be filled yet.
    pub input_unavailable: Option<String>,
    /// Whether the task runs commands.
    pub uses_commands: bool,
    /// Whether every input is a command: an HTTP request is not adopted after a restart (it
    /// has no pod to follow, and sending it again could repeat a POST).
    pub only_commands: bool,
}

pub fn validate(store: &Store<McallTask>, task: &McallTask) -> Validation {
    validate_with(task, cached_lookup(store, task))
}

/// [`validate`] with the source tasks of `inputTemplate` looked up by name in the task's
/// namespace (`None`: no such task). The admission webhook calls it with no tasks at all, so
/// admission and controller judge a spec with the same code.
pub fn validate_with(
    task: &McallTask,
    lookup: impl Fn(&str) -> Option<Arc<McallTask>>,
) -> Validation {
    if let Some(error) = undefined_template_placeholder(&task.spec) {
        return Validation {
            invalid_spec: Some(error.to_string()),
            ..Validation::default()
        };
    }
    let (spec, input_unavailable) = rendered_spec_with(task, lookup);
    let plan = TaskPlan::compile(task_request(&spec, ResolvedEnvironment::default()));
    let is_cmd = task.spec.r#type == TaskType::Cmd;
    let (invalid_spec, uses_commands, only_commands) = match &plan {
        // Until the template is filled the input is not known, so it cannot be judged yet.
        Err(_) if input_unavailable.is_some() => (None, is_cmd, is_cmd),
        Ok(p) => (
            None,
            p.uses_commands(),
            p.inputs().iter().all(|i| i.kind == TaskKind::Cmd),
        ),
        Err(e) => (Some(e.to_string()), false, false),
    };
    Validation {
        invalid_spec,
        input_unavailable,
        uses_commands,
        only_commands,
    }
}

/// A `${NAME}` in `inputTemplate` that no `inputSources` entry and no variable of the task's
/// environment fills.
pub fn undefined_template_placeholder(spec: &McallTaskSpec) -> Option<crate::inputs::InputError> {
    let template = spec.input_template.as_deref()?;
    let variables: Vec<&str> = spec
        .environment
        .iter()
        .flat_map(|env| env.keys().map(String::as_str))
        .chain(
            spec.environment_from
                .iter()
                .flatten()
                .map(|from| from.name.as_str()),
        )
        .collect();
    let sources = spec.input_sources.as_deref().unwrap_or(&[]);
    crate::inputs::undefined_placeholder(template, sources, &variables)
}

/// The spec with `inputTemplate` filled from `inputSources` (read from the cache), or the spec
/// as written and why it could not be filled.
pub fn rendered_spec(
    store: &Store<McallTask>,
    task: &McallTask,
) -> (McallTaskSpec, Option<String>) {
    rendered_spec_with(task, cached_lookup(store, task))
}

/// A task of `task`'s namespace, by name, from the cache.
fn cached_lookup<'a>(
    store: &'a Store<McallTask>,
    task: &McallTask,
) -> impl Fn(&str) -> Option<Arc<McallTask>> + 'a {
    let namespace = task.namespace().unwrap_or_default();
    move |name| store.get(&ObjectRef::new(name).within(&namespace))
}

fn rendered_spec_with(
    task: &McallTask,
    source_task: impl Fn(&str) -> Option<Arc<McallTask>>,
) -> (McallTaskSpec, Option<String>) {
    let mut spec = task.spec.clone();
    let Some(template) = &task.spec.input_template else {
        return (spec, None);
    };
    let sources = task.spec.input_sources.clone().unwrap_or_default();
    let found: Vec<(String, Option<Arc<McallTask>>)> = sources
        .iter()
        .map(|s| (s.task_ref.clone(), source_task(&s.task_ref)))
        .collect();
    let lookup = |name: &str| {
        found
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, t)| t.as_ref())
            .map(|t| t.status.as_ref())
    };
    match crate::inputs::render(template, &sources, lookup) {
        Ok(input) => {
            spec.input = Some(input);
            (spec, None)
        }
        Err(e) => (spec, Some(e.to_string())),
    }
}

/// Why `environmentFrom` could not be resolved.
#[derive(Debug)]
pub enum ResolveError {
    /// The user's error, naming the field: a missing object or key, a value that is not UTF-8.
    Spec(String),
    /// The API failed (unreachable, forbidden, ...): worth retrying, not the spec's fault.
    Api(kube::Error),
}

/// Resolves every `environmentFrom` entry; Secret values are also listed to be masked.
pub async fn resolve_environment(
    client: &Client,
    namespace: &str,
    spec: &McallTaskSpec,
) -> Result<ResolvedEnvironment, ResolveError> {
    let mut resolved = ResolvedEnvironment::default();
    for (i, source) in spec.environment_from.iter().flatten().enumerate() {
        let value = if let Some(r) = &source.secret_key_ref {
            let field = format!("spec.environmentFrom[{i}].secretKeyRef");
            let value = key_value::<Secret>(client, namespace, r, &field, |secret, key| {
                let data = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| b.0.clone());
                data.or_else(|| {
                    let string = secret.string_data.as_ref().and_then(|d| d.get(key));
                    string.map(|s| s.clone().into_bytes())
                })
            })
            .await?;
            resolved.secrets.push(value.clone());
            value
        } else if let Some(r) = &source.config_map_key_ref {
            let field = format!("spec.environmentFrom[{i}].configMapKeyRef");
            key_value::<ConfigMap>(client, namespace, r, &field, |map, key| {
                let data = map.data.as_ref().and_then(|d| d.get(key));
                data.map(|s| s.clone().into_bytes())
            })
            .await?
        } else {
            continue;
        };
        resolved.values.insert(source.name.clone(), value);
    }
    Ok(resolved)
}

/// The UTF-8 value of `reference`'s key in a Secret or ConfigMap, with errors naming `field`.
async fn key_value<K>(
    client: &Client,
    namespace: &str,
    reference: &KeyReference,
    field: &str,
    value_of: impl Fn(&K, &str) -> Option<Vec<u8>>,
) -> Result<String, ResolveError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&());
    let (name, key) = (&reference.name, &reference.key);
    let object = Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(ResolveError::Api)?
        .ok_or_else(|| {
            ResolveError::Spec(format!(
                "{field}: {kind} {name:?} not found in namespace {namespace}"
            ))
        })?;
    let bytes = value_of(&object, key).ok_or_else(|| {
        ResolveError::Spec(format!("{field}: {kind} {name:?} has no key {key:?}"))
    })?;
    String::from_utf8(bytes)
        .map_err(|_| ResolveError::Spec(format!("{field}: the value of key {key:?} is not UTF-8")))
}
