#!/usr/bin/env bash
# tests/images/debian.sh [OUTDIR]: builds a Debian 12 (bookworm) cloud guest
# with cloud-init from Debian packages alone, into OUTDIR (default
# build/images/debian under the repo):
#   vmlinuz      the guest's kernel (linux-image-cloud-amd64), out of its tree
#   initrd.img   its initramfs (initramfs-tools, virtio drivers only)
#   root.img     raw ext4 file system (no partition table) of the whole tree,
#                a little free space; cloud-init grows it to the root disk
#   packages.txt the packages and versions in the image
# Boot it directly: -M microvm -kernel vmlinuz -initrd initrd.img with
# "console=ttyS0 root=/dev/vda ro ci.ds=Ec2" and root.img as virtio-blk;
# an EC2-style metadata service at 169.254.169.254 gives it its user (admin)
# and key, host name and user data.  tests/images/README.md says what is in
# it and why.
#
# Built with mmdebstrap from the machine's own Debian mirrors (apt's
# sources), the files in tests/images/debian-root/ laid over it.  Installs
# the Debian packages it needs itself.  Downloaded .debs are kept in
# OUTDIR/cache, so a rebuild downloads only what changed.  Idempotent: when
# the outputs exist and were built from the same inputs it returns at once.
# Needs root (mmdebstrap's root mode: a chroot with /proc and /dev mounted).
# KOALA_DEBIAN_MIRROR=URL overrides the archive (security updates then come
# from the same host's debian-security).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$REPO/build/images/debian}"
OVERLAY="$HERE/debian-root"
SUITE=bookworm

[ "$(id -u)" -eq 0 ] || { echo "debian image: needs root" >&2; exit 1; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"

# What the guest is made of.  cloud-init's own dependencies (python3,
# isc-dhcp-client, locales ...) come with it; its recommends are named.
GUEST_PACKAGES=(
    systemd-sysv udev dbus kmod iproute2 netbase
    linux-image-cloud-amd64 initramfs-tools zstd
    cloud-init cloud-guest-utils e2fsprogs
    ifupdown isc-dhcp-client
    openssh-server openssh-sftp-server sudo
    ca-certificates curl less nano iputils-ping
)
HOST_PACKAGES=(mmdebstrap e2fsprogs debian-archive-keyring)

# The archive: the machine's own sources for Debian, else deb.debian.org.
# Prints sources.list lines for bookworm, its updates and security.
mirror_lines() {
    local main="" sec="" uri rel
    if [ -n "${KOALA_DEBIAN_MIRROR:-}" ]; then
        main="${KOALA_DEBIAN_MIRROR%/}"
        sec="${main%/debian}/debian-security"
    else
        while read -r uri rel; do
            uri="${uri%/}"
            case "$rel" in
            *-security) [ -n "$sec" ] || sec="$uri" ;;
            *) [ -n "$main" ] || main="$uri" ;;
            esac
        done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' \
                     'Identifier: Packages' 2>/dev/null |
                 awk '$1 ~ /\/debian(-security)?\/?$/' | sort -u)
    fi
    main="${main:-http://deb.debian.org/debian}"
    sec="${sec:-http://deb.debian.org/debian-security}"
    echo "deb $main $SUITE main"
    echo "deb $main $SUITE-updates main"
    echo "deb $sec $SUITE-security main"
}

# ---- fast path -------------------------------------------------------------
inputs_hash() {
    ( cd "$HERE" && cat debian.sh && find debian-root -type f |
        LC_ALL=C sort | while read -r f; do
            echo "$f"; stat -c %a "$f"; cat "$f"
        done
      mirror_lines ) | sha256sum | cut -d' ' -f1
}
# One build at a time per OUTDIR; a second caller waits, then finds it done.
exec 9> "$OUT/.lock"
flock 9
STAMP="$OUT/.stamp"
HASH="$(inputs_hash)"
if [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$HASH" ] &&
   [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] &&
   [ -s "$OUT/root.img" ]; then
    echo "debian image: up to date in $OUT"
    exit 0
fi

# ---- host packages ---------------------------------------------------------
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
missing=()
for p in "${HOST_PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "debian image: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/koala-debian.XXXXXX")"
# mmdebstrap unmounts what it mounted in the tree, even on failure.
trap 'rm -rf --one-file-system "$WORK"' EXIT
TREE="$WORK/tree"
CACHE="$OUT/cache"
mkdir -p "$CACHE"

# ---- the tree --------------------------------------------------------------
# The customize hook runs in the finished tree ($1), before mmdebstrap's
# cleanup: the image's own settings (see README.md for each).
cat > "$WORK/customize.sh" <<'EOF'
#!/bin/sh
set -eu
R="$1"
in_root() { chroot "$R" "$@"; }
# Root is the whole disk /dev/vda (the NC's root=/dev/vda): no label or
# UUID to wait for.  No fsck at boot (1.2 s under TCG for a clean file
# system): the journal is replayed at mount after a crash.
printf '/dev/vda / ext4 rw,discard,errors=remount-ro 0 0\n' > "$R/etc/fstab"
echo localhost > "$R/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' \
    > "$R/etc/hosts"
# Written by the DHCP client at boot; none of the build host's.
rm -f "$R/etc/resolv.conf"
# Made at first boot: the machine id, and by cloud-init the host keys.
: > "$R/etc/machine-id"
rm -f "$R"/etc/ssh/ssh_host_*
# ifupdown: lo here, the NIC in interfaces.d from cloud-init.
cat > "$R/etc/network/interfaces" <<'ENI'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
ENI
# Locales: C.UTF-8 is the system's (no generation at boot); en_US.UTF-8 is
# there for ssh clients that send LANG.
sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' "$R/etc/locale.gen"
in_root locale-gen >/dev/null
echo LANG=C.UTF-8 > "$R/etc/default/locale"
# Nothing that runs for a long-lived server's upkeep on a fresh guest, and
# none of the early-boot units for things a cloud guest does not use (each
# is a process or a mount on the one emulated CPU): no console but the
# serial one, no binfmt, hugepages, debug/tracing/config file systems, no
# modules loaded ahead of need (they load when used).
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
         e2scrub_all.timer e2scrub_reap.service fstrim.timer \
         man-db.timer getty@tty1.service \
         systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
         dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
         sys-kernel-config.mount sys-fs-fuse-connections.mount \
         modprobe@configfs.service modprobe@dm_mod.service \
         modprobe@drm.service modprobe@efi_pstore.service \
         modprobe@fuse.service modprobe@loop.service \
         systemd-pstore.service; do
    in_root systemctl mask "$u" >/dev/null 2>&1 || true
done
EOF
chmod +x "$WORK/customize.sh"

include="$(IFS=,; echo "${GUEST_PACKAGES[*]}")"
mapfile -t mirrors < <(mirror_lines)
echo "debian image: mmdebstrap $SUITE from ${mirrors[0]#deb }"
# The apt cache is synchronised with OUTDIR/cache in and out of the tree
# (mmdebstrap's own recipe); docs, man pages and translations are left out.
nice mmdebstrap --mode=root --variant=minbase --include="$include" \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $(printf %q "$CACHE") /var/cache/apt/archives/" \
    --setup-hook="cp -a $(printf %q "$OVERLAY")/. \"\$1\"/" \
    --customize-hook="$(printf %q "$WORK/customize.sh") \"\$1\"" \
    --customize-hook="sync-out /var/cache/apt/archives $(printf %q "$CACHE")" \
    "$SUITE" "$TREE" "${mirrors[@]}"
rm -f "$CACHE/lock"; rm -rf "$CACHE/partial"

# ---- kernel and initramfs out of the tree ----------------------------------
kver="$(ls "$TREE/lib/modules" | head -n1)"
[ -n "$kver" ] && [ -s "$TREE/boot/initrd.img-$kver" ] ||
    { echo "debian image: no kernel or initramfs in the tree" >&2; exit 1; }
cp "$TREE/boot/vmlinuz-$kver" "$WORK/vmlinuz"
cp "$TREE/boot/initrd.img-$kver" "$WORK/initrd.img"
# They boot from outside the disk: the copies in it would only take room.
rm -f "$TREE/boot/vmlinuz-$kver" "$TREE/boot/initrd.img-$kver" \
    "$TREE"/vmlinuz* "$TREE"/initrd.img*
chroot "$TREE" dpkg-query -W -f='${Package} ${Version}\n' > "$WORK/packages.txt"
echo "debian image: kernel $kver"

# ---- root.img --------------------------------------------------------------
# Made roomy, shrunk to its minimum, then given FREE_MB of free space for
# instances whose root disk is no larger than the image (types without a
# disk size); cloud-init's resizefs grows it to the disk at every boot.
# 4 KiB blocks and the default inode ratio whatever the size (mke2fs would
# pick 1 KiB blocks for a small file system), and room for the GDT to grow
# 1024-fold online.
FREE_MB=256
used_mb=$(du -sxm "$TREE" | cut -f1)
img="$WORK/root.img"
truncate -s "$(( used_mb * 2 + 512 ))M" "$img"
mke2fs -q -F -t ext4 -T default -b 4096 -L debian-root \
    -E root_owner=0:0 -d "$TREE" "$img"
e2fsck -fy "$img" >/dev/null 2>&1 || [ $? -le 1 ]
resize2fs -M "$img" >/dev/null 2>&1
blocks=$(dumpe2fs -h "$img" 2>/dev/null | awk -F: '/^Block count/ {print $2+0}')
blocks=$(( blocks + FREE_MB * 256 ))
resize2fs "$img" "$blocks" >/dev/null 2>&1
truncate -s $(( blocks * 4096 )) "$img"
e2fsck -fy "$img" >/dev/null 2>&1 || [ $? -le 1 ]

# ---- publish ---------------------------------------------------------------
for f in vmlinuz initrd.img root.img packages.txt; do
    mv -f "$WORK/$f" "$OUT/$f"
done
{ echo "$HASH"; echo "kernel=$kver"; echo "mirrors=${mirrors[*]}"; } > "$STAMP"
echo "debian image: built in $OUT"
ls -l "$OUT"
