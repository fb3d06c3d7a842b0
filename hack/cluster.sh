#!/usr/bin/env bash
# Local Kubernetes test cluster built from Go modules.
#
#   hack/cluster.sh build    build etcd, kube-apiserver, kube-controller-manager,
#                            kube-scheduler, kubectl, kwok and helm into a cache, and the
#                            real node's parts (hack/node/build.sh)
#   hack/cluster.sh up       start the control plane, kwok fake nodes (2 GPU, 1 CPU) and a real
#                            node (hack/node/node.sh; MODELRUNNER_REAL_NODE=0 leaves it out)
#   hack/cluster.sh down     stop everything and remove .cluster/ (keeps the cache)
#   hack/cluster.sh status   show processes, API health and nodes
#   hack/cluster.sh env      print `export KUBECONFIG=... PATH=... MODELRUNNER_REGISTRY=...` lines
#   hack/cluster.sh path B   print the path of built binary B (exit 1 if not built)
#
# The control plane listens on 127.0.0.1, and the API server also on the host end of the real
# node's link (hack/node/lib.sh), which only that node's namespace reaches. See hack/README.md.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=hack/lib-go.sh
. "$HACK_DIR/lib-go.sh"
# shellcheck source=hack/lib-pki.sh
. "$HACK_DIR/lib-pki.sh"
MODULES_DIR="$HACK_DIR/cluster"
CLUSTER_DIR=${MODELRUNNER_CLUSTER_DIR:-"$REPO_ROOT/.cluster"}
CACHE_ROOT=${MODELRUNNER_CLUSTER_CACHE:-"${XDG_CACHE_HOME:-$HOME/.cache}/modelrunner-cluster"}

# Loopback ports; override when they clash with something else on the machine.
ETCD_PORT=${CLUSTER_ETCD_PORT:-12379}
ETCD_PEER_PORT=${CLUSTER_ETCD_PEER_PORT:-12380}
APISERVER_PORT=${CLUSTER_APISERVER_PORT:-16443}
KCM_PORT=${CLUSTER_KCM_PORT:-16257}
SCHEDULER_PORT=${CLUSTER_SCHEDULER_PORT:-16259}
HOST=127.0.0.1
# The real node's view of the API server: the host end of its link (hack/node/lib.sh).
NODE_LINK_HOST_IP=10.250.0.1
# The real node needs root (network namespace, containerd, kubelet); without root it is left out.
REAL_NODE=${MODELRUNNER_REAL_NODE:-$([[ $(id -u) == 0 ]] && echo 1 || echo 0)}
NODE_SCRIPT=$HACK_DIR/node/node.sh

SERVICE_CIDR=10.96.0.0/16
SERVICE_APISERVER_IP=10.96.0.1
# Pod IPs are written by kwok into pod status only; nothing routes to them.
POD_CIDR=10.244.0.0/16

# Bump when the way binaries are built changes (forces a rebuild into a new key).
BUILD_RECIPE=1
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
ALL_BINARIES=(etcd "${K8S_BINARIES[@]}" kwok helm)
# Start order; `down` stops in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

K8S_VERSION=$(module_version "$MODULES_DIR/kubernetes/go.mod" k8s.io/kubernetes)
ETCD_VERSION=$(module_version "$MODULES_DIR/etcd/go.mod" go.etcd.io/etcd/server/v3)
KWOK_VERSION=$(module_version "$MODULES_DIR/kwok/go.mod" sigs.k8s.io/kwok)
HELM_VERSION=$(module_version "$MODULES_DIR/helm/go.mod" helm.sh/helm/v3)

version_key() {
  local sum
  sum=$( { echo "recipe=$BUILD_RECIPE"
           cat "$MODULES_DIR"/{kubernetes,etcd,kwok,helm}/go.{mod,sum}; } \
         | sha256sum | cut -c1-12)
  echo "k8s-$K8S_VERSION-$sum"
}
CACHE_DIR="$CACHE_ROOT/$(version_key)"
CACHE_BIN="$CACHE_DIR/bin"
KWOK_STAGES="$CACHE_DIR/kwok-stages.yaml"

# A lock per cluster directory, outside it (down removes the directory).
LOCK_FILE="${TMPDIR:-/tmp}/modelrunner-cluster-$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-12).lock"

# LOCK_FD: the open lock file; started daemons must not inherit it.
with_lock() { # with_lock <file> <command...>
  local file=$1; shift
  mkdir -p "$(dirname "$file")"
  exec {LOCK_FD}>"$file"
  flock -w 1800 "$LOCK_FD" || die "another hack/cluster.sh holds $file for 30 minutes"
  "$@"
  flock -u "$LOCK_FD"
  exec {LOCK_FD}>&-
}

# ---------------------------------------------------------------- binaries

# Path of a binary: KUBEBUILDER_ASSETS for etcd/kube-apiserver/kubectl when
# set and present there, else the build cache.
bin_path() {
  local name=$1
  case $name in
    etcd|kube-apiserver|kubectl)
      if [[ -n ${KUBEBUILDER_ASSETS:-} && -x $KUBEBUILDER_ASSETS/$name ]]; then
        echo "$KUBEBUILDER_ASSETS/$name"; return
      fi;;
  esac
  echo "$CACHE_BIN/$name"
}

missing_binaries() {
  local name
  for name in "${ALL_BINARIES[@]}"; do
    [[ -x $(bin_path "$name") ]] || echo "$name"
  done
}

helm_ldflags() {
  local major minor
  major=${K8S_VERSION#v}; major=${major%%.*}
  minor=${K8S_VERSION#v"$major".}; minor=${minor%%.*}
  echo "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
       "-X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
       "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major" \
       "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
       "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major" \
       "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
}

# kwok ships its default stages (node initialize/heartbeat, pod ready/complete/
# delete) as YAML inside its module; the `kwok` binary itself has none built in.
# Assemble them from the module source at build time into the cache.
build_kwok_stages() {
  local dir f tmp
  dir=$(cd "$MODULES_DIR/kwok" && GOWORK=off go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  [[ -d $dir/kustomize/stage ]] || die "kwok module has no kustomize/stage directory ($dir)"
  tmp=$(mktemp "$KWOK_STAGES.XXXXXX")
  for f in node/fast/node-initialize.yaml \
           node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -f $dir/kustomize/stage/$f ]] || die "kwok stage $f not found in $dir"
    printf -- '---\n' >>"$tmp"
    cat "$dir/kustomize/stage/$f" >>"$tmp"
  done
  chmod 644 "$tmp"
  mv "$tmp" "$KWOK_STAGES"
}

do_build() {
  local missing=() name tmp k8s_pkgs=() start
  mapfile -t missing < <(missing_binaries)
  if [[ ${#missing[@]} -eq 0 && -s $KWOK_STAGES ]]; then
    log "binaries present in $CACHE_BIN"
    return 0
  fi
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH=/usr/local/go/bin:$PATH  # the official tarball's place, often not on PATH
  fi
  command -v go >/dev/null || die "go (1.21 or newer) is required to build the cluster binaries"
  start=$SECONDS
  mkdir -p "$CACHE_BIN"
  rm -rf "$CACHE_DIR"/build.*  # left by an interrupted build (we hold the lock)
  tmp=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
  log "building into $CACHE_BIN: ${missing[*]:-kwok stages} (Kubernetes $K8S_VERSION," \
      "etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION)"
  for name in "${missing[@]}"; do
    case $name in
      kube-*|kubectl) k8s_pkgs+=("k8s.io/kubernetes/cmd/$name");;
    esac
  done
  if [[ ${#k8s_pkgs[@]} -gt 0 ]]; then
    log "go build ${k8s_pkgs[*]}"
    go_build "$MODULES_DIR/kubernetes" "$tmp/" "$(k8s_ldflags "$K8S_VERSION")" "${k8s_pkgs[@]}"
  fi
  for name in "${missing[@]}"; do
    case $name in
      etcd) log "go build etcd"; go_build "$MODULES_DIR/etcd" "$tmp/etcd" "-s -w" go.etcd.io/etcd/server/v3;;
      kwok) log "go build kwok"; go_build "$MODULES_DIR/kwok" "$tmp/kwok" "-s -w" sigs.k8s.io/kwok/cmd/kwok;;
      helm) log "go build helm"; go_build "$MODULES_DIR/helm" "$tmp/helm" "$(helm_ldflags)" helm.sh/helm/v3/cmd/helm;;
    esac
  done
  for name in "${missing[@]}"; do
    mv -f "$tmp/$name" "$CACHE_BIN/$name"
  done
  rm -rf "$tmp"
  build_kwok_stages
  log "build done in $((SECONDS - start))s"
}

cmd_build() {
  mkdir -p "$CACHE_DIR"
  with_lock "$CACHE_DIR.lock" do_build
  if [[ $REAL_NODE == 1 ]]; then "$HACK_DIR/node/build.sh"; fi
}

# ---------------------------------------------------------------- processes

pid_file() { echo "$CLUSTER_DIR/run/$1.pid"; }

# True while a process exists and is not a zombie.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# Prints the pid of a component if its pid file names a live process that is
# still running the expected binary (guards against pid reuse).
component_pid() {
  local name=$1 file pid exe
  file=$(pid_file "$name")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [[ ${exe##*/} == "$name" || ${exe##*/} == "$name (deleted)" ]] || return 1
  echo "$pid"
}

start_component() { # start_component <name> <args...>
  local name=$1; shift
  local binary pid
  binary=$(bin_path "$name")
  [[ -x $binary ]] || die "$binary missing; run: hack/cluster.sh build"
  # setsid: the cluster outlives the shell (and the Ctrl-C) that started it.
  setsid "$binary" "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null {LOCK_FD}>&- &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
  log "started $name (pid $pid)"
}

stop_component() {
  local name=$1 pid i
  pid=$(component_pid "$name") || { rm -f "$(pid_file "$name")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
  fi
  alive "$pid" && die "$name (pid $pid) did not exit"
  wait "$pid" 2>/dev/null || true  # reap it when it is our own child
  rm -f "$(pid_file "$name")"
  log "stopped $name (pid $pid)"
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

wait_until() { # wait_until <seconds> <description> <command...>
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

kubectl_() { "$(bin_path kubectl)" --kubeconfig "$CLUSTER_DIR/kubeconfig" "$@"; }

apiserver_ready() {
  curl -sf --max-time 2 --cacert "$CLUSTER_DIR/pki/ca.crt" \
    "https://$HOST:$APISERVER_PORT/readyz" >/dev/null
}

all_running() {
  local name
  for name in "${COMPONENTS[@]}"; do
    component_pid "$name" >/dev/null || return 1
  done
}

first_stopped() { # prints the first component that is not running
  local name
  for name in "${COMPONENTS[@]}"; do
    component_pid "$name" >/dev/null || { echo "$name"; return 0; }
  done
  return 1
}

any_running() {
  local name
  for name in "${COMPONENTS[@]}"; do
    component_pid "$name" >/dev/null && return 0
  done
  return 1
}

# ---------------------------------------------------------------- pki

gen_pki() {
  local pki=$CLUSTER_DIR/pki
  command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"
  mkdir -p "$pki"
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=modelrunner-cluster-ca" -days 365 \
    -sha256 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$pki/ca.crt" 2>/dev/null
  gen_cert "$pki" apiserver "/CN=kube-apiserver" \
    "IP:$HOST,DNS:localhost,IP:$NODE_LINK_HOST_IP,IP:$SERVICE_APISERVER_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  gen_cert "$pki" admin "/O=system:masters/CN=kubernetes-admin"
  gen_cert "$pki" kube-controller-manager "/CN=system:kube-controller-manager"
  gen_cert "$pki" kube-scheduler "/CN=system:kube-scheduler"
  gen_cert "$pki" front-proxy-client "/CN=front-proxy-client"
  # The API server's identity towards kubelets (logs, exec, port-forward).
  gen_cert "$pki" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  # Service-account token signing key pair.
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key" 2>/dev/null
  openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki"/*.key
}

# ---------------------------------------------------------------- up / down

start_all() {
  local d=$CLUSTER_DIR pki=$CLUSTER_DIR/pki port start=$SECONDS
  trap abort_start EXIT
  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$SCHEDULER_PORT"; do
    port_in_use "$port" && die "port $HOST:$port is already in use (set CLUSTER_*_PORT to move it)"
  done
  rm -rf "$d"
  mkdir -p "$d/run" "$d/logs" "$d/etcd" "$d/bin"
  gen_pki
  local server=https://$HOST:$APISERVER_PORT
  write_kubeconfig "$d/kubeconfig" "$pki" admin kubernetes-admin "$server"
  write_kubeconfig "$d/run/kube-controller-manager.kubeconfig" "$pki" kube-controller-manager \
    system:kube-controller-manager "$server"
  write_kubeconfig "$d/run/kube-scheduler.kubeconfig" "$pki" kube-scheduler system:kube-scheduler "$server"
  ln -sf "$(bin_path kubectl)" "$d/bin/kubectl"
  ln -sf "$(bin_path helm)" "$d/bin/helm"

  start_component etcd \
    --name=modelrunner --data-dir="$d/etcd" \
    --listen-client-urls="http://$HOST:$ETCD_PORT" --advertise-client-urls="http://$HOST:$ETCD_PORT" \
    --listen-peer-urls="http://$HOST:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster="modelrunner=http://$HOST:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true --quota-backend-bytes=2147483648 \
    --log-level=warn
  wait_until 30 etcd curl -sf --max-time 2 "http://$HOST:$ETCD_PORT/health" || fail_up etcd

  start_component kube-apiserver \
    --etcd-servers="http://$HOST:$ETCD_PORT" \
    --bind-address=0.0.0.0 --advertise-address=$NODE_LINK_HOST_IP --secure-port="$APISERVER_PORT" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --cert-dir="$d/run/apiserver-certs" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --requestheader-client-ca-file="$pki/ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=$SERVICE_CIDR \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --profiling=false \
    --event-ttl=1h
  wait_until 60 kube-apiserver apiserver_ready || fail_up kube-apiserver

  start_component kube-controller-manager \
    --kubeconfig="$d/run/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$d/run/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$d/run/kube-controller-manager.kubeconfig" \
    --bind-address=$HOST --secure-port="$KCM_PORT" --cert-dir="$d/run/kcm-certs" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --service-cluster-ip-range=$SERVICE_CIDR --cluster-name=modelrunner --profiling=false
  start_component kube-scheduler \
    --kubeconfig="$d/run/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$d/run/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$d/run/kube-scheduler.kubeconfig" \
    --bind-address=$HOST --secure-port="$SCHEDULER_PORT" --cert-dir="$d/run/scheduler-certs" \
    --leader-elect=false --profiling=false
  # --node-ip=127.0.0.1: anything the API server sends "to a kubelet" stays on loopback.
  start_component kwok \
    --kubeconfig="$d/kubeconfig" --config="$KWOK_STAGES" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=$POD_CIDR --node-ip=$HOST

  kubectl_ apply -f "$MODULES_DIR/nodes.yaml" >/dev/null
  wait_until 60 "nodes Ready" kubectl_ wait --for=condition=Ready nodes --all --timeout=5s \
    || fail_up kwok
  wait_until 60 "default service account" kubectl_ -n default get serviceaccount default \
    || fail_up kube-controller-manager
  local dead
  dead=$(first_stopped) && fail_up "$dead"
  if [[ $REAL_NODE == 1 ]]; then
    # Its daemons must not inherit the lock.
    MODELRUNNER_CLUSTER_DIR=$d "$NODE_SCRIPT" up {LOCK_FD}>&-
  fi
  trap - EXIT
  log "cluster up in $((SECONDS - start))s: export KUBECONFIG=$d/kubeconfig"
}

fail_up() { # fail_up <component>: show its log; the EXIT trap stops the rest
  local name=$1
  log "$name did not come up; last lines of its log:"
  if [[ -f $CLUSTER_DIR/logs/$name.log ]]; then
    tail -n 30 "$CLUSTER_DIR/logs/$name.log" >&2
  fi
  exit 1
}

# EXIT trap while start_all runs: never leave half a cluster behind.
abort_start() {
  local rc=$?
  trap - EXIT
  if [[ $rc -ne 0 ]]; then
    log "start failed (exit $rc); logs are in $CLUSTER_DIR/logs; stopping what started"
    stop_all keep || true
  fi
  exit "$rc"
}

node_ok() {
  [[ $REAL_NODE != 1 ]] || MODELRUNNER_CLUSTER_DIR=$CLUSTER_DIR "$NODE_SCRIPT" status >/dev/null 2>&1
}
do_up() {
  if all_running && apiserver_ready && node_ok; then
    log "already up: export KUBECONFIG=$CLUSTER_DIR/kubeconfig"
    return 0
  fi
  if any_running; then
    log "cluster is partly running; restarting it"
    stop_all
  fi
  start_all
}

stop_all() { # stop_all [keep]   keep: leave the directory (for its logs)
  local i
  # The node first, while the API server still answers; it runs whenever its pid files say so.
  if [[ -d $CLUSTER_DIR/node || $REAL_NODE == 1 ]] && [[ $(id -u) == 0 ]]; then
    MODELRUNNER_CLUSTER_DIR=$CLUSTER_DIR "$NODE_SCRIPT" down || true
  fi
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    stop_component "${COMPONENTS[i]}"
  done
  if [[ ${1:-} != keep ]]; then
    rm -rf "$CLUSTER_DIR"
  fi
}

cmd_up() {
  cmd_build
  with_lock "$LOCK_FILE" do_up
}

cmd_down() {
  with_lock "$LOCK_FILE" stop_all
  log "down"
}

cmd_status() {
  local name pid rc=0
  for name in "${COMPONENTS[@]}"; do
    if pid=$(component_pid "$name"); then
      printf '%-24s running (pid %s)\n' "$name" "$pid"
    else
      printf '%-24s stopped\n' "$name"; rc=1
    fi
  done
  if [[ -f $CLUSTER_DIR/pki/ca.crt ]] && apiserver_ready; then
    echo "api server:              https://$HOST:$APISERVER_PORT ready"
    echo "kubeconfig:              $CLUSTER_DIR/kubeconfig"
    kubectl_ get nodes -L nvidia.com/gpu.product || rc=1
    if [[ $REAL_NODE == 1 ]]; then
      MODELRUNNER_CLUSTER_DIR=$CLUSTER_DIR "$NODE_SCRIPT" status || rc=1
    fi
  else
    echo "api server:              not ready"; rc=1
  fi
  echo "binaries:                $CACHE_BIN"
  return $rc
}

cmd_path() { # path of a built binary; exit 1 when it is not built
  local p
  p=$(bin_path "${1:?usage: hack/cluster.sh path <binary>}")
  [[ -x $p ]] || return 1
  echo "$p"
}

cmd_env() {
  echo "export KUBECONFIG=$CLUSTER_DIR/kubeconfig"
  echo "export PATH=$CLUSTER_DIR/bin:\$PATH"
  if [[ $REAL_NODE == 1 ]]; then
    MODELRUNNER_CLUSTER_DIR=$CLUSTER_DIR "$NODE_SCRIPT" env | sed 's/^/export /'
  fi
}

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case ${1:-} in
  build) cmd_build;;
  up) cmd_up;;
  down) cmd_down;;
  status) cmd_status;;
  env) cmd_env;;
  path) cmd_path "${2:-}";;
  *) usage;;
esac
