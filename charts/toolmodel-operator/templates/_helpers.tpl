{{/* Names, labels and image references shared by the templates. */}}

{{- define "toolmodel-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "toolmodel-operator.fullname" -}}
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

{{- define "toolmodel-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "toolmodel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "toolmodel-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's pods (not the helm test's). */}}
{{- define "toolmodel-operator.operatorSelectorLabels" -}}
{{ include "toolmodel-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's own labels. Not app.kubernetes.io/managed-by=toolmodel-operator: that one marks
the objects the operator makes for ToolModels, which it watches.
*/}}
{{- define "toolmodel-operator.labels" -}}
helm.sh/chart: {{ include "toolmodel-operator.chart" . }}
{{ include "toolmodel-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: toolmodel
{{- end }}

{{- define "toolmodel-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "toolmodel-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest, or repository:tag (the tag defaulting to the appVersion). Argument: (list image context). */}}
{{- define "toolmodel-operator.imageRef" -}}
{{- $image := index . 0 }}
{{- $context := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $context.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "toolmodel-operator.image" -}}
{{- include "toolmodel-operator.imageRef" (list .Values.image .) }}
{{- end }}

{{- define "toolmodel-operator.engineImage" -}}
{{- include "toolmodel-operator.imageRef" (list .Values.engineImage .) }}
{{- end }}

{{- define "toolmodel-operator.proxyImage" -}}
{{- include "toolmodel-operator.imageRef" (list .Values.proxyImage .) }}
{{- end }}

{{/*
The rules for the objects the operator serves, in one namespace or all. Each verb is used:
  toolmodels          get, list, watch     read, resync, kopf's watch
  toolmodels/status   patch                the status it computes
  toolmodels/finalizers  update            no request: the children's owner references block their
                                           owner's deletion (blockOwnerDeletion), which admission
                                           (OwnerReferencesPermissionEnforcement) allows only to
                                           who may update the owner's finalizers
  deployments         get, list, watch, create, patch     apply (get, then server-side apply: patch,
                                                          and create when it creates), watch
                      + delete, with LeaderWorkerSets     a ToolModel moving to several nodes loses
                                                          its Deployment (and back: its LeaderWorkerSet)
  services            get, list, watch, create, patch
  configmaps          get, list, watch, create, patch, delete   + its chat-template ConfigMap goes
                                                                  when the spec moves to the user's
  pods                list, watch          status from the pods, watch
  secrets             get                  a Secret a ToolModel names must exist (no list, no watch)
  events              create, list         the operator posts events; status reads the pods' events
and, each only when scaleOut grants it (toolmodel-operator.scaleOut), get, list, watch, create,
patch and delete (apply, watch, and the object goes when the spec no longer asks for it) on
  leaderworkersets    leaderworkerset.x-k8s.io   spec.parallelism over more than one node
  scaledobjects       keda.sh                    spec.serving.autoscaling via KEDA
  horizontalpodautoscalers  autoscaling          spec.serving.autoscaling via an HPA
  inferencepools      inference.networking.k8s.io  spec.serving.inferencePool
tests/chart/test_chart_rbac.py runs the operator against an emulated API server and checks every
request it makes against these rules; tests/operator (backend "real") runs it on a real API server
with the rendered ClusterRole, a ServiceAccount token and OwnerReferencesPermissionEnforcement.
*/}}
{{- define "toolmodel-operator.namespacedRules" -}}
{{- $leaderWorkerSet := include "toolmodel-operator.scaleOut" (list "leaderWorkerSet" .) -}}
- apiGroups: [toolmodel.dev]
  resources: [toolmodels]
  verbs: [get, list, watch]
- apiGroups: [toolmodel.dev]
  resources: [toolmodels/status]
  verbs: [patch]
- apiGroups: [toolmodel.dev]
  resources: [toolmodels/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch{{ if $leaderWorkerSet }}, delete{{ end }}]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- if $leaderWorkerSet }}
- apiGroups: [leaderworkerset.x-k8s.io]
  resources: [leaderworkersets]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
{{- if include "toolmodel-operator.scaleOut" (list "keda" .) }}
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
{{- if include "toolmodel-operator.scaleOut" (list "hpa" .) }}
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
{{- if include "toolmodel-operator.scaleOut" (list "inferencePool" .) }}
- apiGroups: [inference.networking.k8s.io]
  resources: [inferencepools]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
{{- end }}

{{/*
Whether the operator is granted a scale-out feature's kind: its API (group/version/Kind), or empty. scaleOut.FEATURE true
or false decides; auto grants when the cluster serves the kind (group/version/Kind), as Helm sees it:
at install and upgrade, and for `helm template` only what --api-versions names. These are the kinds
the operator looks for itself. The HPA's is served by every Kubernetes since 1.23, so there auto
grants it, as the operator uses an HPA wherever KEDA is not installed. (Not the bare group version:
`helm template` reports autoscaling/v2 with no cluster at all.) Argument: (list feature context).
*/}}
{{/*
The kinds the operator is granted (toolmodel-operator.scaleOut), comma-separated, for its
--scale-out-kinds.
*/}}
{{- define "toolmodel-operator.scaleOutKinds" -}}
{{- $kinds := list }}
{{- range $feature := list "hpa" "inferencePool" "keda" "leaderWorkerSet" }}
{{- with include "toolmodel-operator.scaleOut" (list $feature $) }}
{{- $kinds = append $kinds (last (splitList "/" .)) }}
{{- end }}
{{- end }}
{{- join "," $kinds }}
{{- end }}

{{- define "toolmodel-operator.scaleOut" -}}
{{- $feature := index . 0 }}
{{- $context := index . 1 }}
{{- $apis := dict
  "leaderWorkerSet" "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"
  "keda" "keda.sh/v1alpha1/ScaledObject"
  "hpa" "autoscaling/v2/HorizontalPodAutoscaler"
  "inferencePool" "inference.networking.k8s.io/v1/InferencePool" }}
{{- if not (hasKey $apis $feature) }}
{{- fail (printf "toolmodel-operator.scaleOut: no feature %q" $feature) }}
{{- end }}
{{- $setting := toString (index $context.Values.scaleOut $feature) }}
{{- $api := get $apis $feature }}
{{- if or (eq $setting "true") (and (eq $setting "auto") ($context.Capabilities.APIVersions.Has $api)) }}{{ $api }}{{ end }}
{{- end }}

{{/*
kopf's peering: it lists and watches the peering objects and patches its keep-alive into ours (by
name; kopf never gets, creates or deletes them). Argument: (list resource context).
*/}}
{{- define "toolmodel-operator.peeringRules" -}}
{{- $resource := index . 0 }}
{{- $context := index . 1 -}}
- apiGroups: [kopf.dev]
  resources: [{{ $resource }}]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ $resource }}]
  resourceNames: [{{ $context.Values.peering.name | quote }}]
  verbs: [patch]
{{- end }}

{{/*
checkov annotations: the findings that do not apply, each with its reason. Argument: (list image
[extra-skip...]), image being the values of the pod's image.
*/}}
{{- define "toolmodel-operator.checkovSkips" -}}
{{- $image := index . 0 }}
{{- $skips := list }}
{{- if not $image.digest }}
{{- $skips = append $skips "CKV_K8S_43=images are pinned by release tag by default; set the image's digest value to pin by digest" }}
{{- end }}
{{- if ne (default "IfNotPresent" $image.pullPolicy) "Always" }}
{{- $skips = append $skips "CKV_K8S_15=IfNotPresent suits immutable release tags and digests" }}
{{- end }}
{{- range $extra := rest . }}
{{- $skips = append $skips $extra }}
{{- end }}
{{- range $index, $skip := $skips }}
checkov.io/skip{{ add1 $index }}: {{ $skip | quote }}
{{- end }}
{{- end }}
