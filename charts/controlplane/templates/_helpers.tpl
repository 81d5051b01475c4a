{{/* Name of the chart (nameOverride wins). */}}
{{- define "controlplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, unless the release name already contains the chart name. */}}
{{- define "controlplane.fullname" -}}
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

{{- define "controlplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "controlplane.labels" -}}
helm.sh/chart: {{ include "controlplane.chart" . }}
{{ include "controlplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: controlplane
{{- end }}

{{/* Labels selecting the control plane's pods (never change between upgrades). */}}
{{- define "controlplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "controlplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "controlplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "controlplane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "controlplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The kind of object a run's bundle travels in (CP_K8S_BUNDLE_KIND: Secret unless config says ConfigMap);
the Role grants exactly that kind. */}}
{{- define "controlplane.bundleKind" -}}
{{- if eq (toString (default "Secret" .Values.config.CP_K8S_BUNDLE_KIND)) "ConfigMap" }}ConfigMap{{ else }}Secret{{ end }}
{{- end }}

{{/* The namespace the run Jobs go to. */}}
{{- define "controlplane.runsNamespace" -}}
{{- .Values.runs.namespace }}
{{- end }}

{{/* Whether an optional Prometheus Operator object is rendered: true, false, or null = the CRDs exist. */}}
{{- define "controlplane.monitoringEnabled" -}}
{{- if kindIs "bool" .enabled }}
{{- if .enabled }}true{{ end }}
{{- else if .root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true
{{- end }}
{{- end }}

{{/* The API's in-cluster URL: what runs with network=api call back (CP_PUBLIC_URL). */}}
{{- define "controlplane.serviceURL" -}}
{{- printf "http://%s.%s.svc:%v" (include "controlplane.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}

{{/* The port /metrics is served on. */}}
{{- define "controlplane.metricsPortName" -}}
{{- if .Values.metricsPort }}metrics{{ else }}http{{ end }}
{{- end }}

{{/* An egress rule to the cluster DNS (empty when networkPolicy.dns.enabled is false). */}}
{{- define "controlplane.dnsEgress" -}}
{{- if .Values.networkPolicy.dns.enabled }}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podLabels | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
{{- end }}

{{/* The Secret holding CP_SIGNING_KEY and CP_SECRETS_KEYS. */}}
{{- define "controlplane.keysSecret" -}}
{{- default (printf "%s-keys" (include "controlplane.fullname" .)) .Values.keys.existingSecret }}
{{- end }}
