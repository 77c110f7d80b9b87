{{/* Chart name. */}}
{{- define "oort.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or fullnameOverride. Pod (and node) names derive from it. */}}
{{- define "oort.fullname" -}}
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

{{- define "oort.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "oort.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "oort.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oort.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "oort.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oort.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: an existing one, or the chart's. */}}
{{- define "oort.secretName" -}}
{{- default (include "oort.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* True when the pods read an API token from a Secret. */}}
{{- define "oort.hasToken" -}}
{{- if or .Values.apiToken .Values.existingSecret }}true{{ end }}
{{- end }}

{{/* NATS URLs (JSON list): the bundled NATS chart's Service, or the external URLs. */}}
{{- define "oort.natsUrls" -}}
{{- if .Values.nats.enabled -}}
{{- list (printf "nats://%s-nats:4222" .Release.Name) | toJson -}}
{{- else -}}
{{- if not .Values.externalNats.urls -}}
{{- fail "externalNats.urls must list at least one NATS URL when nats.enabled is false" -}}
{{- end -}}
{{- .Values.externalNats.urls | toJson -}}
{{- end -}}
{{- end }}

{{/*
bootstrap_expect: the explicit value; else, on upgrade, the value the running cluster was
formed with (read from the existing ConfigMap, so scaling never changes it); else the replica
count at first install.
*/}}
{{- define "oort.bootstrapExpect" -}}
{{- if .Values.cluster.bootstrapExpect }}
{{- .Values.cluster.bootstrapExpect }}
{{- else }}
{{- $existing := lookup "v1" "ConfigMap" .Release.Namespace (include "oort.fullname" .) }}
{{- $kept := "" }}
{{- if and $existing $existing.data }}
{{- $kept = (index $existing.data "bootstrap-expect") | default "" }}
{{- end }}
{{- $kept | default .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* The oort config.yml: the free-form `config` with the keys the chart manages on top. */}}
{{- define "oort.config" -}}
{{- $managed := dict
  "listen" (printf ":%v" .Values.ports.client)
  "api_listen" (printf ":%v" .Values.ports.api)
  "shutdown_grace_period" (printf "%vs" .Values.shutdownGracePeriodSeconds)
  "callback" (dict
    "connect" .Values.callbacks.connect
    "establish" .Values.callbacks.establish
    "receive" .Values.callbacks.receive
    "close" .Values.callbacks.close
    "timeout" .Values.callbacks.timeout)
  "cluster" (dict
    "nats" (include "oort.natsUrls" . | fromJsonArray)
    "name" .Values.cluster.name
    "data_dir" "/var/lib/oort"
    "bootstrap_expect" (include "oort.bootstrapExpect" . | int)
    "voters" .Values.cluster.voters
    "node_timeout" .Values.cluster.nodeTimeout)
}}
{{- include "oort.natsChecks" . }}
{{- if .Values.natsAuth.credentialsKey }}
{{- $_ := set $managed.cluster "nats_auth" (dict "credentials_file" (printf "%s/nats.creds" (include "oort.natsAuthDir" .))) }}
{{- end }}
{{- $tls := dict }}
{{- if .Values.natsTls.require }}{{ $_ := set $tls "require" true }}{{ end }}
{{- with .Values.natsTls.existingSecret }}
{{- if $.Values.natsTls.caKey }}{{ $_ := set $tls "ca_file" (printf "%s/ca.crt" (include "oort.natsTlsDir" $)) }}{{ end }}
{{- if $.Values.natsTls.certKey }}
{{- $_ := set $tls "cert_file" (printf "%s/tls.crt" (include "oort.natsTlsDir" $)) }}
{{- $_ := set $tls "key_file" (printf "%s/tls.key" (include "oort.natsTlsDir" $)) }}
{{- end }}
{{- end }}
{{- if $tls }}{{ $_ := set $managed.cluster "nats_tls" $tls }}{{ end }}
{{- with (include "oort.trustedProxies" . | fromJsonArray) }}
{{- $_ := set $managed "client_address" (dict "header" $.Values.clientAddress.header "trusted_proxies" .) }}
{{- end }}
{{- $config := mergeOverwrite (deepCopy (.Values.config | default dict)) $managed }}
{{- toYaml $config }}
{{- end }}

{{/* The proxies whose client-address header Oort believes, as a JSON list: the ones named, or
with the Ingress on, the private ranges its controller's pods live in. */}}
{{- define "oort.trustedProxies" -}}
{{- if .Values.clientAddress.trustedProxies -}}
{{- toJson .Values.clientAddress.trustedProxies -}}
{{- else if .Values.ingress.enabled -}}
{{- toJson (list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" "fc00::/7") -}}
{{- else -}}
[]
{{- end -}}
{{- end }}

{{/* Where the NATS .creds file and the NATS TLS files are mounted. */}}
{{- define "oort.natsAuthDir" -}}/etc/oort/nats-auth{{- end }}
{{- define "oort.natsTlsDir" -}}/etc/oort/nats-tls{{- end }}

{{/*
NATS credentials as environment variables, each from a key of natsAuth.existingSecret, and the
cluster secret from clusterSecret.existingSecret; Oort reads OORT_CLUSTER__NATS_AUTH__* and
OORT_CLUSTER__SECRET like any other config key.
*/}}
{{- define "oort.natsAuthEnv" -}}
{{- $secret := .Values.natsAuth.existingSecret }}
{{- range $variable, $key := dict "TOKEN" .Values.natsAuth.tokenKey "USER" .Values.natsAuth.userKey "PASSWORD" .Values.natsAuth.passwordKey "NKEY_SEED" .Values.natsAuth.nkeySeedKey }}
{{- if $key }}
- name: OORT_CLUSTER__NATS_AUTH__{{ $variable }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- with .Values.clusterSecret }}
{{- if .existingSecret }}
- name: OORT_CLUSTER__SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .key }}
{{- end }}
{{- end }}
- name: OORT_SESSION__RESUME_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "oort.resumeSecretName" . }}
      key: {{ if .Values.resumeSecret.existingSecret }}{{ .Values.resumeSecret.key }}{{ else }}secret{{ end }}
{{- end }}

{{/* The Secret holding the resume secret: the one named, or the one the chart keeps. */}}
{{- define "oort.resumeSecretName" -}}
{{- default (printf "%s-resume" (include "oort.fullname" .)) .Values.resumeSecret.existingSecret }}
{{- end }}

{{/* Refuses NATS settings Oort would refuse at start, naming the values to fix. */}}
{{- define "oort.natsChecks" -}}
{{- $auth := .Values.natsAuth }}
{{- $methods := 0 }}
{{- if $auth.tokenKey }}{{ $methods = add1 $methods }}{{ end }}
{{- if or $auth.userKey $auth.passwordKey }}{{ $methods = add1 $methods }}{{ end }}
{{- if $auth.nkeySeedKey }}{{ $methods = add1 $methods }}{{ end }}
{{- if $auth.credentialsKey }}{{ $methods = add1 $methods }}{{ end }}
{{- if gt $methods 1 }}
{{- fail "natsAuth: set one method: tokenKey, userKey with passwordKey, nkeySeedKey or credentialsKey" }}
{{- end }}
{{- if and (gt $methods 0) (not $auth.existingSecret) }}
{{- fail "natsAuth.existingSecret must name the Secret holding the NATS credentials" }}
{{- end }}
{{- if ne (empty $auth.userKey) (empty $auth.passwordKey) }}
{{- fail "natsAuth: userKey and passwordKey go together" }}
{{- end }}
{{- $tls := .Values.natsTls }}
{{- if and (or $tls.caKey $tls.certKey) (not $tls.existingSecret) }}
{{- fail "natsTls.existingSecret must name the Secret holding the NATS TLS files" }}
{{- end }}
{{- if and $tls.existingSecret (not (or $tls.caKey $tls.certKey)) }}
{{- fail "natsTls.existingSecret is set: name caKey, certKey or both" }}
{{- end }}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) }}
{{- fail "natsTls: certKey and keyKey go together (mutual TLS)" }}
{{- end }}
{{- end }}
