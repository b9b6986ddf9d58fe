#!/bin/sh
# /etc/rc.sh: boots the Koala test guest.  Mounts the API file systems, loads
# the virtio modules, mounts /dev/vda read-only if it holds a file system,
# starts the HTTP server on :8080 (the page, and /cgi-bin/run: a shell
# script POSTed to it runs and its output comes back, for tests), the ACPI
# daemon (power button -> poweroff), the UDP echo on port 7 (udpecho) and
# DHCP.  The DHCP script prints the
# KOALA-GUEST-READY marker once the guest has an address and the page on
# :8080 shows it.
export PATH=/bin:/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /run /tmp /mnt/root /www
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

say() { echo "$*" > /dev/console; }

# Modules in dependency order (written by build.sh); a module the running
# machine has no device for just loads and waits.
while read -r m; do
    [ -n "$m" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
done < /lib/modules/load.order

# Kernel command line: koala.hostname=NAME, koala.userdata=STRING.
hostname_arg=""
userdata=""
for w in $(cat /proc/cmdline); do
    case "$w" in
        koala.hostname=*) hostname_arg="${w#koala.hostname=}" ;;
        koala.userdata=*) userdata="${w#koala.userdata=}" ;;
    esac
done
echo "$hostname_arg" > /run/hostname_arg
echo "$userdata" > /run/userdata
hostname "${hostname_arg:-koala-guest}"

ip link set lo up

# Block devices; the root disk (vda) is mounted read-only when it carries
# a file system (the EMI root image has a marker file /koala-emi).
disks=""
for d in /sys/block/vd*; do
    [ -e "$d" ] && disks="$disks ${d##*/}"
done
disks="${disks# }"
echo "$disks" > /run/disks
emi=""
if [ -b /dev/vda ] && mount -t ext4 -o ro /dev/vda /mnt/root 2>/dev/null; then
    [ -f /mnt/root/koala-emi ] && emi="$(head -n 1 /mnt/root/koala-emi)"
fi
echo "$emi" > /run/emi
say "KOALA-GUEST-DISKS ${disks:-none} emi=${emi:-none}"

/etc/udhcpc/page.sh none
httpd -p 8080 -h /www
udpecho -l 7 </dev/null >/dev/null 2>&1 &

# Power button -> /etc/acpi/PWRF/00000080 -> poweroff.
if ls /dev/input/event* >/dev/null 2>&1; then
    acpid -c /etc/acpi -l /run/acpid.log
fi

if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    # -b: go to the background if no lease comes within the tries; the
    # script prints the marker whenever the lease arrives.
    udhcpc -i eth0 -s /etc/udhcpc/default.script -b -t 20 -T 1 -A 3 \
        -O hostname -O mtu -x hostname:"$(hostname)" -p /run/udhcpc.pid
else
    say "KOALA-GUEST-READY ip=none hostname=$(hostname)"
fi
