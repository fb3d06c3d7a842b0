#!/usr/bin/env bash
# A real node in the local cluster (called by hack/cluster.sh up/down; see hack/README.md).
#
#   hack/node/node.sh up       network, registry, containerd, kubelet, kube-proxy, CoreDNS, storage
#   hack/node/node.sh down     stop all of it; leave no process, mount, interface or namespace
#   hack/node/node.sh status   exit 1 unless every part runs and the node is Ready
#   hack/node/node.sh env      print MODELRUNNER_REGISTRY=..., the node's name and namespace
#
# Needs root, Debian's containerd, runc, containernetworking-plugins, iptables, docker-registry, and
# the control plane up (hack/cluster.sh up does both in order).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PARTS=(registry containerd kubelet kube-proxy coredns provisioner)

node_ready() {
  [[ $(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

kubelet_ready() { # fails the wait at once when the kubelet exited
  daemon_pid kubelet >/dev/null || { echo "the kubelet exited" >&2; return 2; }
  node_ready
}

up() {
  local start=$SECONDS
  [[ $(id -u) == 0 ]] || node_die "the real node needs root (network namespace, containerd, kubelet)"
  "$NODE_HACK_DIR/build.sh"
  mkdir -p "$NODE_DIR"
  "$NODE_HACK_DIR/network.sh" up
  "$NODE_HACK_DIR/registry.sh" start
  "$NODE_HACK_DIR/containerd.sh" start
  "$NODE_HACK_DIR/kubelet.sh" start
  wait_for 120 "node $NODE_NAME Ready" kubelet_ready ||
    { tail -n 30 "$NODE_DIR/logs/kubelet.log" >&2; node_die "the kubelet did not register a Ready node"; }
  "$NODE_HACK_DIR/kube-proxy.sh" start
  "$NODE_HACK_DIR/coredns.sh" start
  "$NODE_HACK_DIR/storage.sh" start
  "$NODE_HACK_DIR/network.sh" check
  node_log "node $NODE_NAME Ready in $((SECONDS - start))s (registry $REGISTRY)"
}

# Everything the kubelet and containerd mounted (pod volumes, sandboxes' /dev/shm, container root
# filesystems, network namespaces of pods), deepest first.
unmount_all() {
  local prefix mnt
  for prefix in "$NODE_DIR" "$NODE_RUN" "$CONTAINERD_ROOT" /run/netns/cni-; do
    awk -v p="$prefix" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
  done
}

# Pod cgroups the kubelet made (cgroup v1: one tree per controller).
remove_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/*/kubepods; do
    [[ -d $dir ]] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

down() {
  "$NODE_HACK_DIR/kubelet.sh" stop
  "$NODE_HACK_DIR/containerd.sh" stop
  "$NODE_HACK_DIR/kube-proxy.sh" stop
  "$NODE_HACK_DIR/coredns.sh" stop
  "$NODE_HACK_DIR/storage.sh" stop
  "$NODE_HACK_DIR/registry.sh" stop
  unmount_all
  remove_cgroups
  "$NODE_HACK_DIR/network.sh" down
  rm -rf "$NODE_RUN"
  node_log "node down"
}

status() {
  local part rc=0
  for part in "${PARTS[@]}"; do
    if pid=$(daemon_pid "$part"); then printf '%-24s running (pid %s)\n' "$part" "$pid"
    else printf '%-24s stopped\n' "$part"; rc=1; fi
  done
  if node_ready; then echo "node $NODE_NAME:   Ready"; else echo "node $NODE_NAME:   not Ready"; rc=1; fi
  return $rc
}

case ${1:-} in
  up) up;;
  down) down;;
  status) status;;
  env) printf 'MODELRUNNER_REGISTRY=%s\nMODELRUNNER_NODE_NAME=%s\nMODELRUNNER_NODE_NETNS=%s\n' \
         "$REGISTRY" "$NODE_NAME" "$NETNS";;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2;;
esac
