#!/usr/bin/env bash
# make down: stop what `make up` started: the local cluster with its real node (the operator and
# the runner are pods on it), and a seeding runner if `make up` was interrupted while it ran.
#
# The cluster is left running when pytest sessions still use it (their leases in
# .cluster/run/sessions/), or with KEEP_CLUSTER=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=${MODELRUNNER_CLUSTER_DIR:-"$ROOT/.cluster"}
STATE=$CLUSTER_DIR/up
VENV=${VENV:-"$ROOT/.venv"}
HOST=127.0.0.1

log() { printf '[down %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=hack/lib-up.sh
source "$ROOT/hack/lib-up.sh"

stop_process seed

# What up added to a cluster that stays: the Model first (the operator's finalizer removes it from
# the runner), then the ModelRunner, then the operator's release and namespace.
remove_up_objects() {
  local namespace=${UP_NAMESPACE:-default} kubectl=$CLUSTER_DIR/bin/kubectl helm=$CLUSTER_DIR/bin/helm
  export KUBECONFIG=$CLUSTER_DIR/kubeconfig
  [[ -x $kubectl ]] || return 0
  "$kubectl" delete -n "$namespace" model/gemma3 --ignore-not-found --timeout=120s >/dev/null || true
  "$kubectl" delete -n "$namespace" modelrunner/model-runner --ignore-not-found --timeout=120s >/dev/null || true
  "$helm" uninstall model-runner-operator -n model-runner-system --wait >/dev/null 2>&1 || true
  "$kubectl" delete namespace model-runner-system --ignore-not-found --timeout=120s >/dev/null || true
  if [[ $namespace != default ]]; then
    "$kubectl" delete namespace "$namespace" --ignore-not-found --wait=false >/dev/null || true
  fi
  log "removed what make up added (namespace $namespace, release model-runner-operator)"
}

sessions=()
if [[ -d $CLUSTER_DIR/run/sessions ]]; then
  for lease in "$CLUSTER_DIR"/run/sessions/*; do
    [[ -e $lease ]] || continue
    pid=${lease##*/}
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && sessions+=("$pid")
  done
fi
if [[ ${KEEP_CLUSTER:-0} != 0 ]]; then
  log "KEEP_CLUSTER is set: the cluster keeps running"
elif [[ ${#sessions[@]} -gt 0 ]]; then
  log "pytest sessions (pids ${sessions[*]}) still use the cluster: leaving it running"
  remove_up_objects
else
  "$ROOT/hack/cluster.sh" down
fi
log "down"
