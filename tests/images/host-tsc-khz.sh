#!/usr/bin/env bash
# tests/images/host-tsc-khz.sh: prints this host's TSC frequency in kHz (or
# nothing and exit 1 when it cannot tell).  Under QEMU TCG the guest's TSC
# ticks at the host's TSC rate, and a microvm guest has no HPET or ACPI PM
# timer to calibrate it against: it tries the PIT, which fails when the
# host is busy, and the kernel then hangs in early boot.  Passing
# tsc_early_khz=<this value> on the guest's command line skips that
# calibration.  Sources, best first: the kernel log's refined or detected
# TSC rate, then /proc/cpuinfo's "cpu MHz" when the CPU has a constant TSC.
# (A C program would rather time rdtsc against CLOCK_MONOTONIC_RAW.)
set -euo pipefail
mhz="$(dmesg 2>/dev/null | sed -n \
    's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' |
    tail -n1 || true)"
[ -n "$mhz" ] || mhz="$(dmesg 2>/dev/null | sed -n \
    's/.*tsc: Detected \([0-9.]*\) MHz processor.*/\1/p' | tail -n1 || true)"
if [ -z "$mhz" ] && grep -qw constant_tsc /proc/cpuinfo; then
    mhz="$(awk -F': *' '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)"
fi
awk -v m="${mhz:-0}" 'BEGIN { if (m + 0 <= 0) exit 1; printf "%d\n", m * 1000 }'
