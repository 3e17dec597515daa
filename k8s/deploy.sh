#!/usr/bin/env bash
# Apply an overlay with the database migrations first:
#   k8s/deploy.sh local|production
# 1. delete the previous release's migration Jobs (a Job's pod template cannot change);
# 2. apply everything except the service Deployments (namespace, configuration, NATS, PostgreSQL,
#    MinIO, Services, policies, migration Jobs) and wait for the infrastructure;
# 3. wait until every migration Job has completed (stop on the first failure);
# 4. apply the rest (serve and worker Deployments) and wait for their rollouts.
# The Secrets listed in docs/deploy.md must exist first. KUBECTL=... picks another kubectl.
set -euo pipefail
overlay=${1:?usage: k8s/deploy.sh <local|production>}
KUBECTL=${KUBECTL:-kubectl}
ns=hospital
here=$(cd "$(dirname "$0")" && pwd)
manifests=$(mktemp)
trap 'rm -f "$manifests"' EXIT

"$KUBECTL" kustomize "$here/overlays/$overlay" > "$manifests"

"$KUBECTL" -n "$ns" delete job -l app.kubernetes.io/component=migrate --ignore-not-found --wait=true 2>/dev/null || true
"$KUBECTL" apply -f "$manifests" -l 'app.kubernetes.io/component notin (serve,worker)'
"$KUBECTL" -n "$ns" rollout status statefulset -l tier=infra --timeout=10m

for job in $("$KUBECTL" -n "$ns" get job -l app.kubernetes.io/component=migrate -o name); do
  echo "waiting for $job"
  for _ in $(seq 1 200); do
    state=$("$KUBECTL" -n "$ns" get "$job" \
      -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case " $state " in
      *" Complete "*) continue 2 ;;
      *" Failed "*) echo "$job failed; see: $KUBECTL -n $ns logs $job" >&2; exit 1 ;;
    esac
    sleep 5
  done
  echo "$job did not finish in time; see: $KUBECTL -n $ns logs $job" >&2
  exit 1
done

"$KUBECTL" apply -f "$manifests"
"$KUBECTL" -n "$ns" rollout status deployment -l tier=app --timeout=10m
