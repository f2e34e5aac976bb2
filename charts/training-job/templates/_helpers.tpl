{{/*
Labels of every object: the operator's labels plus app.kubernetes.io/component.
*/}}
{{- define "training-job.labels" -}}
{{- $labels := deepCopy .Values.labels -}}
{{- $_ := set $labels "app.kubernetes.io/component" (index .Values.labels "app.kubernetes.io/component" | default "training") -}}
{{ toYaml $labels }}
{{- end -}}

{{/*
Labels of the training pods: the object labels plus the run id.
*/}}
{{- define "training-job.podLabels" -}}
{{ include "training-job.labels" . }}
modelfactory.dev/run-id: {{ .Values.runId | quote }}
{{- end -}}

{{/*
ownerReferences to the TrainingJob, so that deleting it garbage-collects the release's objects.
*/}}
{{- define "training-job.ownerReferences" -}}
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
metadata: name, labels and owner of a namespaced object. Call with (list $ "name").
*/}}
{{- define "training-job.metadata" -}}
{{- $root := index . 0 -}}
name: {{ index . 1 }}
namespace: {{ $root.Release.Namespace }}
labels:
  {{- include "training-job.labels" $root | nindent 2 }}
{{- if $root.Values.owner }}
{{ include "training-job.ownerReferences" $root }}
{{- end }}
{{- end -}}

{{- define "training-job.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
{{- end -}}

{{/*
Pod security context: Pod Security Standard "restricted".
*/}}
{{- define "training-job.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "training-job.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The ServiceAccount every pod runs as: the one spec.pod names, else the chart's own.
*/}}
{{- define "training-job.podServiceAccount" -}}
{{- .Values.pod.serviceAccountName | default .Values.serviceAccountName -}}
{{- end -}}

{{/*
Pull secrets and placement of every pod (spec.pod); empty when none is set.
*/}}
{{- define "training-job.podPlacement" -}}
{{- with .Values.pod.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end }}
{{- with .Values.pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Environment of the training containers: the runtime configuration (env, sorted), HOME=/tmp unless
env or pod.env sets it, then pod.env in its own order (so it may refer to the variables before it).
*/}}
{{- define "training-job.env" -}}
{{- $env := list -}}
{{- $defaults := dict "HOME" "/tmp" -}}
{{- range .Values.pod.env -}}
{{- $_ := unset $defaults .name -}}
{{- end -}}
{{- range $name, $value := merge (dict) .Values.env $defaults -}}
{{- $env = append $env (dict "name" $name "value" $value) -}}
{{- end -}}
{{ toYaml (concat $env .Values.pod.env) }}
{{- end -}}

{{/*
CPU request; memory request = memory limit (memory is not compressible: a pod never gets more
than it asked for, so it is not killed when the node runs short).
*/}}
{{- define "training-job.resources" -}}
requests:
  cpu: {{ .Values.resources.cpu | quote }}
  memory: {{ .Values.resources.memory | quote }}
limits:
  memory: {{ .Values.resources.memory | quote }}
{{- end -}}

{{/*
Writable scratch space on a read-only root filesystem (/tmp, Ray's session directory) and
shared memory for Ray's object store (/dev/shm, bounded by the container's memory).
*/}}
{{- define "training-job.volumes" -}}
- name: tmp
  emptyDir: {}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.resources.memory | quote }}
{{- with .Values.volumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "training-job.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: dshm
  mountPath: /dev/shm
{{- with .Values.volumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}
