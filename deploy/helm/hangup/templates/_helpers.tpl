{{/* Every helper is prefixed with the chart name: helpers are global across subcharts. */}}

{{/* hangup.name is the chart name, or nameOverride. */}}
{{- define "hangup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* hangup.fullname prefixes every resource; it is the release name when that already contains the chart name. */}}
{{- define "hangup.fullname" -}}
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

{{/* hangup.webhookName is the MutatingWebhookConfiguration's name; it is cluster-scoped, so it carries the release namespace. */}}
{{- define "hangup.webhookName" -}}
{{- printf "%s-%s" (include "hangup.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* hangup.serviceName is the webhook's Service. */}}
{{- define "hangup.serviceName" -}}
{{- printf "%s-inject" (include "hangup.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* hangup.serviceHosts are the Service's DNS names, for the serving certificate. */}}
{{- define "hangup.serviceHosts" -}}
{{- $svc := include "hangup.serviceName" . -}}
{{ $svc }}.{{ .Release.Namespace }}.svc,{{ $svc }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end }}

{{/* hangup.image is the hangup image reference: what injected pods run. */}}
{{- define "hangup.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* hangup.webhookImage is the hangup-tools image reference: the webhook's. */}}
{{- define "hangup.webhookImage" -}}
{{- printf "%s:%s" .Values.image.webhookRepository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* hangup.labels are on every resource. */}}
{{- define "hangup.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "hangup.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* hangup.selectorLabels select the webhook pods. */}}
{{- define "hangup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hangup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: inject
{{- end }}

{{/* hangup.sidecarConfig is the file `sidecar inject --sidecar-config` reads (pkg/inject.FileConfig). */}}
{{- define "hangup.sidecarConfig" -}}
image: {{ include "hangup.image" . }}
initImage: {{ .Values.sidecar.initImage | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
binaryPath: {{ .Values.binaryPath }}
uid: {{ .Values.uid }}
proxyPort: {{ .Values.sidecar.proxyPort }}
adminPort: {{ .Values.sidecar.adminPort }}
notifyAddr: {{ .Values.sidecar.notifyAddr | quote }}
notifyHeaders: {{ .Values.sidecar.notifyHeaders | toJson }}
watchAddr: {{ .Values.sidecar.watchAddr | quote }}
keepaliveTime: {{ .Values.sidecar.keepaliveTime | quote }}
keepaliveTimeout: {{ .Values.sidecar.keepaliveTimeout | quote }}
rttInterval: {{ .Values.sidecar.rttInterval | quote }}
rttHeader: {{ .Values.sidecar.rttHeader }}
mode: {{ .Values.sidecar.mode }}
redirectBackend: {{ .Values.sidecar.redirectBackend }}
otlpEndpoint: {{ .Values.sidecar.otlpEndpoint | quote }}
resources:
  {{- toYaml .Values.sidecar.resources | nindent 2 }}
{{- end }}

{{/* hangup.namespaceSelector excludes kube-system, the release namespace and webhook.excludedNamespaces; the argument "In" or "NotIn" picks the namespaces with or without hangup.dev/inject=enabled. */}}
{{- define "hangup.namespaceSelector" -}}
{{- $root := index . 0 -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml (concat (list "kube-system" $root.Release.Namespace) $root.Values.webhook.excludedNamespaces | uniq) | nindent 6 }}
  - key: hangup.dev/inject
    operator: {{ index . 1 }}
    values: ["enabled"]
{{- end }}
