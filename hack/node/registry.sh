#!/usr/bin/env bash
# The cluster's image registry: Debian's docker-registry (CNCF distribution), plain HTTP on the host
# end of the node's link ($REGISTRY), reachable from the host and from the node's containerd.
# Its data outlives `down` (in the cache), so a warm `make images` pushes nothing.
#
#   hack/node/registry.sh start | stop
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN=/usr/bin/docker-registry

start() {
  [[ -x $BIN ]] || node_die "docker-registry is not installed (apt-get install docker-registry)"
  if ! daemon_pid registry >/dev/null; then
    mkdir -p "$NODE_DIR" "$REGISTRY_DATA"
    cat >"$NODE_DIR/registry.yaml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: false}}
storage:
  filesystem: {rootdirectory: $REGISTRY_DATA}
  delete: {enabled: true}
http:
  addr: $REGISTRY
YAML
    start_daemon registry "$BIN" serve "$NODE_DIR/registry.yaml"
  fi
  wait_for 30 registry curl -sf --max-time 2 "http://$REGISTRY/v2/" ||
    node_die "the registry did not start (see $NODE_DIR/logs/registry.log)"
}

case ${1:-} in
  start) start;;
  stop) stop_daemon registry 5;;
  *) echo "usage: $0 start|stop" >&2; exit 2;;
esac
