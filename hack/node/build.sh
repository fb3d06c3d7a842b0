#!/usr/bin/env bash
# Build the real node's binaries into the cache (no-op when present):
#   kubelet, kube-proxy   from hack/cluster/node (same k8s.io/kubernetes as the control plane)
#   coredns               from hack/cluster/coredns (a few plugins, none that forwards)
#   pause.tar             the pod sandbox image: hack/node/pause.c, static, as an OCI archive
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$REPO_ROOT/hack/lib-go.sh"

K8S_VERSION=$(module_version "$MODULES_DIR/node/go.mod" k8s.io/kubernetes)
CONTROL_PLANE_VERSION=$(module_version "$MODULES_DIR/kubernetes/go.mod" k8s.io/kubernetes)
[[ $K8S_VERSION == "$CONTROL_PLANE_VERSION" ]] ||
  node_die "hack/cluster/node builds $K8S_VERSION but the control plane is $CONTROL_PLANE_VERSION"

present() { [[ -x $NODE_BIN/kubelet && -x $NODE_BIN/kube-proxy && -x $NODE_BIN/coredns && -s $NODE_BIN/pause.tar ]]; }

build() {
  local tmp start=$SECONDS
  present && return 0
  command -v gcc >/dev/null || node_die "gcc is required for the pause image"
  mkdir -p "$NODE_BIN"
  rm -rf "$NODE_BIN"/../build.*
  tmp=$(mktemp -d "$NODE_BIN/../build.XXXXXX")
  node_log "go build kubelet kube-proxy ($K8S_VERSION)"
  go_build "$MODULES_DIR/node" "$tmp/" "$(k8s_ldflags "$K8S_VERSION")" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  node_log "go build coredns"
  go_build "$MODULES_DIR/coredns" "$tmp/coredns" "-s -w" .
  node_log "pause image"
  mkdir -p "$tmp/pause-root"
  gcc -static -O2 -s -o "$tmp/pause-root/pause" "$NODE_HACK_DIR/pause.c"
  python3 "$NODE_HACK_DIR/oci_archive.py" --root "$tmp/pause-root" --entrypoint /pause \
    --name "$PAUSE_IMAGE" --out "$tmp/pause.tar"
  mv -f "$tmp"/{kubelet,kube-proxy,coredns,pause.tar} "$NODE_BIN/"
  rm -rf "$tmp"
  node_log "node binaries built in $((SECONDS - start))s: $NODE_BIN"
}

mkdir -p "$(dirname "$NODE_BIN")"
exec {lock}>"$(dirname "$NODE_BIN").lock"
flock -w 3600 "$lock" || node_die "another build holds the lock"
build
