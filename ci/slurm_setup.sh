#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the SLURM tests (tests/test_slurm.py).
#
#   bash ci/slurm_setup.sh start    install what is missing (Debian packages), configure, start
#   bash ci/slurm_setup.sh stop     stop the daemons this script starts
#   bash ci/slurm_setup.sh status
#
# Needs root on Debian 12 (apt, /etc/slurm, daemons); no systemd or cgroups. Installs
# slurm-wlm and munge, plus slurmdbd and MariaDB: submitit polls jobs with sacct, which needs
# accounting (without it a killed job is never seen as finished). Two partitions: `debug`
# (default) and `urgent`, whose jobs preempt debug's (requeue after a 30 s grace time, with
# the job's --signal sent first, as on a real cluster with preemption).
#
# Knobs: SLURM_CRED_EXPIRE (default 5): a requeued job waits that + 1 s before it may start
# again (SLURM's default of 120 s would make every requeue test wait two minutes).
set -euo pipefail

CRED_EXPIRE=${SLURM_CRED_EXPIRE:-5}
DB_PASS=nip-ci-local   # MariaDB listens on its unix socket only
PIDS=(/run/slurmd.pid:slurmd /run/slurmctld.pid:slurmctld /run/slurmdbd.pid:slurmdbd
      /run/mysqld/mysqld.pid:mariadbd /run/munge/munged.pid:munged)

say() { echo "[slurm_setup] $*"; }
die() { say "error: $*" >&2; exit 1; }

# alive PIDFILE NAME: the pid file names a live (non-zombie) process called NAME.
alive() {
    local pid state
    pid=$(cat "$1" 2>/dev/null) || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# await SECONDS WHAT COMMAND...: poll until COMMAND succeeds.
await() {
    local limit=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $limit ] || die "no $what after ${limit}s (logs: /var/log/slurm)"
        sleep 0.2
    done
}

# launch NAME COMMAND...: start a daemon; on failure, show the end of its log.
launch() {
    local name=$1
    shift
    "$@" || die "$name did not start: $(tail -n 3 "/var/log/slurm/$name.log" 2>/dev/null | tr '\n' ' ')"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_packages() {
    local wanted=(slurm-wlm munge slurmdbd mariadb-server) missing=() p
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    for attempt in 1 2 3; do
        # The packages' scripts cannot start services here (no init); we start them below.
        if apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
            return
        fi
        sleep $((attempt * 5))
    done
    die "apt-get could not install ${missing[*]}"
}

write_config() {
    local hardware node loopback=""
    hardware=$(slurmd -C | head -n1)   # NodeName=<host> CPUs=... RealMemory=...: this machine
    node=${hardware#NodeName=}
    node=${node%% *}
    # Bind to loopback only where the host name resolves there.
    if getent ahostsv4 "$node" | awk '{print $1}' | grep -q '^127\.'; then
        loopback="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
    fi
    install -d -o slurm -g slurm /var/log/slurm /var/lib/slurm/slurmctld
    install -d /var/lib/slurm/slurmd
    cat >/etc/slurm/slurm.conf <<CONF
ClusterName=nipci
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=cred_expire=${CRED_EXPIRE}
MpiDefault=none
MailProg=/bin/true
${loopback}
# No cgroups here: processes are tracked through /proc, limits are accounted, not enforced.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs that ask for no memory get this much per CPU (else one job takes the whole node).
DefMemPerCPU=512
SchedulerType=sched/backfill
# Schedule every 2 s, so a requeued job starts as soon as its hold ends.
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
KillWait=5
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
${hardware} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=30
PartitionName=urgent Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
CONF
    cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=${DB_PASS}
StorageLoc=slurm_acct_db
CONF
    chown slurm:slurm /etc/slurm/slurmdbd.conf
    chmod 600 /etc/slurm/slurmdbd.conf   # slurmdbd refuses a readable password file
    cat >/etc/mysql/mariadb.conf.d/90-nip-ci.cnf <<CONF
[mysqld]
skip-networking
skip-log-bin
innodb_lock_wait_timeout=900
CONF
}

start() {
    install_packages
    write_config
    if ! alive /run/munge/munged.pid munged; then
        install -d -o munge -g munge /run/munge
        runuser -u munge -- /usr/sbin/munged
        await 10 munged bash -c 'munge -n | unmunge'
    fi
    if ! alive /run/mysqld/mysqld.pid mariadbd; then
        install -d -o mysql -g mysql /run/mysqld
        nohup /usr/sbin/mariadbd --user=mysql >/var/log/slurm/mariadbd.out 2>&1 </dev/null &
        await 30 MariaDB mariadb-admin ping
    fi
    # ALTER, not only CREATE: a user left by an earlier run keeps its old password otherwise.
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost';
        ALTER USER 'slurm'@'localhost' IDENTIFIED BY '${DB_PASS}';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    alive /run/slurmdbd.pid slurmdbd || launch slurmdbd /usr/sbin/slurmdbd
    await 60 "slurmdbd on port 6819" port_open 6819
    if ! alive /run/slurmctld.pid slurmctld; then
        launch slurmctld /usr/sbin/slurmctld
        await 30 slurmctld scontrol ping
    fi
    if ! alive /run/slurmd.pid slurmd; then
        launch slurmd /usr/sbin/slurmd
        await 10 slurmd alive /run/slurmd.pid slurmd
    fi
    # A node left down by an unclean stop comes back.
    scontrol update NodeName=ALL State=RESUME >/dev/null 2>&1 || true
    await 60 "idle node" bash -c "sinfo -h -o %t | grep -qE '^(idle|mix|alloc)'"
    say "ready: $(sinfo -h -o '%P %a %D %t' | paste -sd ';')"
}

stop() {
    local entry file name pid
    for entry in "${PIDS[@]}"; do
        file=${entry%%:*}
        name=${entry##*:}
        alive "$file" "$name" || continue
        pid=$(cat "$file")
        kill -TERM "$pid"
        for _ in $(seq 100); do alive "$file" "$name" || break; sleep 0.2; done
        alive "$file" "$name" && kill -KILL "$pid"
        say "stopped $name"
    done
}

status() {
    local entry
    for entry in "${PIDS[@]}"; do
        if alive "${entry%%:*}" "${entry##*:}"; then echo "${entry##*:}: running"; else echo "${entry##*:}: stopped"; fi
    done
    sinfo 2>/dev/null || true
}

[ "$(id -u)" -eq 0 ] || die "needs root (apt-get, /etc/slurm, daemons)"
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
