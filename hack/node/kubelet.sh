#!/usr/bin/env bash
# The node's kubelet, in the node's network namespace, registered as $NODE_NAME with address $NODE_IP.
#
#   hack/node/kubelet.sh start | stop
#
# This machine has cgroup v1: failCgroupV1 false and the cgroupfs driver (as containerd uses).
# The API server reaches it at $NODE_IP:10250 with a client certificate of the cluster CA.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$REPO_ROOT/hack/lib-pki.sh"

DIR=$NODE_DIR/kubelet

write_config() {
  local pki=$CLUSTER_DIR/pki
  mkdir -p "$DIR/root"
  [[ -s $pki/kubelet.crt ]] ||
    gen_cert "$pki" kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  write_kubeconfig "$DIR/kubeconfig" "$pki" kubelet "system:node:$NODE_NAME" \
    "https://$HOST_IP:$APISERVER_PORT"
  # Pods get the cluster DNS only: no search domains or resolvers of the host.
  printf 'nameserver %s\n' "$CLUSTER_DNS_IP" >"$DIR/resolv.conf"
  cat >"$DIR/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
clusterDNS: [$CLUSTER_DNS_IP]
clusterDomain: cluster.local
resolvConf: $DIR/resolv.conf
failSwapOn: false
maxPods: 40
serializeImagePulls: false
rotateCertificates: false
# A shared test machine: never evict pods for disk or memory pressure the tests did not cause.
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
shutdownGracePeriod: 0s
YAML
}

start() {
  daemon_pid kubelet >/dev/null && return 0
  write_config
  start_daemon kubelet --netns "$NODE_BIN/kubelet" \
    --config="$DIR/config.yaml" --kubeconfig="$DIR/kubeconfig" --root-dir="$DIR/root" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    --node-labels="modelrunner.io/node=real" --v=1
}

stop() {
  stop_daemon kubelet 10
}

case ${1:-} in
  start) start;;
  stop) stop;;
  *) echo "usage: $0 start|stop" >&2; exit 2;;
esac
