#!/bin/sh
# page.sh IP: writes the page httpd serves on :8080 (plain text).
mac="$(cat /sys/class/net/eth0/address 2>/dev/null)"
cat > /www/index.html.new <<EOP
KOALA-GUEST hostname=$(hostname) ip=$1
mac=${mac:-none}
disks=$(cat /run/disks 2>/dev/null)
emi=$(cat /run/emi 2>/dev/null)
userdata=$(cat /run/userdata 2>/dev/null)
mem_kb=$(awk '/^MemTotal/{t=$2} /^MemAvailable/{a=$2} END{print t" available="a}' /proc/meminfo)
EOP
mv /www/index.html.new /www/index.html
