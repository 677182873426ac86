//! `environmentFrom`: values from Secrets and ConfigMaps of the task's namespace.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use mcall_generated::McallTaskSpec;

use crate::request::ResolvedEnvironment;

/// Why `environmentFrom` could not be resolved.
#[derive(Debug)]
pub enum ResolveError {
    /// The user's error, naming the field: a missing object or key, a value that is not UTF-8.
    Spec(String),
    /// The API failed (unreachable, forbidden, ...): worth retrying, not the spec's fault.
    Api(kube::Error),
}

/// Resolves every `environmentFrom` entry.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    spec: &McallTaskSpec,
) -> Result<ResolvedEnvironment, ResolveError> {
    let mut resolved = ResolvedEnvironment::default();
    for (i, source) in spec.environment_from.iter().flatten().enumerate() {
        if let Some(r) = &source.secret_key_ref {
            let field = format!("spec.environmentFrom[{i}].secretKeyRef");
            let secret = Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&r.name)
                .await
                .map_err(ResolveError::Api)?
                .ok_or_else(|| {
                    ResolveError::Spec(format!(
                        "{field}: Secret {:?} not found in namespace {namespace}",
                        r.name
                    ))
                })?;
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|b| b.0.clone())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(&r.key))
                        .map(|s| s.clone().into_bytes())
                })
                .ok_or_else(|| {
                    ResolveError::Spec(format!(
                        "{field}: Secret {:?} has no key {:?}",
                        r.name, r.key
                    ))
                })?;
            let value = String::from_utf8(bytes).map_err(|_| {
                ResolveError::Spec(format!(
                    "{field}: the value of key {:?} is not UTF-8",
                    r.key
                ))
            })?;
            resolved.secrets.push(value.clone());
            resolved.values.insert(source.name.clone(), value);
        } else if let Some(r) = &source.config_map_key_ref {
            let field = format!("spec.environmentFrom[{i}].configMapKeyRef");
            let map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&r.name)
                .await
                .map_err(ResolveError::Api)?
                .ok_or_else(|| {
                    ResolveError::Spec(format!(
                        "{field}: ConfigMap {:?} not found in namespace {namespace}",
                        r.name
                    ))
                })?;
            let value = map
                .data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .cloned()
                .ok_or_else(|| {
                    ResolveError::Spec(format!(
                        "{field}: ConfigMap {:?} has no key {:?}",
                        r.name, r.key
                    ))
                })?;
            resolved.values.insert(source.name.clone(), value);
        }
    }
    Ok(resolved)
}
