#!/usr/bin/env bash
# The node's container runtime: Debian's containerd + runc, in the node's network namespace.
#
#   hack/node/containerd.sh start | stop
#
# Settings this machine needs (a VM with cgroup v1 and without CAP_SYS_RESOURCE for containers):
# cgroupfs (not systemd) cgroups, and restrict_oom_score_adj so runc never asks for a negative OOM
# score. The sandbox ("pause") image is built here and imported, since no public registry is
# reachable; the local registry is plain HTTP on the host end of the node's link.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CTR=(ctr --address "$CONTAINERD_SOCK" --namespace k8s.io)

write_config() {
  local conf=$NODE_DIR/containerd
  mkdir -p "$conf" "$NODE_DIR/cni" "$NODE_DIR/certs.d/$REGISTRY" "$NODE_RUN" "$CONTAINERD_ROOT"
  cat >"$conf/config.toml" <<TOML
version = 2
root = "$CONTAINERD_ROOT"
state = "$NODE_RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_DIR/certs.d"
TOML
  cat >"$NODE_DIR/certs.d/$REGISTRY/hosts.toml" <<TOML
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
TOML
  # Pods on a bridge inside the node's namespace; their default route ends at the node, whose own
  # routing table has no default route.
  cat >"$NODE_DIR/cni/10-modelrunner.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "modelrunner",
  "plugins": [
    {
      "type": "bridge", "bridge": "mrpods0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$NODE_DIR/cni-ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

start() {
  command -v containerd >/dev/null || node_die "containerd is not installed (apt-get install containerd runc containernetworking-plugins)"
  if ! daemon_pid containerd >/dev/null; then
    write_config
    start_daemon containerd --netns containerd --config "$NODE_DIR/containerd/config.toml"
  fi
  wait_for 30 containerd "${CTR[@]}" version || node_die "containerd did not start (see $NODE_DIR/logs/containerd.log)"
  if ! "${CTR[@]}" images ls -q | grep -qx "$PAUSE_IMAGE"; then
    "${CTR[@]}" images import "$NODE_BIN/pause.tar" >/dev/null
    node_log "imported $PAUSE_IMAGE"
  fi
}

# Kill every container of the k8s.io namespace (kubelet is already gone), then containerd itself.
stop() {
  local id
  if daemon_pid containerd >/dev/null; then
    for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
      "${CTR[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
      "${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
    for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do
      "${CTR[@]}" containers delete "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_daemon containerd 10
  # Shims re-parented to init outlive containerd: end the ones of this socket.
  pkill -KILL -f -- "containerd-shim.*-address $CONTAINERD_SOCK( |$)" 2>/dev/null || true
}

case ${1:-} in
  start) start;;
  stop) stop;;
  *) echo "usage: $0 start|stop" >&2; exit 2;;
esac
