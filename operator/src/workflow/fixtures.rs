//! Test-only builders of workflows and steps from YAML.

use mcall_generated::{McallWorkflow, WorkflowTask};

/// Steps from a YAML list of flow mappings, one per line (indentation is ignored).
pub fn steps(yaml: &str) -> Vec<WorkflowTask> {
    let lines: Vec<&str> = yaml.lines().map(str::trim_start).collect();
    serde_yaml::from_str(&lines.join("\n")).expect("valid steps")
}

/// A workflow `wf` in namespace `ns` (uid `u1`, generation 1) with the given spec (YAML).
pub fn workflow(spec: &str) -> McallWorkflow {
    let spec: serde_json::Value = serde_yaml::from_str(spec).expect("valid spec");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow",
        "metadata": {"name": "wf", "namespace": "ns", "uid": "u1", "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .expect("a valid workflow")
}
