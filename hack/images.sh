#!/usr/bin/env bash
# `make images`: the runner and operator images, built daemonless with buildah from the project's
# own Dockerfiles on a Python base made from Debian's archive (hack/images/base.sh), then pushed
# to the local cluster's registry $MODELRUNNER_REGISTRY (plain HTTP, e.g. 10.250.0.1:5000).
#
# Tags are content hashes of the inputs (the build context's files, the Dockerfile, the base
# image id, the llama-cpp-python wheel, this script): a tag already in the registry is neither
# built nor pushed again. Prints the references and writes them to $IMAGES_ENV (RUNNER_IMAGE=,
# OPERATOR_IMAGE=, CLIENTS_IMAGE= for examples/06-clients). Without $MODELRUNNER_REGISTRY the images stay in buildah's local storage.
# Needs root, buildah and debootstrap (apt-get install buildah debootstrap).
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/modelrunner
IMAGES_CACHE=${MODELRUNNER_IMAGES_CACHE:-$CACHE_ROOT/images}
WHEELS=${WHEELS:-$CACHE_ROOT/wheels/no-openmp}  # make dev builds it without OpenMP (Makefile)
IMAGES_ENV=${MODELRUNNER_IMAGES_ENV:-$REPO_ROOT/.cluster/images.env}
REGISTRY=${MODELRUNNER_REGISTRY:-}
# What the Dockerfiles copy (.dockerignore lets in the same paths).
CONTEXT_PATHS=(pyproject.toml README.md runner operator hack/images/wheels)

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# RUN steps: chroot isolation (no OCI runtime or nested namespaces needed) on the host network
# (pip reaches PyPI). The storage driver is buildah's default (overlay here); STORAGE_DRIVER=vfs
# overrides it where overlay cannot mount.
bah() { buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} "$@"; }
# RUN steps trust what the host trusts (a TLS-intercepting proxy's CA, for example): the host's
# CA bundle is mounted over the image's for the build only; it is not committed.
HOST_CA=/etc/ssl/certs/ca-certificates.crt
ca_mount=()
if [ -f "$HOST_CA" ]; then ca_mount=(--volume "$HOST_CA:$HOST_CA:ro"); fi

# shellcheck source=hack/images/base.sh
. "$HACK_DIR/images/base.sh"

[ "$(id -u)" = 0 ] || die "buildah here runs as root (rootful storage, chroot isolation)"
command -v buildah >/dev/null || die "buildah is missing: apt-get install buildah"

mkdir -p "$IMAGES_CACHE"
exec 9>"$IMAGES_CACHE/.lock"
flock 9  # one build at a time: they share buildah's storage and the context directory

# The build context: the files git tracks (or would add) under CONTEXT_PATHS, as in the tree.
stage_context() { # stage_context <dir> <wheel or "">
  local dir=$1 wheel=$2
  (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard -- "${CONTEXT_PATHS[@]}" \
     | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
     | sort -zu | xargs -0 -r cp --parents -t "$dir")
  cp "$REPO_ROOT/.dockerignore" "$dir/"
  if [ -n "$wheel" ]; then cp "$wheel" "$dir/hack/images/wheels/"; fi
}

registry_has() { # registry_has <repository> <tag>
  curl -fsS -o /dev/null --max-time 10 \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REGISTRY/v2/$1/manifests/$2" 2>/dev/null
}

# Local storage keeps the newest build of each image only (the registry keeps every tag).
prune_older() { # prune_older <name> <reference to keep>
  local old
  for old in $(bah images --noheading --format '{{.Name}}:{{.Tag}}' --filter "reference=localhost/modelrunner/$1"); do
    [ "$old" = "$2" ] || bah rmi "$old" >/dev/null 2>&1 || true
  done
  bah rmi --prune >/dev/null 2>&1 || true
}

build_image() { # build_image <name> <dockerfile> <extra hash input> [context]; prints the reference
  local name=$1 dockerfile=$2 extra=$3 context=${4:-$CONTEXT} tag local_ref ref started
  tag=$( { (cd "$context" && find . -type f ! -name '*.whl' -print0 | sort -z | xargs -0 sha256sum)
           sha256sum "$REPO_ROOT/$dockerfile" "${BASH_SOURCE[0]}" | cut -d' ' -f1
           echo "base=$BASE_ID $extra"; } | sha256sum | cut -c1-16)
  local_ref=localhost/modelrunner/$name:$tag
  ref=${REGISTRY:+$REGISTRY/modelrunner/$name:$tag}
  ref=${ref:-$local_ref}
  if [ -n "$REGISTRY" ] && registry_has "modelrunner/$name" "$tag"; then
    log "$name: cached ($ref is in the registry)"
  else
    if bah inspect --type image "$local_ref" >/dev/null 2>&1; then
      log "$name: cached ($local_ref is in local storage)"
    else
      log "$name: building $local_ref from $dockerfile"
      started=$SECONDS
      # --format docker keeps HEALTHCHECK; VARIANT=cpu is runner/Dockerfile's default, but buildah
      # 1.28 resolves `FROM build-${VARIANT}` to its stage only when the argument is given.
      bah build --isolation chroot --network host --pull=never --format docker "${ca_mount[@]}" \
        --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg VARIANT=cpu \
        -f "$REPO_ROOT/$dockerfile" -t "$local_ref" "$context" >"$IMAGES_CACHE/build-$name.log" 2>&1 \
        || { tail -30 "$IMAGES_CACHE/build-$name.log" >&2; die "$name: build failed (log: $IMAGES_CACHE/build-$name.log)"; }
      log "$name: built in $((SECONDS - started))s"
      prune_older "$name" "$local_ref"
    fi
    if [ -n "$REGISTRY" ]; then
      log "$name: pushing $ref"
      bah push --quiet --tls-verify=false "$local_ref" "docker://$ref" >/dev/null
    fi
  fi
  echo "$ref"
}

ensure_base_image
BASE_ID=$(bah inspect --type image --format '{{.FromImageID}}' "$BASE_IMAGE")

LLAMA_CPP_VERSION=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' "$REPO_ROOT/pyproject.toml")
wheel=$(find "$WHEELS" -maxdepth 1 -name "llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" 2>/dev/null | sort | head -1)
if [ -n "$wheel" ]; then
  wheel_sum=$(sha256sum "$wheel" | cut -d' ' -f1)
else
  wheel_sum=none
  log "no cached llama-cpp-python $LLAMA_CPP_VERSION wheel in $WHEELS (make dev builds it): the runner build compiles llama.cpp"
fi

CONTEXT=$(mktemp -d "${TMPDIR:-/tmp}/modelrunner-context.XXXXXX")
trap 'rm -rf "$CONTEXT"' EXIT
stage_context "$CONTEXT" "$wheel"

runner=$(build_image runner runner/Dockerfile "wheel=$wheel_sum")
operator=$(build_image operator operator/Dockerfile "")
# The clients of examples/06-clients with their packages preinstalled (pods here reach no PyPI).
clients=$(build_image clients examples/06-clients/Dockerfile "" "$REPO_ROOT/examples/06-clients")

mkdir -p "$(dirname "$IMAGES_ENV")"
printf 'RUNNER_IMAGE=%s\nOPERATOR_IMAGE=%s\nCLIENTS_IMAGE=%s\n' "$runner" "$operator" "$clients" \
  | tee "$IMAGES_ENV"
