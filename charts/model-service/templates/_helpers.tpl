{{/*
Labels of every object: the operator's labels plus app.kubernetes.io/component.
*/}}
{{- define "model-service.labels" -}}
{{- $labels := deepCopy .Values.labels -}}
{{- $_ := set $labels "app.kubernetes.io/component" "serving" -}}
{{ toYaml $labels }}
{{- end -}}

{{/*
Labels that select the server pods; fixed for the life of the release.
*/}}
{{- define "model-service.selectorLabels" -}}
app.kubernetes.io/name: {{ index .Values.labels "app.kubernetes.io/name" | quote }}
app.kubernetes.io/instance: {{ index .Values.labels "app.kubernetes.io/instance" | quote }}
app.kubernetes.io/component: serving
{{- end -}}

{{/*
ownerReferences to the ModelService, so that deleting it garbage-collects the release's objects.
*/}}
{{- define "model-service.ownerReferences" -}}
{{- with .Values.owner -}}
ownerReferences:
  - apiVersion: {{ .apiVersion | quote }}
    kind: {{ .kind | quote }}
    name: {{ .name | quote }}
    uid: {{ .uid | quote }}
    controller: true
    blockOwnerDeletion: false
{{- end }}
{{- end -}}

{{/*
metadata: name, namespace, labels and owner of every object of the release.
*/}}
{{- define "model-service.metadata" -}}
name: {{ .Values.name }}
namespace: {{ .Release.Namespace }}
labels:
  {{- include "model-service.labels" . | nindent 2 }}
{{- if .Values.owner }}
{{ include "model-service.ownerReferences" . }}
{{- end }}
{{- end -}}

{{/*
Environment of the server: its configuration (env, sorted), then pod.env in its own order (so it
may refer to the variables before it).
*/}}
{{- define "model-service.env" -}}
{{- $env := list -}}
{{- range $name, $value := .Values.env -}}
{{- $env = append $env (dict "name" $name "value" $value) -}}
{{- end -}}
{{ toYaml (concat $env .Values.pod.env) }}
{{- end -}}

{{/*
Replicas of the Deployment: replicas.min on creation; afterwards the live count the
HorizontalPodAutoscaler chose, kept within [min, max], so that an upgrade never scales a
busy service down. (lookup returns nothing under `helm template`: min.)
*/}}
{{- define "model-service.replicas" -}}
{{- $min := int64 .Values.replicas.min -}}
{{- $max := int64 .Values.replicas.max -}}
{{- $replicas := $min -}}
{{- $live := lookup "apps/v1" "Deployment" .Release.Namespace .Values.name -}}
{{- if and $live (hasKey $live "spec") (hasKey $live.spec "replicas") -}}
{{- $replicas = min (max (int64 $live.spec.replicas) $min) $max -}}
{{- end -}}
{{ $replicas }}
{{- end -}}
