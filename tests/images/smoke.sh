#!/usr/bin/env bash
# tests/images/smoke.sh [--measure N] [OUTDIR]: proves the test guest image
# boots and is reachable on a private network, the way the NC will run it.
#
# Builds the images if needed (tests/images/build.sh), makes a network
# namespace holding a bridge br0 (10.77.0.1/24), dnsmasq (fixed leases by
# MAC) and two tap devices, and boots two guests in it at once with QEMU TCG:
#   micro  -M microvm, direct kernel boot, root.img as virtio-blk  -> 10.77.0.42
#   disk   -M q35, SeaBIOS boot of a qcow2 overlay on disk.qcow2    -> 10.77.0.43
# It checks each guest's KOALA-GUEST-READY line on its serial console, fetches
# http://IP:8080/ from inside the namespace, exercises QMP (query-status,
# stop/cont) and powers the guests off with QMP system_powerdown (ACPI power
# button), expecting QEMU to exit on its own.  Cleans up everything it made
# (namespace, processes by PID, temp files).  Exits 0 only if all checks pass.
#
# --measure N: instead boots each style N times one after the other and
# prints boot-to-marker min/median and QEMU's RSS at the marker.
#
# KIMG_KEEP=1 keeps the temp dir (serial logs, dnsmasq log) for a look.
# Needs root (network namespaces, tap devices).  Traffic stays inside the
# namespace.  Takes ~15-40 s on 2 cores without KVM.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MEASURE=0
if [ "${1:-}" = "--measure" ]; then
    MEASURE="${2:?--measure needs a count}"
    shift 2
fi
IMG="${1:-$REPO/build/images}"

[ "$(id -u)" -eq 0 ] || { echo "smoke: needs root" >&2; exit 1; }

"$HERE/build.sh" "$IMG"
IMG="$(cd "$IMG" && pwd)"

DEPS=()
command -v dnsmasq >/dev/null || DEPS+=(dnsmasq-base)
command -v curl >/dev/null || DEPS+=(curl)
command -v ip >/dev/null || DEPS+=(iproute2)
command -v python3 >/dev/null || DEPS+=(python3)
if [ ${#DEPS[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${DEPS[@]}"
fi

NS="kimg-lan-$$"                # unique, so parallel runs do not collide
T="$(mktemp -d "${TMPDIR:-/tmp}/koala-smoke.XXXXXX")"
QMP="$HERE/qmp.py"
PIDS=()                         # every process we started, by PID
LAST_PID=
MAC_MICRO=52:54:00:77:00:42
MAC_DISK=52:54:00:77:00:43
IP_MICRO=10.77.0.42
IP_DISK=10.77.0.43
passed=0
failed=0

# alive PID: running and not a zombie waiting to be reaped.
alive() {
    local st
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    st="${st##*) }"
    [ "${st%% *}" != Z ]
}

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        alive "$p" && kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            alive "$p" || break
            sleep 0.2
        done
        alive "$p" && kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || true
    if [ -n "${KIMG_KEEP:-}" ]; then
        echo "smoke: kept serial logs and QEMU output in $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---- network: namespace, bridge, dnsmasq, taps ------------------------------
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge forward_delay 0
ip -n "$NS" addr add 10.77.0.1/24 dev br0
ip -n "$NS" link set br0 up
for tap in tap0 tap1; do
    ip -n "$NS" tuntap add "$tap" mode tap
    ip -n "$NS" link set "$tap" master br0 up
done
ip netns exec "$NS" dnsmasq --no-daemon --conf-file=/dev/null --port=0 \
    --interface=br0 --bind-interfaces --except-interface=lo \
    --dhcp-range=10.77.0.10,10.77.0.200,12h \
    --dhcp-host="$MAC_MICRO,$IP_MICRO,kimg-micro" \
    --dhcp-host="$MAC_DISK,$IP_DISK,kimg-disk" \
    --dhcp-leasefile="$T/leases" --pid-file="$T/dnsmasq.pid" \
    --log-dhcp > "$T/dnsmasq.log" 2>&1 &
PIDS+=($!)

# ---- the two QEMU command lines (as documented in README.md) ---------------
# microvm under TCG needs the guest told the TSC rate (see host-tsc-khz.sh);
# without a known rate, -icount makes PIT calibration deterministic instead
# (about 25% slower idle, twice as slow on a busy host).
if TSC_KHZ="$("$HERE/host-tsc-khz.sh")"; then
    MICRO_CLOCK=(); MICRO_APPEND=" tsc_early_khz=$TSC_KHZ"
else
    MICRO_CLOCK=(-icount shift=auto); MICRO_APPEND=""
fi
# start_micro NAME TAP MAC: microvm, direct kernel boot; sets LAST_PID.
start_micro() {
    local n="$1" tap="$2" mac="$3"
    ip netns exec "$NS" qemu-system-x86_64 \
        -name "$n" -M microvm -accel tcg,tb-size=32 "${MICRO_CLOCK[@]}" \
        -cpu qemu64 -smp 1 -m 96M -nodefaults -no-user-config \
        -display none -monitor none \
        -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" \
        -append "console=ttyS0 quiet panic=-1$MICRO_APPEND koala.userdata=smoke-$n" \
        -drive id=root,file="$IMG/root.img",format=raw,if=none,readonly=on \
        -device virtio-blk-device,drive=root \
        -netdev tap,id=n0,ifname="$tap",script=no,downscript=no \
        -device virtio-net-device,netdev=n0,mac="$mac" \
        -chardev file,id=con,path="$T/$n.serial" -serial chardev:con \
        -qmp unix:"$T/$n.qmp",server=on,wait=off \
        -pidfile "$T/$n.pid" > /dev/null 2> "$T/$n.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
# start_disk NAME TAP MAC: q35 + SeaBIOS booting a qcow2 overlay of
# disk.qcow2; sets LAST_PID.
start_disk() {
    local n="$1" tap="$2" mac="$3"
    rm -f "$T/$n.qcow2"
    qemu-img create -q -f qcow2 -F qcow2 -b "$IMG/disk.qcow2" "$T/$n.qcow2"
    ip netns exec "$NS" qemu-system-x86_64 \
        -name "$n" -M q35 -accel tcg,tb-size=32 \
        -cpu qemu64 -smp 1 -m 96M -nodefaults -no-user-config \
        -display none -monitor none \
        -drive id=disk,file="$T/$n.qcow2",format=qcow2,if=none \
        -device virtio-blk-pci,drive=disk,bootindex=0 \
        -netdev tap,id=n0,ifname="$tap",script=no,downscript=no \
        -device virtio-net-pci,netdev=n0,mac="$mac",romfile= \
        -chardev file,id=con,path="$T/$n.serial" -serial chardev:con \
        -qmp unix:"$T/$n.qmp",server=on,wait=off \
        -pidfile "$T/$n.pid" > /dev/null 2> "$T/$n.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_marker NAME PID T0 TIMEOUT_S: prints ms from T0 to the marker line.
wait_marker() {
    local n="$1" pid="$2" t0="$3" limit="$4"
    while [ $(( $(now_ms) - t0 )) -lt $(( limit * 1000 )) ]; do
        if grep -q KOALA-GUEST-READY "$T/$n.serial" 2>/dev/null; then
            echo $(( $(now_ms) - t0 ))
            return 0
        fi
        alive "$pid" || return 1
        sleep 0.05
    done
    return 1
}
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# stop_guest NAME PID: system_powerdown, wait for QEMU to exit by itself.
stop_guest() {
    local n="$1" pid="$2" t0
    t0=$(now_ms)
    "$QMP" "$T/$n.qmp" system_powerdown > "$T/$n.qmp-powerdown" 2>&1 || true
    while alive "$pid"; do
        if [ $(( $(now_ms) - t0 )) -gt 20000 ]; then
            "$QMP" "$T/$n.qmp" quit >/dev/null 2>&1 || true
            return 1
        fi
        sleep 0.1
    done
    echo $(( $(now_ms) - t0 ))
}

# ---- --measure N -----------------------------------------------------------
if [ "$MEASURE" -gt 0 ]; then
    stats() {   # stats LABEL values...: min / median
        local label="$1"; shift
        printf '%s\n' "$@" | sort -n | awk -v l="$label" \
            '{ v[NR] = $1 } END { printf "%s: n=%d min=%d median=%d max=%d\n",
               l, NR, v[1], (NR % 2 ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)), v[NR] }'
    }
    for style in micro disk; do
        times=(); rss=()
        for i in $(seq "$MEASURE"); do
            n="$style$i"
            t0=$(now_ms)
            if [ "$style" = micro ]; then
                start_micro "$n" tap0 "$MAC_MICRO"
            else
                start_disk "$n" tap1 "$MAC_DISK"
            fi
            pid=$LAST_PID
            if ms=$(wait_marker "$n" "$pid" "$t0" 60); then
                r=$(rss_kb "$pid")
                times+=("$ms"); rss+=("$r")
                echo "$style run $i: marker after ${ms} ms, RSS ${r} kB"
            else
                echo "$style run $i: no marker"
            fi
            "$QMP" "$T/$n.qmp" quit >/dev/null 2>&1 || true
            wait "$pid" 2>/dev/null || true
        done
        [ ${#times[@]} -gt 0 ] && stats "$style boot-to-marker ms" "${times[@]}"
        [ ${#rss[@]} -gt 0 ] && stats "$style QEMU RSS kB" "${rss[@]}"
    done
    exit 0
fi

# ---- smoke -----------------------------------------------------------------
t0=$(now_ms)
start_micro micro tap0 "$MAC_MICRO"
pid_micro=$LAST_PID
start_disk disk tap1 "$MAC_DISK"
pid_disk=$LAST_PID

check_guest() {    # check_guest NAME PID IP HOSTNAME
    local n="$1" pid="$2" ip="$3" name="$4" ms line page
    if ms=$(wait_marker "$n" "$pid" "$t0" 50); then
        line="$(grep -a -m1 KOALA-GUEST-READY "$T/$n.serial" | tr -d '\r')"
        if [ "$line" = "KOALA-GUEST-READY ip=$ip hostname=$name" ]; then
            ok "$n: marker after ${ms} ms: $line (QEMU RSS $(rss_kb "$pid") kB)"
        else
            not_ok "$n: unexpected marker: $line"
        fi
    else
        not_ok "$n: no KOALA-GUEST-READY within 50 s"
        sed 's/^/    /' "$T/$n.serial" "$T/$n.err" 2>/dev/null | tail -n 30
        return 0
    fi
    page="$(ip netns exec "$NS" curl -sS -m 10 "http://$ip:8080/" 2>&1 || true)"
    if grep -q "^KOALA-GUEST hostname=$name ip=$ip$" <<< "$page"; then
        ok "$n: http://$ip:8080/ answers: $(head -n1 <<< "$page")"
    else
        not_ok "$n: http://$ip:8080/ gave: $page"
    fi
    if [ "$n" = micro ]; then
        if grep -q '^emi=koala-test-emi' <<< "$page" &&
           grep -q '^userdata=smoke-micro$' <<< "$page"; then
            ok "$n: guest sees root.img on /dev/vda and koala.userdata"
        else
            not_ok "$n: page lacks emi/userdata: $page"
        fi
    fi
}
check_guest micro "$pid_micro" "$IP_MICRO" kimg-micro
check_guest disk "$pid_disk" "$IP_DISK" kimg-disk

# QMP: stop makes the guest unreachable, cont brings it back.
if "$QMP" "$T/micro.qmp" stop >/dev/null &&
   "$QMP" "$T/micro.qmp" query-status | grep -q '"status": "paused"' &&
   ! ip netns exec "$NS" curl -s -m 2 "http://$IP_MICRO:8080/" >/dev/null &&
   "$QMP" "$T/micro.qmp" cont >/dev/null &&
   ip netns exec "$NS" curl -s -m 10 "http://$IP_MICRO:8080/" | grep -q KOALA-GUEST; then
    ok "micro: QMP stop pauses the guest, cont resumes it"
else
    not_ok "micro: QMP stop/cont"
fi

for g in "micro $pid_micro" "disk $pid_disk"; do
    set -- $g
    if ms=$(stop_guest "$1" "$2"); then
        if grep -q KOALA-GUEST-SHUTDOWN "$T/$1.serial"; then
            ok "$1: system_powerdown -> guest shut down, QEMU exited after ${ms} ms"
        else
            not_ok "$1: QEMU exited but the guest did not log its shutdown"
        fi
    else
        not_ok "$1: system_powerdown did not stop the guest within 20 s (sent quit)"
    fi
done

echo "smoke: total $(( $(now_ms) - t0 )) ms"
echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
