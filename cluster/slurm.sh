#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for CI and for trying the SLURM profile.
#
#   cluster/slurm.sh install   apt-get install munge + slurmctld/slurmd/client (if missing)
#   cluster/slurm.sh start     write the configs, start munged, slurmctld, slurmd; wait idle
#   cluster/slurm.sh stop      stop the three daemons (by their pid files)
#   cluster/slurm.sh status    daemons, node state, queue (exit 0 only when all are up)
#   cluster/slurm.sh logs      print the daemon logs (for debugging a failed run)
#
# Every command is idempotent. Configs, munge key and socket, spool, logs and pid files
# live under $VALUEHARMS_SLURM_DIR (default /tmp/valueharms-slurm). While the cluster runs,
# /etc/slurm/slurm.conf and gres.conf link there (see link_etc); `stop` removes the links.
# For machines without a SLURM of their own: a slurm.conf this script did not write stops
# `start` with an error. start and stop run as root; install uses sudo when not root.
#
# The node has the machine's CPUs and memory and VALUEHARMS_SLURM_GPUS (default 2) fake GPUs
# of type "fake" (gres.conf with AutoDetect=off, one /dev/null link per GPU): jobs that ask
# for --gpus=1 or --gpus=fake:1 are scheduled and get CUDA_VISIBLE_DEVICES; there is no GPU.
# Without slurmdbd there is no accounting: `sacct` does not work, finished jobs stay visible
# to squeue/scontrol for MinJobAge (VALUEHARMS_SLURM_MINJOBAGE, default 3600 s), and every
# finished job is appended to $STATE/log/jobcomp.log (jobcomp/filetxt).
# Tested with Debian bookworm's slurm-wlm 22.05 and munge 0.5.15, as root, without systemd.
set -euo pipefail

STATE=${VALUEHARMS_SLURM_DIR:-/tmp/valueharms-slurm}
PORT=${VALUEHARMS_SLURM_PORT:-6817} # slurmctld; slurmd listens on PORT+1
GPUS=${VALUEHARMS_SLURM_GPUS:-2}
MINJOBAGE=${VALUEHARMS_SLURM_MINJOBAGE:-3600}
START_TIMEOUT=${VALUEHARMS_SLURM_START_TIMEOUT:-60}
CONF=$STATE/slurm.conf
SOCKET=$STATE/munge/munge.socket
PACKAGES=(munge slurmctld slurmd slurm-client)

log() { echo "slurm.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root (or sudo) for: $*"
    fi
}

installed() {
    command -v munged >/dev/null && command -v slurmctld >/dev/null &&
        command -v slurmd >/dev/null && command -v sbatch >/dev/null
}

cmd_install() {
    if installed; then
        log "installed: $(slurmctld -V), $(munged -V 2>&1 | head -1)"
        return 0
    fi
    command -v apt-get >/dev/null || die "no apt-get: install munge and SLURM (slurmctld, slurmd, client) yourself"
    log "apt-get install ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    # The packages' init scripts are not run (no init system); we start the daemons below.
    as_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    installed || die "install finished but the SLURM/munge binaries are missing"
}

alive() { # alive PIDFILE
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

write_configs() {
    local host node_line mem
    host=$(hostname -s)
    # `slurmd -C` prints this node's hardware as a NodeName line; keep 512 MB for the OS.
    node_line=$(slurmd -C | head -1)
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    mem=$((mem > 1024 ? mem - 512 : mem))
    node_line=$(sed "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$node_line")

    mkdir -p "$STATE"/{log,run,spool/ctld,spool/d,gpu,munge}
    # Clients (any user) must reach the socket; the key itself is 0400.
    chmod 0755 "$STATE/munge"
    # gres.conf wants one character device per GPU: links to /dev/null serve.
    local i
    for ((i = 0; i < GPUS; i++)); do
        ln -sfn /dev/null "$STATE/gpu/fake$i"
    done

    cat >"$CONF" <<EOF
# Written by cluster/slurm.sh: a one-node cluster for CI. Not for production use.
ClusterName=valueharms
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container: track a job's processes by process group (a process whose
# parent exited stays in the group, so scancel reaches it), bind no tasks.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
GresTypes=gpu
# No slurmdbd: no sacct. Finished jobs stay in slurmctld (squeue/scontrol) for MinJobAge s,
# and each one is appended to the job completion log.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.log
MinJobAge=$MINJOBAGE
InactiveLimit=0
MailProg=/bin/true
KillWait=5
MessageTimeout=20
$node_line NodeAddr=127.0.0.1 Gres=gpu:fake:$GPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/gres.conf" <<EOF
# Written by cluster/slurm.sh: fake GPUs (links to /dev/null).
AutoDetect=off
NodeName=$host Name=gpu Type=fake File=$STATE/gpu/fake[0-$((GPUS - 1))]
EOF
    link_etc
}

# SLURM's clients read /etc/slurm/slurm.conf unless SLURM_CONF says otherwise, and the
# executor plugin's job step drops SLURM_CONF from the environment of the `srun` it runs
# inside each job. So /etc/slurm/{slurm,gres}.conf link to the state dir while the
# cluster runs (gres.conf is read from beside slurm.conf). A slurm.conf that this script
# did not write is left alone, and start stops with an error.
ETC=/etc/slurm
ours() { # ours FILE: a file this script wrote (or a link to one)
    [[ -e $1 ]] && grep -q "^# Written by cluster/slurm.sh" "$1"
}

link_etc() {
    if [[ -e $ETC/slurm.conf ]] && ! ours "$ETC/slurm.conf"; then
        die "$ETC/slurm.conf exists and was not written by this script: this machine has its own SLURM; use it (profiles/slurm) instead"
    fi
    as_root mkdir -p "$ETC"
    as_root ln -sfn "$CONF" "$ETC/slurm.conf"
    as_root ln -sfn "$STATE/gres.conf" "$ETC/gres.conf"
}

unlink_etc() {
    local f
    for f in slurm.conf gres.conf; do
        if [[ -L $ETC/$f && $(readlink "$ETC/$f") == "$STATE/$f" ]]; then
            as_root rm -f "$ETC/$f"
        fi
    done
}

start_munge() {
    if alive "$STATE/munge/munged.pid"; then
        return 0
    fi
    if [[ ! -s $STATE/munge/munge.key ]]; then
        dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
        chmod 0400 "$STATE/munge/munge.key"
    fi
    rm -f "$SOCKET" "$SOCKET.lock"
    munged --force --key-file="$STATE/munge/munge.key" --socket="$SOCKET" \
        --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed" \
        --log-file="$STATE/log/munged.log"
    local t
    for ((t = 0; t < 50; t++)); do
        [[ -S $SOCKET ]] && return 0
        sleep 0.2
    done
    die "munged did not create $SOCKET (see $STATE/log/munged.log)"
}

node_state() {
    SLURM_CONF=$CONF timeout 5 sinfo -h -N -o %T 2>/dev/null | head -1 || true
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root (sudo $0 $1): the daemons run as root"
}

cmd_start() {
    need_root start
    installed || die "SLURM is not installed: run '$0 install' first"
    if alive "$STATE/run/slurmctld.pid" && alive "$STATE/run/slurmd.pid" &&
        alive "$STATE/munge/munged.pid"; then
        log "already running (state in $STATE)"
        return 0
    fi
    # A half-started cluster is stopped first, so start is idempotent.
    cmd_stop >/dev/null 2>&1 || true
    write_configs
    start_munge
    export SLURM_CONF=$CONF
    # -c: start with an empty job table. The last session's completion log is kept aside.
    if [[ -s $STATE/log/jobcomp.log ]]; then
        mv "$STATE/log/jobcomp.log" "$STATE/log/jobcomp.previous.log"
    fi
    slurmctld -c
    slurmd -N "$(hostname -s)"
    local state="" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        # (slurmctld writes its pid file a moment after it forks)
        if ((SECONDS > deadline - START_TIMEOUT + 3)) && ! alive "$STATE/run/slurmctld.pid"; then
            log "slurmctld exited"
            break
        fi
        state=$(node_state)
        case $state in
        idle | mixed | allocated)
            log "up: node $(hostname -s) $state, $(sinfo -h -o '%c CPUs, %m MB, %G')"
            log "configs, logs and state in $STATE (/etc/slurm/slurm.conf links there)"
            return 0
            ;;
        esac
        sleep 0.5
    done
    log "node not idle after ${START_TIMEOUT}s (state: '${state:-unknown}'); logs follow"
    cmd_logs >&2
    return 1
}

stop_pidfile() { # stop_pidfile NAME PIDFILE
    local pid t
    [[ -s $2 ]] || return 0
    pid=$(cat "$2")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for ((t = 0; t < 50; t++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$1 ($pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$2"
}

cmd_stop() {
    need_root stop
    if [[ -s $CONF ]] && alive "$STATE/run/slurmctld.pid"; then
        # Jobs first (all users'), so that no job step outlives the cluster.
        export SLURM_CONF=$CONF
        local ids t
        ids=$(timeout 10 squeue -h -t PENDING,RUNNING,SUSPENDED -o %i 2>/dev/null || true)
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086  # one id per word
            scancel $ids 2>/dev/null || true
        fi
        for ((t = 0; t < 30; t++)); do
            [[ -z $(timeout 5 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    stop_pidfile slurmd "$STATE/run/slurmd.pid"
    stop_pidfile slurmctld "$STATE/run/slurmctld.pid"
    stop_pidfile munged "$STATE/munge/munged.pid"
    unlink_etc
    log "stopped (logs kept in $STATE/log)"
}

cmd_status() {
    local rc=0 d
    for d in munge/munged run/slurmctld run/slurmd; do
        if alive "$STATE/$d.pid"; then
            echo "${d#*/}: running (pid $(cat "$STATE/$d.pid"))"
        else
            echo "${d#*/}: stopped"
            rc=3
        fi
    done
    if [[ $rc -eq 0 ]]; then
        export SLURM_CONF=$CONF
        sinfo -N -o '%N %T %c CPUs %m MB %G' || rc=3
        squeue -o '%.8i %.10T %.30k %.12b %R' || rc=3
    fi
    return $rc
}

cmd_logs() {
    local f
    for f in "$STATE"/log/*.log; do
        [[ -f $f ]] || continue
        echo "===== $f (last 200 lines)"
        tail -n 200 "$f"
    done
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
logs) cmd_logs ;;
*)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
