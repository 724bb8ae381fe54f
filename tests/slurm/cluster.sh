#!/usr/bin/env bash
# A real one-node SLURM cluster, with accounting, for the test suite.
#
# Usage: bash tests/slurm/cluster.sh up|down|status      (as root; Debian bookworm, no systemd)
#   up      installs Debian's Slurm 22.05 + munge + slurmdbd + MariaDB if missing, writes the
#           configs, (re)starts what is not running or whose config changed, resumes a drained
#           node, and ends with a GPU smoke job that must reach COMPLETED in sacct. Idempotent;
#           a few seconds when everything is already up.
#   down    stops only the daemons that `up` started (recorded in $STATE; a daemon that `up`
#           restarted because its config changed counts as started); packages stay.
#   status  prints daemon states and sinfo; exit 0 if the cluster is usable, 1 otherwise.
#
# Cluster `ci`: one node named `hostname -s` on 127.0.0.1, 8 CPUs, 90 % of the memory, 8 fake
# a100 GPUs; partitions `batch` (default) and `gpu` over the same node; account `root`
# (slurmctld creates the association itself once slurmdbd runs). Why the unusual settings:
# - daemons run as root, started directly (no systemd); a policy-rc.d keeps apt from starting them.
# - accounting (slurmdbd + MariaDB, unix socket only): snakemake-executor-plugin-slurm polls
#   `sacct`; without accounting sacct fails and Snakemake waits forever.
# - fake GPUs are gres `File=` symlinks to /dev/null: file-less GPUs are dropped and the node
#   drains ("gres/gpu count reported lower than configured").
# - SlurmdParameters=config_overrides: the declared CPUs/memory may exceed the hardware. Nothing
#   is enforced (no cgroups: proctrack/linuxproc, task/none), so tests can check scheduling only.
# - NoInAddrAny,NoCtldInAddrAny: slurmctld/slurmd listen on 127.0.0.1 only (slurmdbd 22.05 has
#   no bind option and listens on 0.0.0.0:6819).
# - batch_sched_delay=0: a job starts in about 1 s instead of 3 s. KillWait=2: a job over its
#   time limit gets SIGKILL 2 s after SIGTERM (default 30). Slurm 22.05 has no setting for how
#   often slurmctld checks time limits (hard-coded: every 30 s), so a `-t 1` job is killed
#   (TIMEOUT) 60-92 s after it started; budget tests for that.
# - DefMemPerCPU=1000: without it a job that gives no --mem gets the whole node's memory, so
#   plain `sbatch` jobs run one at a time (the plugin always passes --mem).
# - PID 1 here reaps slowly: a stopped daemon lingers as a zombie, so <defunct> counts as gone.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

NODE=$(hostname -s)
STATE=/run/echogen-slurm/started     # one file per daemon that `up` started, holding its pid
LOG=/var/log/echogen-slurm      # ours, root 0755 (munged rejects the slurm-owned /var/log/slurm)
GPUDIR=/var/lib/slurm-fakegpu
SOCK=/run/mysqld/mysqld.sock
DBPASS=echogen-ci                    # MariaDB runs with --skip-networking: socket only
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order; `down` reverses it
T0=${EPOCHREALTIME/./}

say() { local us=$((${EPOCHREALTIME/./} - T0)); printf '[%3d.%ds] %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$*"; }
pidfile() { case $1 in munged) echo /run/munge/munged.pid ;; mariadbd) echo /run/mysqld/mysqld.pid ;; *) echo "/run/$1.pid" ;; esac; }
logfile() { case $1 in apt) echo "$LOG/apt.log" ;; *) echo "$LOG/$1.log" ;; esac; }
die() {  # die <daemon|apt> <message>: fail with the tail of that log
  echo "cluster.sh: ERROR: $1: $2 (log: $(logfile "$1"))" >&2
  tail -n 25 "$(logfile "$1")" >&2 2>/dev/null || true
  exit 1
}
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != *Z* ]]; }   # zombie = gone
running() {  # running <daemon>: print its pid if it runs (pid file first, then by exact name)
  local f pid; f=$(pidfile "$1")
  for pid in $( [[ -s $f ]] && cat "$f"; pgrep -x "$1" || true); do
    if alive "$pid" && [[ $(ps -o comm= -p "$pid") == "$1" ]]; then echo "$pid"; return 0; fi
  done
  return 1
}
wait_until() {  # wait_until <secs> <daemon> <what> <cmd...>: poll cmd, fail naming the daemon
  local secs=$1 end=$((SECONDS + $1)) d=$2 what=$3; shift 3
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || die "$d" "not $what after ${secs} s"
    sleep 0.2
  done
}
stop() {  # stop <daemon> <pid>: SIGTERM, bounded wait, then SIGKILL
  local d=$1 pid=$2 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do alive "$pid" || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 25; i++)); do alive "$pid" || return 0; sleep 0.2; done
  die "$d" "pid $pid still alive 35 s after SIGTERM/SIGKILL"
}
ready() {  # ready <daemon>: is it serving?
  case $1 in
    munged) munge -n </dev/null | unmunge ;;
    mariadbd) mariadb-admin --socket="$SOCK" ping ;;
    slurmdbd) sacctmgr -n list cluster ;;
    slurmctld) ctld_up ;;
    slurmd) node_ok ;;
  esac
}
ctld_up() { [[ $(scontrol ping 2>/dev/null) == *"is UP"* ]]; }
node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1; }
node_ok() { [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; }

start() {  # start <daemon>: launch it directly, wait until it serves, record it as ours
  local d=$1 log pid; log=$(logfile "$d")
  case $d in
    munged) install -d -o munge -g munge -m 755 /run/munge   # munged insists on owning its log
      touch "$log" && chown munge: "$log" && chmod 640 "$log"
      runuser -u munge -- munged --log-file="$log" </dev/null >>"$log" 2>&1 || die munged "munged failed to start" ;;
    mariadbd) install -d -o mysql -g mysql -m 755 /run/mysqld
      touch "$log" && chown mysql: "$log"
      setsid mariadbd --user=mysql --skip-networking --socket="$SOCK" --pid-file="$(pidfile mariadbd)" \
        --log-error="$log" --innodb-lock-wait-timeout=900 </dev/null >>"$log" 2>&1 & ;;
    *) "$d" </dev/null >>"$log" 2>&1 || die "$d" "$d exited with an error at start" ;;   # they daemonize
  esac
  wait_until 30 "$d" "serving" ready "$d"
  pid=$(running "$d") || die "$d" "serving but no process found"
  echo "$pid" >"$STATE/$d"
  say "started $d (pid $pid)"
}

put() {  # put <path> <mode> <text>: write only when the content differs; remember what changed
  chmod "$2" "$1" 2>/dev/null || true
  if [[ -f $1 && "$(<"$1")" == "$3" ]]; then return 0; fi
  (umask 077; printf '%s\n' "$3" >"$1"); chmod "$2" "$1"; CHANGED+=("$1")
}

install_packages() {
  local p missing=() added=0
  for p in "${PKGS[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || { say "packages present"; return 0; }
  say "installing ${missing[*]} (log: $(logfile apt))"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then    # keep postinst scripts from starting daemons
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; added=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${PKGS[@]}"; } \
    >>"$(logfile apt)" 2>&1 || die apt "apt-get failed"
  if ((added)); then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  say "packages installed"
}

write_configs() {
  local mem comm="" i
  getent hosts "$NODE" >/dev/null || { echo "127.0.0.1 $NODE" >>/etc/hosts; say "added $NODE to /etc/hosts"; }
  [[ $(getent hosts "$NODE" | awk '{print $1; exit}') == 127.* ]] && comm="CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"
  mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  install -d -m 755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$GPUDIR"
  for i in 0 1 2 3 4 5 6 7; do ln -sfn /dev/null "$GPUDIR/nvidia$i"; done
  if [[ ! -s /etc/munge/munge.key ]]; then
    (umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  fi
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>"$(logfile mariadbd)" 2>&1 \
    || die mariadbd "mariadb-install-db failed"
  put /etc/slurm/slurm.conf 644 "# Written by tests/slurm/cluster.sh; edits are overwritten.
ClusterName=ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$comm
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$(logfile slurmctld)
SlurmdLogFile=$(logfile slurmd)
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=2
MinJobAge=300
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu,gres/gpu:a100
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 Boards=1 SocketsPerBoard=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=$mem Gres=gpu:a100:8 State=UNKNOWN
PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP"
  put /etc/slurm/gres.conf 644 "AutoDetect=off
NodeName=$NODE Name=gpu Type=a100 File=$GPUDIR/nvidia[0-7]"
  put /etc/slurm/slurmdbd.conf 600 "AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$(logfile slurmdbd)
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db"
  chown root:root /etc/slurm/slurmdbd.conf
}

up() {
  [[ $EUID -eq 0 ]] || { echo "cluster.sh: must run as root" >&2; exit 1; }
  mkdir -p "$STATE" "$LOG"
  install_packages
  CHANGED=(); write_configs
  local d pid restart=() job st end
  for d in "${CHANGED[@]}"; do
    say "config changed: $d"
    case $d in */slurmdbd.conf) restart+=(slurmdbd) ;; *) restart+=(slurmd slurmctld) ;; esac
  done
  for d in "${restart[@]}"; do   # restart running daemons whose config changed (stop here, start below)
    if pid=$(running "$d"); then say "restarting $d"; stop "$d" "$pid"; fi
  done
  for d in "${DAEMONS[@]}"; do
    if pid=$(running "$d"); then continue; fi
    if [[ $d == slurmdbd ]]; then
      mariadb --socket="$SOCK" -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE OR REPLACE USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || die mariadbd "creating the slurm database failed"
    fi
    start "$d" 9>&-   # the daemons must not inherit the lock's fd, or they hold it until `down` waits on it
  done
  say "daemons running"
  if [[ $(node_state) =~ drain|inval|down ]]; then   # a drain survives restarts and ReturnToService
    say "node $NODE is $(node_state): resuming"
    scontrol update nodename="$NODE" state=resume || true
  fi
  wait_until 30 slurmd "idle/mixed/allocated" node_ok
  job=$(sbatch --parsable --gpus=a100:1 --job-name=cluster-smoke --output=/dev/null --chdir=/tmp --wrap true) \
    || die slurmctld "smoke job: sbatch failed"
  end=$((SECONDS + 60))
  until st=$(sacct -X -n -j "$job" -o State 2>/dev/null | tr -d ' ') && [[ $st == COMPLETED ]]; do
    [[ $st =~ FAIL|CANCEL|TIMEOUT|NODE_FAIL|OUT_OF_ME ]] && die slurmd "smoke job $job ended $st"
    ((SECONDS < end)) || die slurmctld "smoke job $job not COMPLETED in sacct after 60 s (state: '${st:-none}'; slurmdbd log: $(logfile slurmdbd))"
    sleep 0.2
  done
  say "cluster ready: smoke job $job COMPLETED with one a100"
}

down() {
  local i d pid
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    d=${DAEMONS[i]}
    [[ -f $STATE/$d ]] || continue
    pid=$(<"$STATE/$d")
    if alive "$pid" && [[ $(ps -o comm= -p "$pid") == "$d" ]]; then stop "$d" "$pid"; say "stopped $d (pid $pid)"; fi
    rm -f "$STATE/$d"
  done
  say "down (daemons this script did not start are left running)"
}

status() {
  local d pid ok=0
  for d in "${DAEMONS[@]}"; do
    pid=$(running "$d") && printf '%-10s running (pid %s)%s\n' "$d" "$pid" "$([[ -f $STATE/$d ]] && echo ', started by cluster.sh')" \
      || printf '%-10s stopped\n' "$d"
  done
  command -v scontrol >/dev/null || { echo "slurm-client not installed"; return 1; }
  scontrol ping 2>&1 || true
  sinfo 2>&1 || true
  ctld_up && node_ok && ok=1
  ((ok)) && echo "cluster usable" || echo "cluster NOT usable (node state: $(node_state))"
  ((ok))
}

case ${1:-} in
  up | down) exec 9>>/run/echogen-slurm.lock   # one up/down at a time (parallel test workers)
    flock -w 180 9 || { echo "cluster.sh: ERROR: another up/down holds /run/echogen-slurm.lock for 180 s" >&2; exit 1; }
    "$1" ;;
  status) status ;;
  *) echo "usage: bash $0 up|down|status" >&2; exit 2 ;;
esac
