#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on this machine (for tests/test_slurm.py and CI).
#
# Debian's packages (munge, slurmctld, slurmd, slurm-client), no systemd: the daemons are
# started directly. No accounting database (slurmdbd), so the Snakemake SLURM executor must
# query job states with `squeue` (--slurm-status-command squeue); MinJobAge=300 keeps finished
# jobs visible to squeue long enough for that. One fake GPU is advertised as a generic resource
# so that the slurm profile's GPU requests (--gpus=1) are scheduled unchanged; jobs then see no
# CUDA device and train on the CPU. Needs root. Idempotent: a running cluster is left as is.
#
# Usage: scripts/slurm/up.sh      (scripts/slurm/down.sh stops it)
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
NODE_GPUS=${SLURM_TEST_GPUS:-1}

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/slurm/up.sh: needs root (installs packages, starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
fi

if scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o %T 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
    echo "slurm: already up"
    exit 0
fi

# munge: one key, daemon run as the munge user (it refuses root)
mkdir -p /etc/munge /var/run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf: this host is controller and only compute node; the node line comes from slurmd -C
host=$(hostname -s)
node_line=$(slurmd -C | head -n 1)
mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS"
gres_conf=""
if [ "$NODE_GPUS" -gt 0 ]; then
    node_line="$node_line Gres=gpu:$NODE_GPUS"
    gres_conf="GresTypes=gpu"
    # File= must name a device node; /dev/null stands in for the missing GPU
    echo "NodeName=$host Name=gpu File=/dev/null Count=$NODE_GPUS" > "$CONF_DIR/gres.conf"
else
    rm -f "$CONF_DIR/gres.conf"
fi
cat > "$CONF_DIR/slurm.conf" <<CONF
# written by scripts/slurm/up.sh: a single-node test cluster
ClusterName=segpretrain
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups in a container: track processes by parent pid, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
$gres_conf
# no slurmdbd: sacct has nothing to report, squeue must answer (finished jobs stay 300 s)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
$node_line State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

/usr/sbin/slurmctld -i
/usr/sbin/slurmd
for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
        echo "slurm: up ($(sinfo -h -o '%N %c CPUs %m MB %G'))"
        exit 0
    fi
    sleep 0.2
done
echo "scripts/slurm/up.sh: the node did not become idle; see $LOGS/slurmctld.log and $LOGS/slurmd.log" >&2
sinfo >&2 || true
exit 1
