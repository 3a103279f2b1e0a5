#!/usr/bin/env bash
# slurm-local.sh up|down : a real single-node SLURM (Debian's slurm-wlm) on loopback, so that
# tests/test_slurm.py can run the DAG with workflow/profiles/slurm. Run as root (CI does).
# `up` installs slurmctld, slurmd, slurm-client and munge with apt, writes
# /etc/slurm/slurm.conf (the only place the daemons look), starts munged, slurmctld and slurmd
# and waits until the node is idle. `down` cancels jobs and stops the daemons by the PIDs in
# their pid files (never by name: other slurm daemons on the machine are left alone).
# Without slurmdbd, `sacct` has no data: pass `--slurm-status-command squeue` to Snakemake.
# The node has `nproc --all` CPUs: plain nproc follows OMP_NUM_THREADS, which tests set to 1.
# WITH_DBD=1 also starts MariaDB + slurmdbd, so that `sacct` works.
set -euo pipefail
B=${SLURM_LOCAL_DIR:-/tmp/slurm-local}; WITH_DBD=${WITH_DBD:-0}
H=$(hostname -s); MS=/run/munge/munge.socket.2; C=/etc/slurm
wait_for() { for _ in $(seq 1 160); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.25; done
  echo "timed out: $1" >&2; return 1; }
stop_pid() { [ -s "$1" ] || return 0; local p; p=$(cat "$1"); kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 1 80); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.25; done; kill -KILL "$p" 2>/dev/null || true; }
up() {
  local pk="slurmctld slurmd slurm-client munge" acct=accounting_storage/none
  [ "$WITH_DBD" = 1 ] && pk="$pk slurmdbd mariadb-server" && acct=accounting_storage/slurmdbd
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pk >/dev/null
  mkdir -p "$B"/{state,spool,log,run,munge} /run/munge $C; chmod 700 "$B/munge"; chmod 755 /run/munge
  [ -s "$B/munge/munge.key" ] || mungekey --create --keyfile="$B/munge/munge.key"
  munged --key-file="$B/munge/munge.key" --socket=$MS --pid-file="$B/run/munged.pid" \
    --log-file="$B/log/munged.log" --seed-file="$B/munge/seed" </dev/null >/dev/null 2>&1
  cat > $C/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=300
MpiDefault=none
AccountingStorageType=$acct
AccountingStorageHost=localhost
JobCompType=jobcomp/filetxt
JobCompLoc=$B/log/jobcomp.txt
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc --all) RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
  if [ "$WITH_DBD" = 1 ]; then
    [ -d "$B/mysql/mysql" ] || mariadb-install-db --user=root --datadir="$B/mysql" >/dev/null 2>&1
    setsid mariadbd --no-defaults --user=root --datadir="$B/mysql" --socket="$B/run/mysqld.sock" \
      --pid-file="$B/run/mysqld.pid" --bind-address=127.0.0.1 --port=3306 \
      --log-error="$B/log/mysqld.log" </dev/null >/dev/null 2>&1 &
    wait_for "mariadb-admin --socket=$B/run/mysqld.sock ping"
    mariadb --socket="$B/run/mysqld.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' \
      IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
    printf '%s\n' AuthType=auth/munge DbdHost=localhost SlurmUser=root StorageType=accounting_storage/mysql \
      StorageHost=127.0.0.1 StoragePort=3306 StorageUser=slurm StoragePass=slurm StorageLoc=slurm_acct_db \
      "PidFile=$B/run/slurmdbd.pid" "LogFile=$B/log/slurmdbd.log" > $C/slurmdbd.conf
    chmod 600 $C/slurmdbd.conf; slurmdbd </dev/null >/dev/null 2>&1; wait_for "sacctmgr -n show cluster"
  fi
  slurmctld </dev/null >/dev/null 2>&1; slurmd </dev/null >/dev/null 2>&1
  wait_for '[ "$(sinfo -h -o %T)" = idle ]'; sinfo
}
down() {
  squeue -h -o %i 2>/dev/null | xargs -r scancel || true; wait_for '[ -z "$(squeue -h)" ]' || true
  for d in slurmd slurmctld slurmdbd mysqld munged; do stop_pid "$B/run/$d.pid"; done
  rm -f $C/slurm.conf $C/slurmdbd.conf $MS
}
case "${1:-}" in up) up ;; down) down ;; *) echo "usage: $0 up|down" >&2; exit 2 ;; esac
