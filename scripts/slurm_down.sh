#!/usr/bin/env bash
# Stop the single-node Slurm started by scripts/slurm_up.sh (daemons only; packages stay installed).
set -uo pipefail
for daemon in slurmd slurmctld; do
    pidfile=/run/$daemon.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")"
        for _ in $(seq 20); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.5; done
        echo "[slurm_down] stopped $daemon" >&2
    fi
done
if [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
    kill "$(cat /run/munge/munged.pid)" && echo "[slurm_down] stopped munged" >&2
fi
exit 0
