#!/usr/bin/env bash
# Cluster DNS: CoreDNS in the node's network namespace behind the kube-dns Service ($CLUSTER_DNS_IP).
# It answers for cluster.local (and reverse zones) from the API; every other name gets NXDOMAIN.
# It forwards nothing: no upstream resolver is ever asked.
#
#   hack/node/coredns.sh start | stop
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$REPO_ROOT/hack/lib-pki.sh"

DIR=$NODE_DIR/coredns

apply_objects() {
  grant_user coredns "- {apiGroups: [\"\"], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}"
  kubectl_ apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $CLUSTER_DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: modelrunner.io-hack}
addressType: IPv4
endpoints:
- addresses: ["$NODE_IP"]
  conditions: {ready: true}
  nodeName: $NODE_NAME
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
YAML
}

write_config() {
  local pki=$CLUSTER_DIR/pki
  mkdir -p "$DIR"
  [[ -s $pki/coredns.crt ]] || gen_cert "$pki" coredns "/CN=modelrunner:coredns"
  write_kubeconfig "$DIR/kubeconfig" "$pki" coredns "modelrunner:coredns" \
    "https://$HOST_IP:$APISERVER_PORT"
  cat >"$DIR/Corefile" <<COREFILE
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $DIR/kubeconfig modelrunner
        pods insecure
    }
    cache 30
}
.:53 {
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
COREFILE
}

ready() { in_netns curl -sf --max-time 2 http://127.0.0.1:18181/ready; }

start() {
  apply_objects
  if ! daemon_pid coredns >/dev/null; then
    write_config
    start_daemon coredns --netns "$NODE_BIN/coredns" -conf "$DIR/Corefile"
  fi
  wait_for 60 "CoreDNS ready" ready || node_die "CoreDNS is not ready (see $NODE_DIR/logs/coredns.log)"
}

case ${1:-} in
  start) start;;
  stop) stop_daemon coredns 5;;
  *) echo "usage: $0 start|stop" >&2; exit 2;;
esac
