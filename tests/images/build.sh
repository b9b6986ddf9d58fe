#!/usr/bin/env bash
# tests/images/build.sh [OUTDIR]: builds the small guest image the tests boot,
# into OUTDIR (default build/images under the repo):
#   vmlinuz      Debian's cloud kernel, taken out of its .deb (never installed)
#   initrd.img   gzip cpio initramfs: busybox-static, the virtio modules and
#                the init scripts in tests/images/initramfs/ (DHCP, marker
#                line on the serial console, HTTP page on :8080), and
#                udpecho (udpecho.c, static: a UDP echo on port 7)
#   root.img     64 MiB raw ext4 image standing for an EMI root disk
#   disk.qcow2   whole-disk bootable image: MBR + FAT partition with syslinux,
#                the same kernel and initrd
# Installs the Debian packages it needs (the kernel only as an unpacked .deb,
# cached in OUTDIR/cache).  Mounts nothing; needs root for mknod and apt.  Idempotent: when
# the outputs exist and were built from the same inputs it returns at once.
# See tests/images/README.md for the QEMU command lines that boot these.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$REPO/build/images}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# The kernel: the cloud flavour's metapackage names the current ABI; set
# KOALA_GUEST_KERNEL=linux-image-6.1.0-NN-cloud-amd64 to pin one.
KMETA=linux-image-cloud-amd64

# Modules the guest loads (their dependencies are added): virtio-mmio for
# microvm, virtio-pci for pc/q35, disk and NIC drivers, the ACPI button
# plus evdev so that acpid sees the power button (QMP system_powerdown),
# and virtio-scsi with SCSI disks: EBS volumes reach a microvm guest as
# scsi-hd disks on a virtio-scsi bus (src/nc/volumes.c).
MODULES=(virtio_mmio virtio_pci virtio_blk virtio_net button evdev
         virtio_scsi sd_mod)

PACKAGES=(qemu-system-x86 qemu-utils e2fsprogs cpio gzip kmod
          syslinux syslinux-common mtools dosfstools fdisk util-linux
          gcc libc6-dev)

# ---- fast path -------------------------------------------------------------
inputs_hash() {
    ( cd "$HERE" && cat build.sh udpecho.c && find initramfs -type f | LC_ALL=C sort |
        while read -r f; do echo "$f"; stat -c %a "$f"; cat "$f"; done
      echo "${KOALA_GUEST_KERNEL:-}" ) | sha256sum | cut -d' ' -f1
}
# One build at a time per OUTDIR; a second caller waits, then finds it done.
exec 9> "$OUT/.lock"
flock 9
STAMP="$OUT/.stamp"
HASH="$(inputs_hash)"
if [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$HASH" ] &&
   [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] &&
   [ -s "$OUT/root.img" ] && [ -s "$OUT/disk.qcow2" ]; then
    echo "images: up to date in $OUT"
    exit 0
fi

# ---- packages --------------------------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
# busybox-static conflicts with the dynamic busybox package (which some
# hosts have for their own initramfs): there, take the static binary out of
# its .deb instead of replacing the host's busybox.
BB_FROM_DEB=0
if installed busybox && ! installed busybox-static; then
    BB_FROM_DEB=1
else
    PACKAGES+=(busybox-static)
fi
missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" -eq 1 ] && return 0
    $SUDO apt-get update -qq
    APT_UPDATED=1
}
if [ ${#missing[@]} -gt 0 ]; then
    echo "images: installing ${missing[*]}"
    apt_update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin:/sbin"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/koala-images.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# ---- .debs we unpack but never install (cached in OUTDIR/cache) ------------
CACHE="$OUT/cache"
mkdir -p "$CACHE"
# fetch_deb PKG: prints the path of PKG's .deb in the cache, downloading it
# if needed.  Sandbox user root: the temp dir is not the _apt user's.
fetch_deb() {
    local pkg="$1" deb
    deb="$(ls "$CACHE/${pkg}_"*.deb 2>/dev/null | head -n1 || true)"
    if [ -z "$deb" ]; then
        echo "images: downloading $pkg" >&2
        ( cd "$WORK" &&
          apt-get -qq -o APT::Sandbox::User=root download "$pkg" >&2 ) ||
            return 1
        mv "$WORK/${pkg}_"*.deb "$CACHE/"
        deb="$(ls "$CACHE/${pkg}_"*.deb | head -n1)"
    fi
    echo "$deb"
}
resolve_kernel() {
    [ -n "${KOALA_GUEST_KERNEL:-}" ] && { echo "$KOALA_GUEST_KERNEL"; return; }
    apt-cache depends "$KMETA" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\)$/\1/p' |
        head -n1
}
kpkg="$(resolve_kernel)"
if [ -z "$kpkg" ] || ! deb="$(fetch_deb "$kpkg")"; then
    # No package lists yet, or they name a kernel the mirror has dropped.
    apt_update
    kpkg="$(resolve_kernel)"
    [ -n "$kpkg" ] || { echo "images: cannot resolve $KMETA" >&2; exit 1; }
    deb="$(fetch_deb "$kpkg")"
fi
KX="$WORK/kernel"
dpkg-deb -x "$deb" "$KX"
kver="$(ls "$KX/lib/modules" | head -n1)"
cp "$KX/boot/vmlinuz-$kver" "$WORK/vmlinuz"
echo "images: kernel $kver"

BUSYBOX=/bin/busybox
if [ "$BB_FROM_DEB" -eq 1 ]; then
    bbdeb="$(fetch_deb busybox-static || { apt_update && fetch_deb busybox-static; })"
    dpkg-deb -x "$bbdeb" "$WORK/bb"
    BUSYBOX="$WORK/bb/bin/busybox"
fi

# ---- initramfs -------------------------------------------------------------
R="$WORK/initramfs"
mkdir -p "$R"/{bin,sbin,dev,proc,sys,run,tmp,mnt/root,www,lib/modules,etc}
cp -a "$HERE/initramfs/." "$R/"
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do
    [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
ln -sf /bin/busybox "$R/init"
# The guest's UDP echo (busybox's nc is TCP only): static, so it needs
# nothing else in the initramfs; libc6-dev carries the static libc.
gcc -static -Os -s -Wall -Werror -o "$R/bin/udpecho" "$HERE/udpecho.c"
# init needs a console before it can mount devtmpfs itself.
mknod -m 600 "$R/dev/console" c 5 1
mknod -m 666 "$R/dev/null" c 1 3
echo "root:x:0:0:root:/:/bin/sh" > "$R/etc/passwd"
echo "root:x:0:" > "$R/etc/group"
: > "$R/etc/resolv.conf"

# Dependencies in load order, from depmod/modprobe run on the unpacked tree.
depmod -b "$KX" "$kver"
: > "$R/lib/modules/load.order"
for m in "${MODULES[@]}"; do
    modprobe -d "$KX" -S "$kver" --show-depends "$m" |
        awk '$1 == "insmod" { print $2 }'
done | awk '!seen[$0]++' | while read -r ko; do
    name="$(basename "$ko" .ko)"
    cp "$ko" "$R/lib/modules/$name.ko"
    echo "$name" >> "$R/lib/modules/load.order"
done
echo "images: modules $(tr '\n' ' ' < "$R/lib/modules/load.order")"

( cd "$R" && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc --owner=0:0 --quiet ) | gzip -9 -n > "$WORK/initrd.img"

# ---- root.img: the EMI root disk -------------------------------------------
RD="$WORK/rootdisk"
mkdir -p "$RD"
echo "koala-test-emi root disk (kernel $kver)" > "$RD/koala-emi"
rm -f "$WORK/root.img"; truncate -s 64M "$WORK/root.img"
mke2fs -q -F -t ext4 -L koala-root -d "$RD" "$WORK/root.img"

# ---- disk.qcow2: whole-disk boot with syslinux -----------------------------
# A 64 MiB disk: MBR (syslinux mbr.bin), one bootable FAT16 partition at
# 1 MiB that holds ldlinux, syslinux.cfg, vmlinuz and initrd.img.  The
# partition is built as its own file with mtools and copied in with dd.
PSTART=2048                     # sectors
DISK_MB=64
PART_SECTORS=$(( DISK_MB * 2048 - PSTART ))
FAT="$WORK/part.img"
mkfs.fat -C -F 16 -n KOALABOOT -h "$PSTART" "$FAT" $(( PART_SECTORS / 2 )) \
    >/dev/null
cat > "$WORK/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT koala
PROMPT 0
TIMEOUT 0
LABEL koala
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0 quiet panic=-1
EOF
export MTOOLS_SKIP_CHECK=1
mcopy -i "$FAT" "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/syslinux.cfg" ::/
syslinux --install "$FAT"
DISK="$WORK/disk.raw"
truncate -s "${DISK_MB}M" "$DISK"
echo "start=$PSTART, type=6, bootable" | sfdisk -q --label dos "$DISK"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$DISK" bs=440 count=1 \
    conv=notrunc status=none
dd if="$FAT" of="$DISK" bs=512 seek="$PSTART" conv=notrunc,sparse status=none
qemu-img convert -f raw -O qcow2 "$DISK" "$WORK/disk.qcow2"

# ---- publish ---------------------------------------------------------------
for f in vmlinuz initrd.img root.img disk.qcow2; do
    mv -f "$WORK/$f" "$OUT/$f"
done
{ echo "$HASH"; echo "kernel=$kpkg ($kver)"; } > "$STAMP"
echo "images: built in $OUT"
ls -l "$OUT"
