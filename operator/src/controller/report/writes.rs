//! Status writes by server-side apply, with one field manager. Every write of a run goes onto the
//! version of the object it last wrote or read, so a result never lands on top of a change it has
//! not seen.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::Reported;
use crate::{Error, Result};

/// The field manager of every status the operator writes.
pub const FIELD_MANAGER: &str = "mcall-operator";

/// What a status write requires of the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: the status is the operator's to set whatever changed (a dependency wait).
    None,
    /// The object is still at the version the status was built from; a result written meanwhile
    /// is never overwritten by a stale view.
    OnRead,
}

/// Writes the status; with `resource_version`, only if the object is still at that version.
/// Returns the version written.
pub async fn write_status_if<K: Reported>(
    api: &Api<K>,
    name: &str,
    status: &K::Status,
    resource_version: Option<&str>,
) -> Result<Option<String>> {
    let mut patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(version) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::Kube {
            op: "writing the status",
            source,
        })?;
    Ok(written.meta().resource_version.clone())
}

/// Writes `status` onto `read` as `precondition` says. `Ok(false)`: the object changed since it
/// was read (the reconcile that change triggers decides again), so whatever goes with this write
/// (its Event) is left out.
pub async fn write<K: Reported>(
    api: &Api<K>,
    read: &K,
    status: &K::Status,
    precondition: Precondition,
) -> Result<bool> {
    let version = match precondition {
        Precondition::None => None,
        Precondition::OnRead => read.resource_version(),
    };
    match write_status_if(api, &read.name_any(), status, version.as_deref()).await {
        Err(e) if is_conflict(&e) => Ok(false),
        other => other.map(|_| true),
    }
}

/// The API server refused the object itself (422): writing it again cannot succeed.
pub fn refused_as_invalid(error: &Error) -> Option<&str> {
    match error {
        Error::Kube {
            source: kube::Error::Api(status),
            ..
        } if status.code == 422 => Some(status.message.as_str()),
        _ => None,
    }
}

pub fn is_conflict(error: &Error) -> bool {
    matches!(
        error,
        Error::Kube {
            source: kube::Error::Api(status),
            ..
        } if status.code == 409
    )
}

/// The object as one run last knew it. A write goes onto that version without reading the
/// object first; when something else wrote in between (409), the object is read again and the
/// status rebuilt from what was read.
pub struct Tracked<K: Reported> {
    api: Api<K>,
    name: String,
    uid: String,
    /// Shared with the cache until the run writes.
    known: Option<Arc<K>>,
}

impl<K: Reported> Tracked<K> {
    pub fn new(api: Api<K>, name: String, uid: String, known: Option<Arc<K>>) -> Self {
        Self {
            api,
            name,
            uid,
            known,
        }
    }

    /// Writes the status `build` makes from the latest object, retrying on conflicts.
    /// `Ok(None)`: nothing written, because the object is gone (or is another object now, or is
    /// being deleted) or `build` declined. On success returns the object as it was before the
    /// write and the status written.
    pub async fn write(
        &mut self,
        mut build: impl FnMut(&K) -> Option<K::Status>,
    ) -> Result<Option<(Arc<K>, K::Status)>> {
        loop {
            let Some(latest) = self.latest().await? else {
                return Ok(None);
            };
            let Some(next) = build(&latest) else {
                self.known = Some(latest);
                return Ok(None);
            };
            let version = latest.resource_version();
            match write_status_if(&self.api, &self.name, &next, version.as_deref()).await {
                Ok(version) => {
                    // Without a version in the answer the next write reads the object first.
                    self.known = version.map(|version| {
                        let mut written = (*latest).clone();
                        written.meta_mut().resource_version = Some(version);
                        *written.status_mut() = Some(next.clone());
                        Arc::new(written)
                    });
                    return Ok(Some((latest, next)));
                }
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The version last known, or else the one read now; `None` when the object is gone,
    /// replaced by another of the same name, or being deleted.
    async fn latest(&mut self) -> Result<Option<Arc<K>>> {
        let latest = match self.known.take() {
            Some(known) => Some(known),
            None => self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|source| Error::Kube {
                    op: "reading the object",
                    source,
                })?
                .map(Arc::new),
        };
        Ok(latest.filter(|o| {
            o.uid().as_deref() == Some(self.uid.as_str()) && o.meta().deletion_timestamp.is_none()
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use mcall_generated::{McallWorkflow, McallWorkflowStatus, Phase};

    use super::*;

    /// Requests seen: method, path with query, body.
    type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

    /// A client whose API server answers every request with `code` (and the body sent back, as
    /// server-side apply does), and the requests it saw: method, path with query, body.
    fn client(code: u16) -> (kube::Client, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let path = parts.uri.path_and_query().unwrap().to_string();
                log.lock()
                    .unwrap()
                    .push((parts.method.to_string(), path, json.clone()));
                let mut answer = json;
                answer["metadata"]["name"] = "w".into();
                answer["metadata"]["resourceVersion"] = "8".into();
                answer["spec"] = serde_json::json!({"tasks": []});
                if code != 200 {
                    answer = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "reason": "Conflict", "code": code, "message": "changed"});
                }
                let response = http::Response::builder()
                    .status(code)
                    .body(kube::client::Body::from(answer.to_string().into_bytes()))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        (kube::Client::new(service, "default"), seen)
    }

    fn workflow() -> McallWorkflow {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow",
            "metadata": {"name": "w", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"},
            "spec": {"tasks": []}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_workflow_status_is_applied_onto_the_version_read_with_the_operators_field_manager() {
        let (client, seen) = client(200);
        let api: Api<McallWorkflow> = Api::namespaced(client, "ns");
        let status = McallWorkflowStatus {
            phase: Some(Phase::Running),
            ..Default::default()
        };
        let written = write(&api, &workflow(), &status, Precondition::OnRead).await;
        assert!(written.unwrap());
        let seen = seen.lock().unwrap();
        let (method, path, body) = &seen[0];
        assert_eq!(method, "PATCH");
        assert!(
            path.starts_with("/apis/mcall.tz.io/v1/namespaces/ns/mcallworkflows/w/status?")
                && path.contains("fieldManager=mcall-operator")
                && path.contains("force=true"),
            "{path}"
        );
        assert_eq!(body["kind"], "McallWorkflow");
        assert_eq!(body["apiVersion"], "mcall.tz.io/v1");
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(body["status"]["phase"], "Running");
    }

    #[tokio::test]
    async fn a_conflict_is_not_written_and_no_precondition_sends_no_version() {
        let (client, seen) = client(409);
        let api: Api<McallWorkflow> = Api::namespaced(client, "ns");
        let status = McallWorkflowStatus::default();
        let written = write(&api, &workflow(), &status, Precondition::OnRead).await;
        assert!(!written.unwrap(), "a conflict means: changed since read");
        let (client, seen_none) = self::client(200);
        let api: Api<McallWorkflow> = Api::namespaced(client, "ns");
        assert!(
            write(&api, &workflow(), &status, Precondition::None)
                .await
                .unwrap()
        );
        assert!(
            seen_none.lock().unwrap()[0].2["metadata"]
                .get("resourceVersion")
                .is_none()
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
