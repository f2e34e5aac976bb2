{{- define "modelfactory.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of the release's objects, <= 63 characters.
*/}}
{{- define "modelfactory.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelfactory.serviceAccountName" -}}
{{- default (include "modelfactory.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "modelfactory.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelfactory.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelfactory.labels" -}}
{{ include "modelfactory.selectorLabels" . }}
app.kubernetes.io/part-of: modelfactory
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "modelfactory.image" -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) -}}
{{- end -}}

{{/*
What the operator does in each namespace it watches. No wildcards; every verb is used:
- its own resources: read and watch them, patch their metadata (finalizers, annotations), write
  their status;
- Events for every transition (core and events.k8s.io);
- what Helm does for a release: Secrets hold the release records (get, list, create, update,
  patch, delete) and the charts' objects are created, read, patched and deleted (the operator
  watches them too; deleting a release deletes them);
- Pods: read only, to report why a workload does not start;
- the training pods' Role grants get+patch on trainingjobs/status, which the operator holds
  itself: the API server lets nobody grant what it does not have.
*/}}
{{- define "modelfactory.namespacedRules" -}}
- apiGroups: ["modelfactory.dev"]
  resources: ["trainingjobs", "modelservices", "batchpredictions"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["modelfactory.dev"]
  resources: ["trainingjobs/status", "modelservices/status", "batchpredictions/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["modelfactory.dev"]
  resources: ["trainingjobs/finalizers", "modelservices/finalizers",
              "batchpredictions/finalizers"]
  verbs: ["update"]
# Events: the operator posts its own and reads those of pods and claims to say why a pod waits.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts", "services"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["ray.io"]
  resources: ["rayjobs"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# A ModelService with spec.gateway gets an HTTPRoute (when the cluster has Gateway API).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch"]
# A model server that refuses its model says why in its readiness answer, which a kubelet probe
# does not pass on: the operator reads it through the API server. It also reads each replica's
# drift window (GET) and has one replica evaluate their sum (POST).
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["get", "create"]
{{- end -}}

{{/*
Cluster-scoped reads: whether the RayJob CRD is installed.
*/}}
{{- define "modelfactory.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# kopf follows namespaces as they come and go, in both install modes (read-only).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end -}}
