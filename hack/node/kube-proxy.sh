#!/usr/bin/env bash
# kube-proxy (iptables mode) in the node's network namespace: Service IPs for the node's pods, and
# for the host, whose route to $SERVICE_CIDR leads into this namespace.
#
#   hack/node/kube-proxy.sh start | stop
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$REPO_ROOT/hack/lib-pki.sh"

DIR=$NODE_DIR/kube-proxy

write_config() {
  local pki=$CLUSTER_DIR/pki
  mkdir -p "$DIR"
  [[ -s $pki/kube-proxy.crt ]] || gen_cert "$pki" kube-proxy "/CN=system:kube-proxy"
  write_kubeconfig "$DIR/kubeconfig" "$pki" kube-proxy system:kube-proxy \
    "https://$HOST_IP:$APISERVER_PORT"
  # masqueradeAll: traffic to a Service is SNATed, so replies find their way back through the
  # node even from the host (whose route to Services ends here) and between pods of one bridge.
  # conntrack limits are left alone: they are global sysctls of the machine.
  cat >"$DIR/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DIR/kubeconfig
mode: iptables
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $NODE_POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
}

start() {
  daemon_pid kube-proxy >/dev/null && return 0
  write_config
  start_daemon kube-proxy --netns "$NODE_BIN/kube-proxy" --config="$DIR/config.yaml" --v=1
}

case ${1:-} in
  start) start;;
  stop) stop_daemon kube-proxy 5;;
  *) echo "usage: $0 start|stop" >&2; exit 2;;
esac
