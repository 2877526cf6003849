#!/usr/bin/env bash
# local-cluster.sh: start, stop and inspect a real one-node Slurm cluster on this machine.
#
# What it does
#   start [STATE_DIR]   Installs the Debian packages if missing (slurmctld slurmd slurm-client
#                       munge), creates a MUNGE key, a slurm.conf and a private munged inside
#                       STATE_DIR, starts munged, slurmctld and slurmd, and waits (up to
#                       $SLURM_LOCAL_WAIT_S, default 60 s) until `sinfo` shows the node idle.
#                       It prints exactly one line on stdout, the line the caller must
#                       evaluate:  export SLURM_CONF=STATE_DIR/slurm.conf
#                       (progress goes to stderr). Nothing is exported globally; no file
#                       outside STATE_DIR is written (apart from the packages).
#                       If the cluster of this STATE_DIR already runs, it says so and succeeds.
#   stop [STATE_DIR]    Cancels the jobs still queued or running on this cluster, then stops
#                       exactly the daemons it started (pid files in STATE_DIR; never by
#                       name), waits for them to exit (SIGKILL after 20 s) and checks none is
#                       left; leftover slurmstepd processes (found by their sockets in the
#                       spool directory) are ended with their job processes.
#                       Restarting from the same STATE_DIR keeps Slurm's saved state, except
#                       after a stop that was not clean: then start runs `slurmctld -c`.
#   status [STATE_DIR]  Prints whether each daemon runs, and `sinfo`/`squeue`.
#                       Exit status 0 when all three run, 3 otherwise.
#
#   STATE_DIR defaults to ${TMPDIR:-/tmp}/robustft-slurm (made absolute). It must not contain
#   whitespace, ',' or '=' (slurm.conf and AuthInfo cannot quote them).
#
# How .ci/run uses it
#   The Slurm job-array tests need a real scheduler. .ci/run is meant to start the cluster,
#   evaluate the printed line, run the tests, and stop the cluster whatever happens:
#
#       dir=${TMPDIR:-/tmp}/robustft-slurm
#       eval "$(bash validation/slurm/local-cluster.sh start "$dir")"   # sets SLURM_CONF
#       trap 'bash validation/slurm/local-cluster.sh stop "$dir"' EXIT
#       sbatch --wait --array=0-3%2 --wrap '...'                         # tests
#
#   Every Slurm client (sbatch, squeue, srun, scancel, scontrol, sinfo) reads SLURM_CONF;
#   slurm.conf's AuthInfo=socket=... makes them (and the daemons, for auth/munge and
#   cred/munge) talk to the private munged of STATE_DIR instead of /run/munge.
#
# Needs root: the daemons run as root (SlurmUser=root) and the install uses apt-get.
# Tested with Debian 12 (bookworm): Slurm 22.05.8, MUNGE 0.5.15.
#
# Environment (optional)
#   SLURM_LOCAL_WAIT_S        seconds to wait for the node to become idle (default 60)
#   SLURM_LOCAL_CTLD_PORT     slurmctld port (default 6817)
#   SLURM_LOCAL_SLURMD_PORT   slurmd port (default 6818)
#   SLURM_LOCAL_MIN_JOB_AGE   MinJobAge: seconds finished jobs stay in squeue/scontrol (default 300)
set -euo pipefail

PROG=$(basename "$0")
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
MIN_JOB_AGE=${SLURM_LOCAL_MIN_JOB_AGE:-300}
DAEMONS=(munged slurmctld slurmd)
# The daemons live in /usr/sbin, which a non-login root shell may lack.
export PATH=$PATH:/usr/sbin:/sbin

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $PROG start|stop|status [STATE_DIR]
  STATE_DIR defaults to \${TMPDIR:-/tmp}/robustft-slurm
  'start' prints the line to evaluate: export SLURM_CONF=STATE_DIR/slurm.conf
EOF
    exit 2
}

set_paths() {
    local dir=${1:-${TMPDIR:-/tmp}/robustft-slurm}
    STATE_DIR=$(realpath -m -- "$dir")
    case $STATE_DIR in
        *[[:space:],=]*) die "STATE_DIR '$STATE_DIR' must not contain whitespace, ',' or '='" ;;
    esac
    CONF=$STATE_DIR/slurm.conf
    MUNGE_DIR=$STATE_DIR/munge
    MUNGE_SOCKET=$MUNGE_DIR/munge.socket
    MUNGE_KEY=$MUNGE_DIR/munge.key
    RUN_DIR=$STATE_DIR/run
    LOG_DIR=$STATE_DIR/log
    CTLD_STATE=$STATE_DIR/ctld-state
    SPOOL=$STATE_DIR/slurmd-spool
    CLEAN_MARK=$RUN_DIR/clean-stop
}

pidfile() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
logfile() { printf '%s/%s.log' "$LOG_DIR" "$1"; }

# Prints the pid of daemon $1 if its pid file names a live process of that program.
daemon_pid() {
    local name=$1 file pid comm
    file=$(pidfile "$name")
    [[ -r $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: the process must be the daemon itself.
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name"* ]] || return 1
    printf '%s\n' "$pid"
}

running() { daemon_pid "$1" >/dev/null; }

slurm() { SLURM_CONF=$CONF "$@"; }

show_logs() {
    local name
    for name in "${DAEMONS[@]}"; do
        if [[ -s $(logfile "$name") ]]; then
            printf '%s\n' "----- tail of $(logfile "$name") -----" >&2
            tail -n 25 "$(logfile "$name")" >&2 || true
        fi
    done
}

# A failed start prints the logs, then stops whatever this cluster has running, so that
# nothing is left behind, and exits non-zero.
fail_start() {
    show_logs
    log "stopping what was started"
    cmd_stop || true
    die "$*"
}

ensure_root() {
    [[ $EUID -eq 0 ]] || die "must run as root (the daemons run as SlurmUser=root; packages come from apt-get)"
}

ensure_packages() {
    local missing=0 cmd
    for cmd in munged mungekey munge unmunge slurmctld slurmd sbatch sinfo squeue scancel; do
        command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    ((missing)) || return 0
    local pkgs=(slurmctld slurmd slurm-client munge)
    log "installing ${pkgs[*]} with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >&2; then
        log "install failed; running apt-get update and retrying"
        apt-get update >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 \
            || die "apt-get install ${pkgs[*]} failed"
    fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_conf() {
    local host cpus mem_kb mem_mb real_mb def_mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem_mb=$((mem_kb / 1024))
    # Leave a margin: slurmd drains the node if RealMemory exceeds what it measures.
    real_mb=$((mem_mb - (mem_mb / 20 > 512 ? mem_mb / 20 : 512)))
    ((real_mb >= 256)) || real_mb=256
    # Without a default, a job that gives no --mem would get the whole node's memory
    # under CR_Core_Memory, and array tasks could not run side by side.
    def_mem=$((real_mb / cpus))
    ((def_mem <= 1024)) || def_mem=1024
    cat >"$CONF.tmp" <<EOF
# Generated by validation/slurm/local-cluster.sh; rewritten on every start.
ClusterName=robustft
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
# Cancel a job whose dependency can never be met (afterok on a failed job) instead of leaving
# it pending forever, which would hang a test that waits with sbatch --wait.
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
# How long finished jobs stay visible to squeue/scontrol (there is no sacct). It also sets how
# often sbatch --wait polls: after 2 s, 10 s, then every 32 s; with MinJobAge <= 4 every 2 s.
MinJobAge=$MIN_JOB_AGE
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$(logfile slurmctld)
SlurmdLogFile=$(logfile slurmd)
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv -f "$CONF.tmp" "$CONF"
}

start_munged() {
    if running munged; then
        log "munged already running (pid $(daemon_pid munged))"
        return 0
    fi
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating MUNGE key $MUNGE_KEY"
        mungekey --create --keyfile="$MUNGE_KEY" >&2 \
            || { dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none; }
    fi
    chmod 0600 "$MUNGE_KEY"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" --pid-file="$(pidfile munged)" \
        --log-file="$(logfile munged)" --seed-file="$MUNGE_DIR/munged.seed" \
        || fail_start "munged failed to start"
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -S $MUNGE_SOCKET ]] && running munged && break
        sleep 0.1
    done
    munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET" >/dev/null \
        || fail_start "munged runs but a munge/unmunge round trip over $MUNGE_SOCKET failed"
    log "munged started (pid $(daemon_pid munged), socket $MUNGE_SOCKET)"
}

start_slurm_daemon() {
    local name=$1
    shift
    if running "$name"; then
        log "$name already running (pid $(daemon_pid "$name"))"
        return 0
    fi
    rm -f "$(pidfile "$name")"
    "$name" -f "$CONF" "$@" || fail_start "$name failed to start"
    local i
    for ((i = 0; i < 100; i++)); do
        running "$name" && break
        sleep 0.1
    done
    running "$name" || fail_start "$name exited right after starting"
    log "$name started (pid $(daemon_pid "$name"))"
}

cmd_start() {
    ensure_root
    ensure_packages
    local all=1 name
    for name in "${DAEMONS[@]}"; do running "$name" || all=0; done
    if ((all)) && [[ -f $CONF ]]; then
        log "cluster in $STATE_DIR is already running"
        slurm sinfo >&2 || true
        printf 'export SLURM_CONF=%s\n' "$CONF"
        return 0
    fi
    mkdir -p "$STATE_DIR" "$MUNGE_DIR" "$RUN_DIR" "$LOG_DIR" "$CTLD_STATE" "$SPOOL"
    # munged refuses directories that others can write to (a sticky /tmp is fine).
    chmod 0755 "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"
    chmod 0700 "$CTLD_STATE" "$SPOOL"
    chmod 0755 "$MUNGE_DIR"
    # Check the ports before starting anything, so that a clash leaves nothing behind.
    if ! running slurmctld && port_busy "$CTLD_PORT"; then
        die "port $CTLD_PORT is taken by another process (another cluster?); set SLURM_LOCAL_CTLD_PORT"
    fi
    if ! running slurmd && port_busy "$SLURMD_PORT"; then
        die "port $SLURMD_PORT is taken by another process (another cluster?); set SLURM_LOCAL_SLURMD_PORT"
    fi
    if ! running slurmctld; then write_conf; fi
    start_munged
    if ! running slurmctld; then
        # slurmctld keeps its jobs across a restart. After a stop that was not clean (a daemon
        # killed, jobs left running) the saved jobs are ghosts: Slurm keeps them RUNNING and the
        # node allocated indefinitely. So the saved jobs are cleared (slurmctld -c) unless the
        # last stop was clean.
        local clear=()
        if [[ ! -f $CLEAN_MARK && -e $CTLD_STATE/job_state ]]; then
            log "the last stop was not clean: clearing Slurm's saved jobs (slurmctld -c)"
            clear=(-c)
        fi
        rm -f "$CLEAN_MARK"
        start_slurm_daemon slurmctld "${clear[@]}"
    fi
    start_slurm_daemon slurmd

    log "waiting up to ${WAIT_S}s for the node to become idle"
    local deadline=$((SECONDS + WAIT_S)) state=""
    while ((SECONDS < deadline)); do
        for name in "${DAEMONS[@]}"; do
            running "$name" || fail_start "$name died while waiting for the node"
        done
        state=$(slurm sinfo -h -o %t 2>/dev/null | head -n 1) || state=""
        case $state in
            idle | mix | alloc) break ;;
        esac
        sleep 0.5
    done
    case $state in
        idle | mix | alloc) ;;
        *)
            log "node state after ${WAIT_S}s: '${state:-none}'"
            slurm sinfo -R >&2 2>/dev/null || true
            fail_start "the node did not become idle within ${WAIT_S}s; see the logs above"
            ;;
    esac
    log "cluster ready: node $(hostname -s) is $state"
    slurm sinfo >&2 || true
    printf 'export SLURM_CONF=%s\n' "$CONF"
}

stop_daemon() {
    local name=$1 pid i
    if ! pid=$(daemon_pid "$name"); then
        log "$name not running"
        rm -f "$(pidfile "$name")"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
        UNCLEAN=1
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    kill -0 "$pid" 2>/dev/null && die "$name (pid $pid) is still alive"
    rm -f "$(pidfile "$name")"
    log "$name stopped (was pid $pid)"
}

# Pids of the slurmstepd processes listening on a socket under this cluster's spool directory.
stepd_pids() {
    ss -xlpn 2>/dev/null | grep -F "$SPOOL/" | grep -o '"slurmstepd",pid=[0-9]*' \
        | sed 's/.*pid=//' | sort -u || true
}

# All descendants of the given pids (from ps; one pid a line).
descendants() {
    ps -e -o pid= -o ppid= | awk -v roots="$*" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) seen[r[i]] = 1 }
        { parent[$1] = $2 }
        END {
            do {
                added = 0
                for (p in parent)
                    if (!(p in seen) && (parent[p] in seen)) { seen[p] = 1; print p; added = 1 }
            } while (added)
        }'
}

cmd_stop() {
    [[ -d $STATE_DIR ]] || { log "no state directory $STATE_DIR; nothing to stop"; return 0; }
    # Clean = slurmctld was running, ended on SIGTERM (saving its state) and no job was
    # left running; only then does the next start keep Slurm's saved jobs.
    UNCLEAN=0
    local ctld_ran=0
    running slurmctld && ctld_ran=1
    if running slurmctld && running munged; then
        # Jobs still alive would leave slurmstepd processes behind once slurmd is gone.
        local jobs i
        jobs=$(slurm squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || jobs=""
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            slurm scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                [[ -z $(slurm squeue -h -t R,CG,PD,S 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    # Each job step's slurmstepd listens on a socket in this cluster's spool directory; that
    # identifies exactly the ones this cluster started. Give them time to finish, then end them.
    local pids i
    for ((i = 0; i < 50; i++)); do
        pids=$(stepd_pids)
        [[ -z $pids ]] && break
        sleep 0.2
    done
    if [[ -n $pids ]]; then
        UNCLEAN=1
        # A slurmstepd killed alone would orphan the job's processes: end its whole tree.
        # shellcheck disable=SC2086
        pids="$pids $(descendants $pids)"
        log "ending leftover job processes (slurmstepd and its descendants): $(tr -s ' \n' ' ' <<<"$pids")"
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        local p alive
        for ((i = 0; i < 25; i++)); do
            alive=""
            for p in $pids; do kill -0 "$p" 2>/dev/null && alive+=" $p"; done
            [[ -z $alive ]] && break
            sleep 0.2
        done
        # shellcheck disable=SC2086
        [[ -z $alive ]] || kill -KILL $alive 2>/dev/null || true
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    if ((ctld_ran && !UNCLEAN)); then
        touch "$CLEAN_MARK"
    elif [[ ! -f $CLEAN_MARK ]]; then
        log "this stop was not clean: the next start clears Slurm's saved jobs"
    fi
}

cmd_status() {
    local name pid rc=0
    echo "state dir: $STATE_DIR"
    for name in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$name"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
            rc=3
        fi
    done
    if running slurmctld && running munged; then
        echo "export SLURM_CONF=$CONF"
        slurm sinfo || rc=3
        slurm squeue || true
    fi
    return "$rc"
}

[[ $# -ge 1 && $# -le 2 ]] || usage
cmd=$1
set_paths "${2:-}"
case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
esac
