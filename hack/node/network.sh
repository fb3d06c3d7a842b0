#!/usr/bin/env bash
# The node's network: its own namespace, a veth pair to the host, routes to pods and Services.
#
#   hack/node/network.sh up      create (idempotent)
#   hack/node/network.sh down    remove the namespace, the veth, the routes (and the pods' namespaces)
#   hack/node/network.sh check   fail unless every route stays on this machine
#
# host  $HOST_IF  $HOST_IP/24   routes: $NODE_POD_CIDR and $SERVICE_CIDR via $NODE_IP
# node  $NODE_IF  $NODE_IP/24   routes: the link, and $NODE_POD_CIDR on the pods' bridge; no default
# The host's own routing is untouched apart from those two routes, and it does not forward.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

up() {
  ip netns list | grep -qw "^$NETNS" || ip netns add "$NETNS"
  if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    ip link add "$HOST_IF" type veth peer name "$NODE_IF" netns "$NETNS"
  fi
  ip addr replace "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  in_netns ip link set lo up
  in_netns ip addr replace "$NODE_IP/24" dev "$NODE_IF"
  in_netns ip link set "$NODE_IF" up
  # The node routes between its pods and the link; br_netfilter lets kube-proxy's rules see
  # bridged pod-to-pod traffic (Service hairpins).
  in_netns sysctl -qw net.ipv4.ip_forward=1
  in_netns sh -c '[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
                  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables'
  ip route replace "$NODE_POD_CIDR" via "$NODE_IP" dev "$HOST_IF"
  ip route replace "$SERVICE_CIDR" via "$NODE_IP" dev "$HOST_IF"
  check
}

down() {
  local ns
  # Pod sandboxes' namespaces (containerd names them cni-<uuid>) that a killed node left behind.
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ { print $1 }'); do
    if [[ -e /run/netns/$ns ]] && ! ip netns pids "$ns" | grep -q .; then
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  ip link del "$HOST_IF" 2>/dev/null || true   # takes its routes and the node end with it
  ip netns del "$NETNS" 2>/dev/null || true
  # `ip netns add` made /run/netns a mount point of its own; undo that once no namespace is left.
  if [[ -z $(ip netns list 2>/dev/null) ]] && mountpoint -q /run/netns; then
    umount /run/netns 2>/dev/null || true
  fi
}

# Every route of the node's namespace and every host route through the veth must point at an
# address of this machine's harness. A default route, or any route via a gateway that is not ours,
# would carry packets off the machine.
check() {
  local routes bad
  routes=$(in_netns ip -4 route show)
  if grep -qE '^default' <<<"$routes"; then node_die "the node namespace has a default route"; fi
  bad=$(awk -v link="$LINK_CIDR" -v pods="$NODE_POD_CIDR" \
    '$1 != link && $1 != pods { print }' <<<"$routes")
  [[ -z $bad ]] || node_die "unexpected routes in the node namespace: $bad"
  bad=$(ip -4 route show dev "$HOST_IF" | awk -v link="$LINK_CIDR" -v pods="$NODE_POD_CIDR" \
    -v svc="$SERVICE_CIDR" -v via="$NODE_IP" \
    '!($1 == link || (($1 == pods || $1 == svc) && $3 == via)) { print }')
  [[ -z $bad ]] || node_die "unexpected host routes through $HOST_IF: $bad"
}

case ${1:-} in
  up) up;;
  down) down;;
  check) check;;
  *) echo "usage: $0 up|down|check" >&2; exit 2;;
esac
