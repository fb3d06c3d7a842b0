#!/usr/bin/env bash
# The default StorageClass `local-path` and its provisioner (hack/node/provisioner.py, on the host):
# a StatefulSet's per-replica claims bind to directories under $NODE_DIR/volumes.
#
#   hack/node/storage.sh start | stop
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$REPO_ROOT/hack/lib-pki.sh"

start() {
  local pki=$CLUSTER_DIR/pki
  kubectl_ apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: modelrunner.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
YAML
  grant_user provisioner "- {apiGroups: [\"\"], resources: [persistentvolumes], verbs: [get, list, create, delete]}
- {apiGroups: [\"\"], resources: [persistentvolumeclaims], verbs: [get, list]}"
  [[ -s $pki/provisioner.crt ]] || gen_cert "$pki" provisioner "/CN=modelrunner:provisioner"
  daemon_pid provisioner >/dev/null ||
    start_daemon provisioner python3 "$NODE_HACK_DIR/provisioner.py" \
      --server "https://127.0.0.1:$APISERVER_PORT" --pki "$pki" --volumes "$NODE_DIR/volumes"
}

case ${1:-} in
  start) start;;
  stop) stop_daemon provisioner 5;;
  *) echo "usage: $0 start|stop" >&2; exit 2;;
esac
