//! The chart's RBAC template: a ClusterRole + binding, or a Role + binding per watched namespace,
//! plus a Role in the release namespace for leader election, and a ClusterRole for the rules on
//! cluster-scoped APIs whatever the namespaces. Rules come from spec/rbac.yaml.

use std::fmt::Write;

use super::{CHART_DIR, helm_template_header};
use crate::GeneratedFiles;
use crate::ir::{Ir, RbacRule};

pub fn emit(ir: &Ir) -> GeneratedFiles {
    let mut out = helm_template_header("spec/rbac.yaml");
    out.push_str(
        r#"{{- if .Values.rbac.create }}
{{- $fullname := include "mcall-operator.fullname" . }}
{{- $serviceAccount := include "mcall-operator.serviceAccountName" . }}
{{- if .Values.watchNamespaces }}
{{- range $namespace := .Values.watchNamespaces }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $fullname }}
  namespace: {{ $namespace }}
  labels:
    {{- include "mcall-operator.labels" $ | nindent 4 }}
"#,
    );
    rules(&mut out, &ir.rbac.rules);
    out.push_str(
        r#"---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $fullname }}
  namespace: {{ $namespace }}
  labels:
    {{- include "mcall-operator.labels" $ | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $fullname }}
subjects:
  - kind: ServiceAccount
    name: {{ $serviceAccount }}
    namespace: {{ $.Release.Namespace }}
{{- end }}
{{- else }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "mcall-operator.labels" . | nindent 4 }}
"#,
    );
    rules(&mut out, &ir.rbac.rules);
    out.push_str(
        r#"---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "mcall-operator.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $fullname }}
subjects:
  - kind: ServiceAccount
    name: {{ $serviceAccount }}
    namespace: {{ .Release.Namespace }}
{{- end }}
"#,
    );
    if !ir.rbac.operator_namespace_rules.is_empty() {
        operator_namespace_role(&mut out, &ir.rbac.operator_namespace_rules);
    }
    if !ir.rbac.cluster_rules.is_empty() {
        cluster_role(&mut out, &ir.rbac.cluster_rules);
    }
    out.push_str("{{- end }}\n");
    GeneratedFiles::from([(format!("{CHART_DIR}/templates/rbac.yaml").into(), out)])
}

/// `{fullname}-operator` in the release namespace: what only the operator's own namespace needs
/// (the leader-election Lease).
fn operator_namespace_role(out: &mut String, operator_namespace_rules: &[RbacRule]) {
    out.push_str(
        r#"---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $fullname }}-operator
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "mcall-operator.labels" . | nindent 4 }}
"#,
    );
    rules(out, operator_namespace_rules);
    out.push_str(
        r#"---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $fullname }}-operator
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "mcall-operator.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $fullname }}-operator
subjects:
  - kind: ServiceAccount
    name: {{ $serviceAccount }}
    namespace: {{ .Release.Namespace }}
"#,
    );
}

/// `{fullname}-cluster`: rules a Role cannot grant, so a ClusterRole in every mode.
fn cluster_role(out: &mut String, cluster_rules: &[RbacRule]) {
    out.push_str(
        r#"---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $fullname }}-cluster
  labels:
    {{- include "mcall-operator.labels" . | nindent 4 }}
"#,
    );
    rules(out, cluster_rules);
    out.push_str(
        r#"---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $fullname }}-cluster
  labels:
    {{- include "mcall-operator.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $fullname }}-cluster
subjects:
  - kind: ServiceAccount
    name: {{ $serviceAccount }}
    namespace: {{ .Release.Namespace }}
"#,
    );
}

fn rules(out: &mut String, rules: &[RbacRule]) {
    out.push_str("rules:\n");
    for r in rules {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The reason goes into the rendered object as a comment, so reviewers of the chart see it too.
        for line in r.why.lines() {
            let _ = writeln!(out, "  # {line}");
        }
        let _ = writeln!(out, "  - apiGroups: [{}]", list(&r.api_groups));
        let _ = writeln!(out, "    resources: [{}]", list(&r.resources));
        let _ = writeln!(out, "    verbs: [{}]", list(&r.verbs));
    }
}
