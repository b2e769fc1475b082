#!/usr/bin/env bash
# Stop the single-node test cluster started by scripts/slurm/up.sh (daemons only; the packages
# and /etc/slurm stay). Cancels remaining jobs first. Safe to run when nothing is up.
set -uo pipefail

if command -v scancel >/dev/null && scontrol ping 2>/dev/null | grep -q "is UP"; then
    scancel --full --quiet "--user=$(id -un)" 2>/dev/null || true
fi
for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    fi
done
munge_pid=$(cat /var/run/munge/munged.pid 2>/dev/null || true)
if [ -n "$munge_pid" ]; then
    kill "$munge_pid" 2>/dev/null || true
fi
echo "slurm: down"
