#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, from Debian's packages.
#
# It exists so the bench's cluster path (submitit -> sbatch/squeue/sacct) can be
# tried on a laptop and exercised by CI without a site cluster.  Every daemon is
# started by hand (no systemd needed, works in containers) and all state lives in
# one directory, so `stop` + `rm -rf` of that directory undoes everything except
# the packages and the /etc/slurm symlinks.
#
#   slurm/local_cluster.sh install   # apt packages (root)
#   slurm/local_cluster.sh start     # configs + daemons, waits for an idle node
#   slurm/local_cluster.sh status    # which daemons run, sinfo
#   slurm/local_cluster.sh stop      # stops the daemons this script started
#
# Environment:
#   BENCH_SLURM_DIR   state directory (default /tmp/bench-slurm)
#   BENCH_SLURM_WAIT  seconds to wait for the node to become idle (default 60)
set -euo pipefail

STATE_DIR="${BENCH_SLURM_DIR:-/tmp/bench-slurm}"
WAIT_S="${BENCH_SLURM_WAIT:-60}"
CLUSTER_NAME=bench
PARTITION=debug
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

ETC="$STATE_DIR/etc"
RUN="$STATE_DIR/run"
LOG="$STATE_DIR/log"
MUNGE_DIR="$STATE_DIR/munge"        # key, seed, log, pid of munged; owned by the munge user
DB_DIR="$STATE_DIR/mysql"
DB_SOCKET="$RUN/mysqld.sock"
MUNGE_SOCKET=/run/munge/munge.socket.2  # libmunge's compiled-in default, so clients need no option

# Daemons in start order; `stop` walks this list backwards.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

# Our own calls of the slurm tools must not depend on the /etc/slurm symlink.
export SLURM_CONF="$ETC/slurm.conf"

say() { printf '[local_cluster] %s\n' "$*"; }
die() { printf '[local_cluster] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $0 {install|start|stop|status}
  install  apt-get install ${PACKAGES[*]} (skipped if present)
  start    write configs into \$BENCH_SLURM_DIR (default /tmp/bench-slurm) and start
           munged, mariadbd, slurmdbd, slurmctld, slurmd; wait for an idle node
  stop     stop those daemons (reverse order) and wait for them to exit
  status   which daemons run, and sinfo
EOF
    exit 2
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (sudo $0 $*)"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

pidfile() { echo "$RUN/$1.pid"; }

# A pid file alone is not proof: after a reboot or a crash the pid may belong
# to an unrelated process, so the process name must match too.
daemon_pid() {
    local name=$1 f pid
    f=$(pidfile "$name")
    [[ $name == munged ]] && f="$MUNGE_DIR/munged.pid"
    [[ -s $f ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    alive "$pid" || return 1
    echo "$pid"
}
is_running() { daemon_pid "$1" >/dev/null; }

# kill -0 succeeds on a zombie, and an init that reaps late (pid 1 in some
# containers/microVMs reaps orphans only every ~2 s) would make every stop
# wait for it: a zombie has exited.
alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Poll a command until it succeeds or the deadline passes.
wait_for() {
    local what=$1 timeout=$2; shift 2
    local end=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || { show_logs; die "timed out after ${timeout}s waiting for $what"; }
        sleep 0.2
    done
}

show_logs() {
    local f
    for f in "$LOG"/*.log "$MUNGE_DIR"/munged.log; do
        [[ -s $f ]] || continue
        printf '\n----- last lines of %s -----\n' "$f" >&2
        tail -n 15 "$f" >&2
    done
}

# ---------------------------------------------------------------- install ---

cmd_install() {
    need_root install
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == 'install ok installed' ]] || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        say "packages already installed: ${PACKAGES[*]}"
        return 0
    fi
    local t0; t0=$(now)
    # Refresh the package lists only when apt cannot see a candidate for every
    # missing package (fresh containers ship without lists); updating is the
    # slow part of an install.
    # (Captured first: with pipefail, `apt-cache | grep -q` can fail on SIGPIPE.)
    local policy_out
    policy_out=$(apt-cache policy "${missing[@]}" 2>/dev/null || true)
    if [[ $policy_out == *'Candidate: (none)'* ]] ||
        (($(grep -c 'Candidate:' <<<"$policy_out") < ${#missing[@]})); then
        say "apt-get update"
        apt-get update -qq
    fi
    say "installing: ${missing[*]}"
    # Maintainer scripts would start the distribution's own munge/slurm/mariadb
    # services, which then hold the ports and the munge socket this script
    # wants.  policy-rc.d exit 101 tells invoke-rc.d not to start anything
    # (on systemd machines the units may still start: see slurm/README.md).
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    # Recommends would add a dozen unused plugin packages (elasticsearch, hdf5,
    # influxdb... for slurm; compression providers for mariadb).  Without them
    # slurmd logs a harmless "can not load PMIx library" at start.
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
    if ((rc != 0)); then
        # Stale lists give 404s on the .debs: refresh once and retry.
        say "install failed (rc=$rc), refreshing package lists and retrying"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
        ((rc == 0)) || { ((made_policy)) && rm -f "$policy"; die "apt-get install failed"; }
    fi
    ((made_policy)) && rm -f "$policy"
    say "installed in $(elapsed "$t0") s"
}

# ------------------------------------------------------------------ start ---

check_installed() {
    local b
    for b in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sinfo sacctmgr; do
        command -v "$b" >/dev/null || die "$b not found: run '$0 install' first"
    done
}

write_configs() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    # RealMemory above what slurmd measures drains the node ("Low RealMemory"),
    # so stay a little under the total that free reports.
    mem=$(free -m | awk '/^Mem:/ { print int($2 * 0.95) }')

    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE_DIR/ctld" "$STATE_DIR/slurmd"

    cat >"$ETC/slurm.conf" <<EOF
# Written by slurm/local_cluster.sh for $host; rewritten on every start.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host
# root everywhere: all state can live in $STATE_DIR, no slurm user or /var dirs.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may only restart after cred_expire+1 s (default 120 s);
# values under 5 are ignored.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MailProg=/bin/true
MpiDefault=none
# No cgroups in a container: track job processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# One CPU per 1-CPU job, so several jobs run side by side.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Defaults (30 s backfill tick, 60 s main loop) make tests wait for nothing.
SchedulerParameters=bf_interval=1,sched_interval=2
# A cancelled job otherwise blocks for up to 30 s between SIGTERM and SIGKILL.
KillWait=2
MinJobAge=10
ReturnToService=2
JobRequeue=1
PreemptType=preempt/none
InactiveLimit=0
# submitit reads job states with sacct, which needs slurmdbd.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

    # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF and
    # refuses it unless it is 0600 and owned by SlurmUser.
    cat >"$ETC/slurmdbd.conf" <<EOF
# Written by slurm/local_cluster.sh; rewritten on every start.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
# "localhost" makes the MariaDB client use a unix socket, and MYSQL_UNIX_PORT
# (set when slurmdbd starts) points it at ours; no TCP port is opened.
StorageHost=localhost
StorageUser=slurm
StoragePass=bench-slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"

    link_etc
}

# Debian's tools read /etc/slurm/slurm.conf; submitit runs sbatch/sacct with
# the caller's environment, so plain commands must find the config without
# SLURM_CONF.  A real (non-symlink) file there belongs to someone else.
link_etc() {
    mkdir -p /etc/slurm
    local f
    for f in slurm.conf slurmdbd.conf; do
        if [[ -e /etc/slurm/$f && ! -L /etc/slurm/$f ]]; then
            say "WARNING: /etc/slurm/$f is a real file, left alone; use: export SLURM_CONF=$ETC/slurm.conf"
            continue
        fi
        ln -sfn "$ETC/$f" "/etc/slurm/$f"
    done
}

munge_ok() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET"; }

start_munged() {
    if is_running munged; then return 0; fi
    # A munged we did not start (the distribution's service) serves the same
    # socket; reuse it rather than fight over the socket.
    if [[ -S $MUNGE_SOCKET ]] && munge_ok >/dev/null 2>&1; then
        say "munged: using the one already serving $MUNGE_SOCKET"
        return 0
    fi
    install -d -o munge -g munge -m 0700 "$MUNGE_DIR"
    # munged's socket directory; /run is a tmpfs, so it vanishes on reboot.
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s $MUNGE_DIR/munge.key ]]; then
        head -c 1024 /dev/urandom >"$MUNGE_DIR/munge.key"
    fi
    chown munge:munge "$MUNGE_DIR/munge.key"
    chmod 0400 "$MUNGE_DIR/munge.key"
    # Run as the package's munge user, as Debian's own service does, so the
    # socket has the owner that libmunge clients and a later switch to the
    # distribution's service expect (it would also run as root).
    runuser -u munge -- munged \
        --key-file="$MUNGE_DIR/munge.key" \
        --socket="$MUNGE_SOCKET" \
        --pid-file="$MUNGE_DIR/munged.pid" \
        --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed"
    wait_for munged 15 munge_ok
}

db() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }

start_mariadbd() {
    if is_running mariadbd; then return 0; fi
    if [[ ! -d $DB_DIR/mysql ]]; then
        # --no-defaults: the distribution's my.cnf points at /run/mysqld and
        # /var/lib/mysql, which belong to a system server.
        mariadb-install-db --no-defaults --user=root --datadir="$DB_DIR" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOG/mariadb-install.log" 2>&1 ||
            { tail -n 20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # setsid + nohup: mariadbd does not daemonize itself, and must outlive
    # this script and its terminal.  skip-networking: no port to collide on.
    setsid nohup mariadbd --no-defaults --user=root \
        --datadir="$DB_DIR" --socket="$DB_SOCKET" --pid-file="$RUN/mariadbd.pid" \
        --skip-networking --log-error="$LOG/mariadb.log" \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        --innodb-flush-log-at-trx-commit=2 --skip-log-bin \
        </dev/null >/dev/null 2>&1 &
    wait_for mariadbd 30 mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping
    # mariadbd writes its pid file a moment after it accepts connections.
    wait_for "mariadbd pid file" 10 is_running mariadbd
    db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
           CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'bench-slurm';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurmdbd() {
    if is_running slurmdbd; then return 0; fi
    MYSQL_UNIX_PORT="$DB_SOCKET" slurmdbd
    wait_for slurmdbd 30 sacctmgr -n show cluster
    if [[ -z $(sacctmgr -n -P show cluster "$CLUSTER_NAME" format=cluster 2>/dev/null) ]]; then
        sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
    fi
}

start_slurmctld() {
    if is_running slurmctld; then return 0; fi
    slurmctld
    wait_for slurmctld 30 scontrol ping
}

start_slurmd() {
    if is_running slurmd; then return 0; fi
    slurmd
}

node_idle() {
    local host; host=$(hostname -s)
    [[ $(sinfo -h -n "$host" -o '%t' 2>/dev/null) == idle ]]
}

# Daemons of a distribution service (systemd units) would hold our ports.
check_foreign() {
    local name pid
    for name in slurmdbd slurmctld slurmd; do
        is_running "$name" && continue
        pid=
        for pid in $(pgrep -x "$name" || true); do
            alive "$pid" && break  # zombies of a just-stopped daemon hold nothing
            pid=
        done
        [[ -z $pid ]] || die "a $name (pid $pid) not started by this script is running; stop it first (e.g. systemctl disable --now $name)"
    done
}

cmd_start() {
    need_root start
    check_installed
    local all=1 d
    for d in "${DAEMONS[@]}"; do
        if [[ $d == munged ]]; then
            munge_ok >/dev/null 2>&1 || all=0  # ours or the distribution's
        else
            is_running "$d" || all=0
        fi
    done
    if ((all)) && node_idle; then
        say "already running (state in $STATE_DIR)"
        return 0
    fi
    check_foreign
    local t0; t0=$(now)
    write_configs
    start_munged
    start_mariadbd
    start_slurmdbd
    start_slurmctld
    start_slurmd
    local end=$((SECONDS + WAIT_S))
    until node_idle; do
        if ((SECONDS >= end)); then
            sinfo -N -l >&2 || true
            show_logs
            die "node $(hostname -s) not idle after ${WAIT_S}s: state '$(sinfo -h -n "$(hostname -s)" -o '%t %E' 2>/dev/null || echo 'no answer from slurmctld')' (log tails above; logs in $LOG)"
        fi
        sleep 0.5
    done
    say "cluster '$CLUSTER_NAME' up in $(elapsed "$t0") s: partition $PARTITION, node $(hostname -s), state in $STATE_DIR"
}

# ------------------------------------------------------------------- stop ---

cmd_stop() {
    need_root stop
    local i name pid stopped=0
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        pid=$(daemon_pid "$name") || continue
        local t0; t0=$(now)
        kill -TERM "$pid" 2>/dev/null || true
        # Wait so that a following start does not find ports or the munge
        # socket still held; escalate if a daemon hangs.
        local end=$((SECONDS + 20))
        while alive "$pid" && ((SECONDS < end)); do sleep 0.1; done
        if alive "$pid"; then
            say "$name (pid $pid) ignored SIGTERM for 20 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid) in $(elapsed "$t0") s"
        stopped=1
    done
    ((stopped)) || say "nothing was running (state in $STATE_DIR)"
}

# ----------------------------------------------------------------- status ---

# Exit status 0 only when every daemon runs, so CI can do `status || start`.
cmd_status() {
    local name pid up=1
    for name in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$name"); then
            printf '  %-10s running (pid %s)\n' "$name" "$pid"
        elif [[ $name == munged ]] && munge_ok >/dev/null 2>&1; then
            printf '  %-10s running (not started by this script)\n' "$name"
        else
            printf '  %-10s stopped\n' "$name"
            up=0
        fi
    done
    if is_running slurmctld; then
        sinfo
    fi
    ((up))
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
esac
