# Go build helpers shared by hack/cluster.sh and hack/node/build.sh.
# shellcheck shell=bash

# go_build <wrapper module dir> <output file, or dir ending in /> <ldflags> <packages...>
go_build() {
  local dir=$1 out=$2 ldflags=$3; shift 3
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH=/usr/local/go/bin:$PATH  # the official tarball's place, often not on PATH
  fi
  (cd "$dir" &&
    GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=readonly \
      go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out" "$@")
}

# module_version <go.mod> <module path>
module_version() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}

# k8s_ldflags <version>: stamp the version, so `kubectl version` and helm's checks see it.
k8s_ldflags() {
  local v=$1 major minor pkg flags="-s -w"
  major=${v#v}; major=${major%%.*}
  minor=${v#v"$major".}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}
