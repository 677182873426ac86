{{/*
Hand-written helpers. The generated templates/rbac.yaml includes mcall-operator.fullname,
mcall-operator.labels and mcall-operator.serviceAccountName: keep those names.
*/}}

{{/*
The chart's name.
*/}}
{{- define "mcall-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's objects: the release name, with the chart name appended unless
the release name already contains it (mcall-operator-prod stays mcall-operator-prod).
Truncated to 63 characters, the limit of a DNS label.
*/}}
{{- define "mcall-operator.fullname" -}}
{{- $name := include "mcall-operator.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The chart label: name-version, with + (not allowed in label values) replaced.
*/}}
{{- define "mcall-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels that select the operator's pods. Never change them: a Deployment's selector is immutable.
*/}}
{{- define "mcall-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcall-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels of every object of the chart.
*/}}
{{- define "mcall-operator.labels" -}}
helm.sh/chart: {{ include "mcall-operator.chart" . }}
{{ include "mcall-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | default .Chart.Version | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: mcall
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
The operator's ServiceAccount: serviceAccount.name, else the full name when the chart creates
it, else "default".
*/}}
{{- define "mcall-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcall-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The operator image: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "mcall-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
The admission webhook's Service and the Secret holding its serving certificate.
*/}}
{{- define "mcall-operator.webhookService" -}}
{{- printf "%s-webhook" (include "mcall-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcall-operator.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "mcall-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
