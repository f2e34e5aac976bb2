{{/*
The server Deployment. Rendered for the stable version (deployment.yaml) and, during a rollout,
for the other version (candidate.yaml) with its own name, labels, environment and replicas.
*/}}
{{- define "model-service.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "model-service.metadata" . | nindent 2 }}
spec:
  {{- if .Values.fixedReplicas }}
  replicas: {{ .Values.fixedReplicas }}
  {{- else }}
  replicas: {{ include "model-service.replicas" . }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "model-service.selectorLabels" . | nindent 6 }}
  # Start a new pod before stopping an old one, and stop an old one only once the new one is
  # ready: a roll never lowers the serving capacity.
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "model-service.labels" . | nindent 8 }}
      annotations:
        modelfactory.dev/model-version: {{ .Values.modelVersion | toString | quote }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .Values.port | quote }}
        prometheus.io/path: /metrics
    spec:
      {{- with .Values.pod.serviceAccountName }}
      serviceAccountName: {{ . }}
      {{- end }}
      # The server never calls the API server.
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with .Values.pod.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . | quote }}
        {{- end }}
      {{- end }}
      {{- with .Values.pod.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.pod.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 1000
        seccompProfile:
          type: RuntimeDefault
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "model-service.selectorLabels" . | nindent 14 }}
          matchLabelKeys:
            - pod-template-hash
      containers:
        - name: server
          image: {{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command:
            {{- toYaml .Values.command | nindent 12 }}
          env:
            # Probes are answered on a port of their own, off the event loop (see healthPort).
            - name: MF_HEALTH_PORT
              value: {{ .Values.healthPort | quote }}
            {{- if or .Values.env .Values.pod.env }}
            {{- include "model-service.env" . | nindent 12 }}
            {{- end }}
          {{- with .Values.pod.envFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: http
              containerPort: {{ .Values.port }}
              protocol: TCP
            - name: health
              containerPort: {{ .Values.healthPort }}
              protocol: TCP
          # Loading and verifying a model can take a while: up to 5 minutes before liveness counts.
          startupProbe:
            httpGet:
              path: /v2/health/ready
              port: health
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 60
          readinessProbe:
            httpGet:
              path: /v2/health/ready
              port: health
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: /v2/health/live
              port: health
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          lifecycle:
            # Keep serving while the endpoints controller and the proxies drop the pod.
            preStop:
              sleep:
                seconds: 5
          # Memory is not compressible: always limited (to the request unless memoryLimit says
          # otherwise). CPU is limited only when cpuLimit says so (a limit throttles).
          resources:
            requests:
              cpu: {{ .Values.resources.cpu | quote }}
              memory: {{ .Values.resources.memory | quote }}
            limits:
              {{- with .Values.resources.cpuLimit }}
              cpu: {{ . | quote }}
              {{- end }}
              memory: {{ .Values.resources.memoryLimit | default .Values.resources.memory | quote }}
          securityContext:
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
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .Values.volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- with .Values.volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}
