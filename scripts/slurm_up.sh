#!/usr/bin/env bash
# Start a single-node Slurm on this machine (controller + compute node on this host) for the
# `slurm`-marked tests and for trying `sweep --executor slurm` locally. Needs root (apt-get, munge
# key, daemons). Idempotent: a running cluster whose node is idle is left as it is.
#   scripts/slurm_up.sh            # install if needed, configure, start, wait for the node
#   scripts/slurm_down.sh          # stop the daemons
set -euo pipefail

STATE_DIR=${SLURM_STATE_DIR:-/var/spool/uslbench-slurm}
CONF_DIR=/etc/slurm
HOST=$(hostname -s)
WAIT_SECONDS=${SLURM_UP_WAIT_SECONDS:-60}

log() { echo "[slurm_up] $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    echo "slurm_up.sh must run as root (it installs packages and starts daemons)." >&2
    exit 1
fi

if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle\|mix\|alloc'; then
    log "Slurm already up: $(sinfo -h -o '%N %t' | head -1)"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

# munge: one key shared by the controller and the node (the same host here).
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! pgrep -u munge -x munged >/dev/null; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
fi

# slurm.conf with the real CPU count and memory of this host.
CPUS=$(nproc --all)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
mkdir -p "$CONF_DIR" "$STATE_DIR/ctld" "$STATE_DIR/d" /var/log/slurm
cat > "$CONF_DIR/slurm.conf" <<CONF
# Written by uslbench scripts/slurm_up.sh: single node, this host is controller and compute node.
ClusterName=uslbench
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Short waits so that scancel and tests do not sit idle for the default 30 s.
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

if ! pgrep -x slurmctld >/dev/null; then
    log "starting slurmctld"
    /usr/sbin/slurmctld -c   # -c: start clean (no stale jobs from an older run of this script)
fi
if ! pgrep -x slurmd >/dev/null; then
    log "starting slurmd"
    /usr/sbin/slurmd
fi

for _ in $(seq "$WAIT_SECONDS"); do
    state=$(sinfo -h -o '%t' 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mix|alloc) log "node $HOST is $state ($CPUS CPUs, ${MEM_MB} MB)"; exit 0 ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "Slurm did not come up within ${WAIT_SECONDS}s; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
