{{/* The namespace of every namespaced object: values.namespace, else the release's. */}}
{{- define "splice-orc.namespace" -}}
{{- .Values.namespace | default .Release.Namespace -}}
{{- end }}

{{- define "splice-orc.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}

{{- define "splice-orc.pythonImage" -}}
{{- printf "%s:%s" .Values.pythonImage.repository (.Values.pythonImage.tag | default .Chart.AppVersion) -}}
{{- end }}

{{/* The Secret with the bearer token: an existing one, or the one this chart makes. */}}
{{- define "splice-orc.authSecret" -}}
{{- .Values.auth.existingSecret | default "splice-orc-auth" -}}
{{- end }}

{{- define "splice-orc.stateClaim" -}}
{{- .Values.stateVolume.existingClaim | default "splice-orc-state" -}}
{{- end }}

{{/* Images module pods may run, as a JSON list: both splice-orc images and every module's own image, sorted, each once. */}}
{{- define "splice-orc.allowedImages" -}}
{{- $images := list (include "splice-orc.image" .) (include "splice-orc.pythonImage" .) -}}
{{- range $name, $module := .Values.moduleConfig -}}
{{- if and (kindIs "map" $module) (hasKey $module "image") -}}
{{- $images = append $images $module.image -}}
{{- end -}}
{{- end -}}
{{- $images | uniq | sortAlpha | toJson -}}
{{- end }}
