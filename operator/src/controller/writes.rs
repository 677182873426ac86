//! Status writes. Every write of an execution goes onto the version of the task it last wrote or
//! read, so a result never lands on top of a change it has not seen.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use mcall_generated::{McallTask, McallTaskStatus};
use serde_json::json;

use super::{FIELD_MANAGER, TaskKey};
use crate::{Error, Result};

pub(super) async fn write_status(
    api: &Api<McallTask>,
    name: &str,
    status: &McallTaskStatus,
) -> Result<()> {
    write_status_if(api, name, status, None).await.map(drop)
}

/// Writes the status; with `resource_version`, only if the object is still at that version.
/// Returns the version written.
pub(super) async fn write_status_if(
    api: &Api<McallTask>,
    name: &str,
    status: &McallTaskStatus,
    resource_version: Option<&str>,
) -> Result<Option<String>> {
    let mut patch =
        json!({ "apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "status": status });
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
            op: "writing the task status",
            source,
        })?;
    Ok(written.metadata.resource_version)
}

/// Writes a status built from `read`, only if the task is still at that version. `Ok(false)`:
/// something wrote in between (the reconcile that write triggers decides again), so whatever
/// goes with this write (its Event) is left out.
pub(super) async fn write_onto_read(
    api: &Api<McallTask>,
    read: &McallTask,
    status: &McallTaskStatus,
) -> Result<bool> {
    let version = read.resource_version();
    match write_status_if(api, &read.name_any(), status, version.as_deref()).await {
        Err(e) if is_conflict(&e) => Ok(false),
        other => other.map(|_| true),
    }
}

/// The API server refused the object itself (422): writing it again cannot succeed.
pub(super) fn refused_as_invalid(error: &Error) -> Option<&str> {
    match error {
        Error::Kube {
            source: kube::Error::Api(status),
            ..
        } if status.code == 422 => Some(status.message.as_str()),
        _ => None,
    }
}

pub(super) fn is_conflict(error: &Error) -> bool {
    matches!(
        error,
        Error::Kube {
            source: kube::Error::Api(status),
            ..
        } if status.code == 409
    )
}

/// The task as one execution last knew it. A write goes onto that version without reading the
/// task first; when something else wrote in between (409), the task is read again and the status
/// rebuilt from what was read.
pub(super) struct Tracked {
    api: Api<McallTask>,
    key: TaskKey,
    uid: String,
    /// Shared with the cache until the execution writes.
    known: Option<Arc<McallTask>>,
}

impl Tracked {
    pub fn new(
        api: Api<McallTask>,
        key: TaskKey,
        uid: String,
        known: Option<Arc<McallTask>>,
    ) -> Self {
        Self {
            api,
            key,
            uid,
            known,
        }
    }

    /// Writes the status `build` makes from the latest task, retrying on conflicts. `Ok(None)`:
    /// nothing written, because the task is gone (or is another task now, or is being deleted)
    /// or `build` declined. On success returns the task as it was before the write and the
    /// status written.
    pub async fn write(
        &mut self,
        mut build: impl FnMut(&McallTask) -> Option<McallTaskStatus>,
    ) -> Result<Option<(Arc<McallTask>, McallTaskStatus)>> {
        loop {
            let latest = match self.known.take() {
                Some(task) => Some(task),
                None => self
                    .api
                    .get_opt(&self.key.name)
                    .await
                    .map_err(|source| Error::Kube {
                        op: "reading the task",
                        source,
                    })?
                    .map(Arc::new),
            };
            let Some(latest) = latest.filter(|t| {
                t.uid().as_deref() == Some(self.uid.as_str())
                    && t.metadata.deletion_timestamp.is_none()
            }) else {
                return Ok(None);
            };
            let Some(next) = build(&latest) else {
                self.known = Some(latest);
                return Ok(None);
            };
            match write_status_if(
                &self.api,
                &self.key.name,
                &next,
                latest.resource_version().as_deref(),
            )
            .await
            {
                Ok(version) => {
                    // Without a version in the answer the next write reads the task first.
                    self.known = version.map(|version| {
                        let mut written = (*latest).clone();
                        written.metadata.resource_version = Some(version);
                        written.status = Some(next.clone());
                        Arc::new(written)
                    });
                    return Ok(Some((latest, next)));
                }
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
