{{/* Names and labels shared by the templates. */}}

{{- define "mro.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mro.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mro.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mro.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mro.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of the Model and ModelRunner objects the release declares. */}}
{{- define "mro.resourceLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "mro.name" . }}
{{- end }}

{{- define "mro.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mro.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mro.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "mro.runnerImage" -}}
{{- default (printf "ghcr.io/modelrunner/runner:%s" .Chart.AppVersion) .Values.operator.runnerImage }}
{{- end }}

{{/* The rules the operator needs in every namespace it watches (Role or ClusterRole). */}}
{{- define "mro.namespacedRules" -}}
# Its own resources: watch them, add kopf's finalizer and annotations, write status; a
# ModelRunner is also read by name and its spec.replicas set by the gateway's autoscaling.
# (tests/reliability/test_rbac.py names the code behind every rule here.)
- apiGroups: [modelrunner.io]
  resources: [models, modelgateways]
  verbs: [list, watch, patch]
- apiGroups: [modelrunner.io]
  resources: [modelrunners]
  verbs: [get, list, watch, patch]
- apiGroups: [modelrunner.io]
  resources: [models/status, modelrunners/status, modelgateways/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion (clusters with OwnerReferencesPermissionEnforcement).
- apiGroups: [modelrunner.io]
  resources: [models/finalizers, modelrunners/finalizers, modelgateways/finalizers]
  verbs: [update]
# What a ModelRunner owns, written by server-side apply (patch; create when absent). Services
# are also read by name (a gateway refuses to take over a Service it does not own).
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, create, patch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [create, patch]
# What a ModelGateway owns: its Deployment, its routing table ConfigMap, and the ServiceAccount,
# Role and RoleBinding that let its pods read that one ConfigMap. Kubernetes lets the operator
# grant only what it holds itself, hence get/list/watch on ConfigMaps.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, patch]
# Runner pods: which replicas are ready, and why one is not scheduled.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# The runner pods' modelrunner.io/models-ready readiness gate condition.
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
# Events on Models and ModelRunners (phase changes, delete retries, handler errors).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Secrets by name only, never listed or watched: each pod-mode ModelRunner's management Secret
# (created once, owned by the ModelRunner, never updated), and those Models and ModelRunners
# name (pullSecretRef, managementSecretRef).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
{{- end }}

{{- define "mro.peeringRules" -}}
- apiGroups: [kopf.dev]
  resources: [{{ if .Values.watchNamespaces }}kopfpeerings{{ else }}clusterkopfpeerings{{ end }}]
  verbs: [get, list, watch, patch]
{{- end }}
