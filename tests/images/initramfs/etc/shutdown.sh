#!/bin/sh
# /etc/shutdown.sh: run by busybox init before poweroff/reboot.
export PATH=/bin:/sbin
echo "KOALA-GUEST-SHUTDOWN" > /dev/console
umount /mnt/root 2>/dev/null
sync
