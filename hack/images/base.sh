#!/usr/bin/env bash
# The local Python base image, from Debian's archive only (no public image registry needed):
# debootstrap of bookworm (minbase) plus python3, python3-venv, ca-certificates and libgomp1
# (llama.cpp's CPU backend links OpenMP), committed into buildah's local storage as $BASE_IMAGE.
#
# The rootfs tarball is cached under $IMAGES_CACHE keyed by this script and its inputs; the image
# is committed with a fixed timestamp, so the same tarball always gives the same image id.
# Sourced by hack/images.sh (needs log, die, bah); defines ensure_base_image.

DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
BASE_PACKAGES=python3,python3-venv,ca-certificates,libgomp1
BASE_IMAGE=${BASE_IMAGE:-localhost/modelrunner/python:3.11-$DEBIAN_SUITE}

# The mirror the host's apt uses (deb822 or one-line sources), else deb.debian.org.
debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / && $3 == "'"$DEBIAN_SUITE"'" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  echo "${DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

# Apt sources inside the image: the suite, its updates and its security updates.
image_sources() {
  cat <<EOF
Types: deb
URIs: $1
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${1%/debian}/debian-security
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# Like Debian's slim images: no docs, man pages or translations.
dpkg_excludes() {
  cat <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
}

build_rootfs() { # build_rootfs <mirror> <tarball>
  local mirror=$1 tarball=$2 root
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
  root=$(mktemp -d "${TMPDIR:-/tmp}/modelrunner-rootfs.XXXXXX")
  log "debootstrap $DEBIAN_SUITE (minbase + $BASE_PACKAGES) from $mirror"
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  dpkg_excludes > "$root/etc/dpkg/dpkg.cfg.d/slim"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$DEBIAN_SUITE" "$root" "$mirror" \
    > "$root.log" 2>&1 || { tail -20 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
  rm -f "$root/etc/apt/sources.list"
  image_sources "$mirror" > "$root/etc/apt/sources.list.d/debian.sources"
  log "applying $DEBIAN_SUITE-updates and -security"
  mount -t proc proc "$root/proc"
  { chroot "$root" apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -y -qq upgrade; } >> "$root.log" 2>&1 \
    || { umount "$root/proc"; die "apt-get upgrade in the rootfs failed (log: $root.log)"; }
  chroot "$root" apt-get clean
  umount "$root/proc"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* \
    "$root"/tmp/* "$root"/usr/share/doc/*/[!c]* "$root"/usr/share/man/* "$root"/usr/share/locale/[!l]*
  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$root" "$root.log"
}

ensure_base_image() {
  local mirror key tarball ctr
  mirror=$(debian_mirror)
  key=$( { cat "${BASH_SOURCE[0]}"; echo "$DEBIAN_SUITE $BASE_PACKAGES $mirror"; } | sha256sum | cut -c1-16)
  tarball="$IMAGES_CACHE/rootfs-$DEBIAN_SUITE-$key.tar"
  if [ "$(bah inspect --type image --format '{{index .OCIv1.Config.Labels "io.modelrunner.base.key"}}' "$BASE_IMAGE" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  mkdir -p "$IMAGES_CACHE"
  [ -f "$tarball" ] || build_rootfs "$mirror" "$tarball"
  log "committing $BASE_IMAGE from $(basename "$tarball")"
  ctr=$(bah from scratch)
  bah add --quiet "$ctr" "$tarball" / >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 --os linux --arch "$(dpkg --print-architecture)" \
    --label "io.modelrunner.base.key=$key" "$ctr"
  bah commit --quiet --rm --timestamp 0 "$ctr" "$BASE_IMAGE" >/dev/null
}
