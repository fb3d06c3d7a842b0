#!/usr/bin/env bash
# make up: the whole system on this machine, in one command.
#
#   1. the local Kubernetes cluster (hack/cluster.sh up: builds it the first time, ~25 min)
#   2. the CRDs (crds/: Model, ModelRunner, kopf's peering)
#   3. a runner process serving the default model (gemma3:270m) on 127.0.0.1
#   4. the operator as a local process, watching namespace $UP_NAMESPACE (default: default)
#   5. a ModelRunner `model-runner` in external mode pointing at that runner, and a Model
#      `gemma3` (source gemma3:270m, already in the runner's store: nothing is downloaded)
#   6. waits until both are Ready, calls the model once, prints how to call it in each API.
#
# Pods on the local cluster's fake (kwok) nodes run no containers, hence the external runner.
# Processes run in the background; pid files and logs are in .cluster/up/. `make down`
# (hack/down.sh) stops them and the cluster. Running `make up` again only fills in what is missing.
#
# Environment: OLLAMA_PORT (11434) and DMR_PORT (12434) for the runner (a free port is used when
# one is taken), UP_NAMESPACE, MODELRUNNER_CLUSTER_DIR and CLUSTER_*_PORT as for hack/cluster.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=${MODELRUNNER_CLUSTER_DIR:-"$ROOT/.cluster"}
STATE=$CLUSTER_DIR/up
VENV=${VENV:-"$ROOT/.venv"}
NAMESPACE=${UP_NAMESPACE:-default}
HOST=127.0.0.1
START=$SECONDS

log() { printf '[up %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=hack/lib-up.sh
source "$ROOT/hack/lib-up.sh"

[[ -x $VENV/bin/modelrunner && -x $VENV/bin/modeloperator ]] || die "$VENV is missing: run make dev"

# -- 1. cluster -------------------------------------------------------------------------------
if ! "$ROOT/hack/cluster.sh" status >/dev/null 2>&1; then
  # The cluster is (re)started from scratch, which wipes .cluster/: stop what an earlier
  # `make up` left running first, so no process loses its pid file.
  stop_process operator
  stop_process runner
fi
log "cluster (hack/cluster.sh up; the first build takes about 25 minutes)"
"$ROOT/hack/cluster.sh" up
mkdir -p "$STATE"
# A cluster that a pytest session started is stopped by the last session to leave; from now on
# `make up` owns it (and `make down` stops it).
rm -f "$CLUSTER_DIR/run/started-by-pytest"
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
KUBECTL=$CLUSTER_DIR/bin/kubectl
kubectl() { "$KUBECTL" "$@"; }

# -- 2. CRDs ----------------------------------------------------------------------------------
log "CRDs"
kubectl apply --server-side --force-conflicts -f "$ROOT/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/models.modelrunner.io crd/modelrunners.modelrunner.io crd/kopfpeerings.kopf.dev >/dev/null

# -- 3. runner --------------------------------------------------------------------------------
if pid=$(process_pid runner); then
  OLLAMA_PORT=$(<"$STATE/ollama.port"); DMR_PORT=$(<"$STATE/dmr.port")
  log "runner already running (pid $pid) on $HOST:$OLLAMA_PORT and $HOST:$DMR_PORT"
else
  OLLAMA_PORT=$(pick_port "${OLLAMA_PORT:-11434}")
  DMR_PORT=$(pick_port "${DMR_PORT:-12434}" "$OLLAMA_PORT")
  echo "$OLLAMA_PORT" >"$STATE/ollama.port"
  echo "$DMR_PORT" >"$STATE/dmr.port"
  log "runner on $HOST:$OLLAMA_PORT and $HOST:$DMR_PORT (store $STATE/models; imports gemma3:270m)"
  start_process runner "$VENV/bin/modelrunner" serve --default-model --models "$STATE/models" \
    --listen "$HOST:$OLLAMA_PORT" --listen "$HOST:$DMR_PORT"
fi
RUNNER=http://$HOST:$OLLAMA_PORT
DMR=http://$HOST:$DMR_PORT
wait_until 600 "the runner to answer on $RUNNER" runner curl -sf --max-time 2 "$RUNNER/api/version"

# -- 4. operator ------------------------------------------------------------------------------
if pid=$(process_pid operator); then
  log "operator already running (pid $pid)"
else
  HEALTH_PORT=$(pick_port 0)
  echo "$HEALTH_PORT" >"$STATE/health.port"
  log "operator watching namespace $NAMESPACE (health on $HOST:$HEALTH_PORT/healthz)"
  MODELOPERATOR_RECONCILE_INTERVAL=${MODELOPERATOR_RECONCILE_INTERVAL:-10} \
    start_process operator "$VENV/bin/modeloperator" --namespace "$NAMESPACE" \
    --liveness "http://$HOST:$HEALTH_PORT/healthz"
fi
HEALTH_PORT=$(<"$STATE/health.port")
wait_until 120 "the operator's health endpoint" operator \
  curl -sf --max-time 2 "http://$HOST:$HEALTH_PORT/healthz"

# -- 5. resources -----------------------------------------------------------------------------
log "ModelRunner model-runner (external: $RUNNER) and Model gemma3 in namespace $NAMESPACE"
kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE" >/dev/null
kubectl apply -n "$NAMESPACE" -f - >/dev/null <<EOF
# Operator replicas watching this namespace coordinate through this object (kopf peering).
apiVersion: kopf.dev/v1
kind: KopfPeering
metadata:
  name: modelrunner
---
apiVersion: modelrunner.io/v1alpha1
kind: ModelRunner
metadata:
  name: model-runner
spec:
  external:
    url: $RUNNER
---
apiVersion: modelrunner.io/v1alpha1
kind: Model
metadata:
  name: gemma3
spec:
  source: gemma3:270m
EOF

# -- 6. ready, and working ----------------------------------------------------------------------
log "waiting for Ready"
if ! kubectl wait -n "$NAMESPACE" --for=condition=Ready --timeout=300s \
    modelrunner/model-runner model/gemma3 >/dev/null; then
  kubectl get -n "$NAMESPACE" modelrunners,models -o wide >&2 || true
  tail -n 30 "$STATE/operator.log" >&2
  die "not Ready after 5 minutes; logs: $STATE/operator.log, $STATE/runner.log"
fi
kubectl get -n "$NAMESPACE" modelrunners,models
log "asking gemma3 through the OpenAI API"
answer=$(curl -sf --max-time 120 "$DMR/engines/v1/chat/completions" \
  -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 24}' \
  | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"].strip())') \
  || die "the model did not answer; see $STATE/runner.log"
printf '  gemma3: %s\n' "${answer//$'\n'/ }"

cat <<EOF

Up in $((SECONDS - START))s. The model "gemma3" is Ready; call it in any API:

  # Ollama
  curl $RUNNER/api/chat -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Hello"}], "stream": false, "options": {"num_predict": 64}}'
  # OpenAI
  curl $RUNNER/v1/chat/completions -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'
  # Docker Model Runner (OpenAI under /engines, and its model list)
  curl $DMR/engines/llama.cpp/v1/chat/completions -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'
  curl $DMR/models

The cluster:

  export KUBECONFIG=$KUBECONFIG PATH=$CLUSTER_DIR/bin:\$PATH
  kubectl get -n $NAMESPACE models,modelrunners
  kubectl apply -n $NAMESPACE -f - <<'YAML'
  apiVersion: modelrunner.io/v1alpha1
  kind: Model
  metadata: {name: terse}
  spec: {modelfile: "FROM gemma3\nSYSTEM You answer in one sentence."}
  YAML

Logs: $STATE/operator.log, $STATE/runner.log. Stop everything: make down
EOF
