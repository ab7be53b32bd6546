#!/usr/bin/env bash
# Stop the single-node Slurm started by scripts/slurm_up.sh (daemons only; packages stay installed).
set -uo pipefail

stop() {  # stop NAME PIDFILE: TERM, then wait up to 10 s for the process to go
    local name=$1 pidfile=$2 pid
    pid=$(cat "$pidfile" 2>/dev/null || pgrep -x "$name" | head -1 || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    echo "[slurm_down] stopped $name" >&2
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop munged /run/munge/munged.pid
exit 0
