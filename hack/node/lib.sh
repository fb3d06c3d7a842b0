# Shared settings of the real node (sourced by the other hack/node scripts).
#
# The node is a network namespace of its own: containerd, kubelet, kube-proxy and CoreDNS run in it,
# pods hang off a bridge inside it, and a veth pair joins it to the host. Its routing table has no
# default route, so no packet from a pod or from the node can leave the machine: it reaches the host
# end of the veth (API server, registry) or nothing.
# shellcheck shell=bash

NODE_HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$NODE_HACK_DIR/../.." && pwd)
CLUSTER_DIR=${MODELRUNNER_CLUSTER_DIR:-"$REPO_ROOT/.cluster"}
CACHE_ROOT=${MODELRUNNER_CLUSTER_CACHE:-"${XDG_CACHE_HOME:-$HOME/.cache}/modelrunner-cluster"}
MODULES_DIR="$REPO_ROOT/hack/cluster"

NODE_NAME=${MODELRUNNER_NODE_NAME:-modelrunner-node}
NETNS=${MODELRUNNER_NODE_NETNS:-modelrunner-node}
HOST_IF=mrnode0            # host end of the veth
NODE_IF=eth0               # node end, inside $NETNS
LINK_CIDR=10.250.0.0/24
HOST_IP=10.250.0.1         # API server, registry (as seen from the node and its pods)
NODE_IP=10.250.0.2         # kubelet, kube-proxy, CoreDNS
NODE_POD_CIDR=10.245.0.0/24  # pods of the real node (kwok's fake pod IPs use 10.244.0.0/16)
SERVICE_CIDR=10.96.0.0/16
CLUSTER_DNS_IP=10.96.0.10
REGISTRY_PORT=${MODELRUNNER_REGISTRY_PORT:-5000}
REGISTRY="$HOST_IP:$REGISTRY_PORT"
APISERVER_PORT=${CLUSTER_APISERVER_PORT:-16443}
PAUSE_IMAGE=modelrunner.local/pause:1

NODE_DIR="$CLUSTER_DIR/node"
# Unix socket paths are limited to 108 bytes: keep them short, one directory per cluster dir.
NODE_RUN="/run/modelrunner-$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-8)"
CONTAINERD_SOCK="$NODE_RUN/containerd.sock"
# Image content and snapshots outlive `down` (a warm `up` pulls nothing); all else is in $NODE_DIR.
CONTAINERD_ROOT="$CACHE_ROOT/containerd"
REGISTRY_DATA="$CACHE_ROOT/registry"

node_log() { printf '[node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
node_die() { node_log "ERROR: $*"; exit 1; }
# nsenter, not `ip netns exec`: that one also gives the command a mount namespace of its own with a
# fresh /sys, where the kubelet finds no cgroups and containerd's mounts are invisible to the host.
NETNS_ENTER=(nsenter "--net=/run/netns/$NETNS" --)
in_netns() { "${NETNS_ENTER[@]}" "$@"; }

# Binaries of the node: built from hack/cluster/node (kubelet, kube-proxy: the same k8s.io/kubernetes
# version as the control plane) and hack/cluster/coredns, keyed by their go.mod/go.sum.
node_version_key() {
  cat "$MODULES_DIR"/node/go.{mod,sum} "$MODULES_DIR"/coredns/{go.mod,go.sum,main.go} \
    "$NODE_HACK_DIR/pause.c" | sha256sum | cut -c1-12
}
NODE_BIN="$CACHE_ROOT/node-$(node_version_key)/bin"

# ---------------------------------------------------------------- daemons
# start_daemon <name> [--netns] <command...>: in the background, own session, log and pid file.
start_daemon() {
  local name=$1; shift
  local prefix=()
  if [[ ${1:-} == --netns ]]; then prefix=("${NETNS_ENTER[@]}"); shift; fi
  mkdir -p "$NODE_DIR/logs" "$NODE_DIR/run"
  setsid "${prefix[@]}" "$@" >>"$NODE_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_DIR/run/$name.pid"
  node_log "started $name (pid $!)"
}
daemon_pid() { # prints the pid when the daemon is alive
  local file=$NODE_DIR/run/$1.pid pid state
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]] && echo "$pid"
}
stop_daemon() { # SIGTERM, then SIGKILL after $2 seconds (default 10)
  local name=$1 grace=${2:-10} pid i
  pid=$(daemon_pid "$name") || { rm -f "$NODE_DIR/run/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do daemon_pid "$name" >/dev/null || break; sleep 0.1; done
  if daemon_pid "$name" >/dev/null; then
    node_log "$name ignored SIGTERM for ${grace}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$NODE_DIR/run/$name.pid"
  node_log "stopped $name"
}
wait_for() { # wait_for <seconds> <what> <command...>
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  local rc
  until rc=0; "$@" >/dev/null 2>&1 || rc=$?; ((rc == 0)); do
    ((rc != 2)) || return 1  # 2: give up at once
    ((SECONDS < deadline)) || { node_log "timed out waiting for $what"; return 1; }
    sleep 0.3
  done
}
kubectl_() { "$CLUSTER_DIR/bin/kubectl" --kubeconfig "$CLUSTER_DIR/kubeconfig" "$@"; }

# grant_user <name> <rules YAML>: a ClusterRole and its binding for the client-certificate user
# modelrunner:<name> (CoreDNS, the provisioner), applied with the admin kubeconfig.
grant_user() {
  kubectl_ apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "modelrunner:$1"}
rules:
$2
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "modelrunner:$1"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "modelrunner:$1"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "modelrunner:$1"}
YAML
}
