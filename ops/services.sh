#!/usr/bin/env bash
# Local services for payscore, without Docker: an Apache Kafka broker (KRaft, one node) from Maven
# Central jars and MariaDB from Debian's packages, both on 127.0.0.1.
#
#   bash ops/services.sh up       install what is missing, start both, create the database, the
#                                 accounts, the topics and the tables
#   bash ops/services.sh down     stop both (data is kept under .services/)
#   bash ops/services.sh status   say what runs
#   bash ops/services.sh mysql-down|mysql-up   stop or start MariaDB alone
#   bash ops/services.sh kafka-down|kafka-up   stop or start the broker alone
#   bash ops/services.sh restart-mysql|restart-kafka [SECONDS]
#                                 stop one service, keep it down SECONDS (0 to 3600, default 0), start it
#                                 again (outage drills; the chaos tests use them)
#   bash ops/services.sh accounts make the MySQL accounts (part of up and mysql-up)
#   bash ops/services.sh tables   the tables, and the accounts' rights on them (part of up:
#                                 python -m storage.schema --create as the admin account)
#   bash ops/services.sh kafka-install   resolve the broker's jars only
#   bash ops/services.sh reset-grants [SECONDS]
#                                 revoke every right of the flow's account, drop its connections
#                                 (as a restart does) and grant the same rights again SECONDS
#                                 later (a drill of grants re-applied by a DBA's tool; 0: no
#                                 drop, no wait)
#
# A private MariaDB beside the shared one (for drills that stop and start it):
#   SERVICES_MYSQL_DATADIR=/work/drill-mysql/data SERVICES_MYSQL_PORT=3310 bash ops/services.sh mysql-up
# runs a second server with that data folder (initialised if it is new), that port, and its socket,
# pid file and error log beside the data folder (SERVICES_MYSQL_SOCKET, SERVICES_MYSQL_PIDFILE
# choose others); the same server settings, TLS, accounts and database as the default one.
# mysql-down, mysql-up and restart-mysql then stop and start that server alone.
#
# Idempotent: `up` on running services only checks them, and brings the accounts and their rights
# to what storage/accounts.py states (taking away what an account should no longer have).
# Settings come from the environment with the defaults below (the same defaults the application's
# config uses). A second broker (its own state folder and ports, e.g. for a test) is
#   SERVICES_STATE_DIR=/tmp/b2 SERVICES_KAFKA_PORT=19092 SERVICES_KAFKA_CONTROLLER_PORT=19093 \
#   SERVICES_KAFKA_SASL_PORT=19094 SERVICES_KAFKA_HEAP=256m bash ops/services.sh kafka-up
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${SERVICES_STATE_DIR:-$ROOT/.services}
KAFKA_HOME="$STATE/kafka"
KAFKA_LIB=${SERVICES_KAFKA_LIB:-$KAFKA_HOME/lib}
KAFKA_PORT=${SERVICES_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${SERVICES_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_SASL_PORT=${SERVICES_KAFKA_SASL_PORT:-9094}
KAFKA_HEAP=${SERVICES_KAFKA_HEAP:-1G}
# 1: every listener (clients' and the controller's) takes SASL logins only; no PLAINTEXT port.
KAFKA_AUTH_ONLY=${SERVICES_KAFKA_AUTH_ONLY:-0}
MYSQL_PORT=${SERVICES_MYSQL_PORT:-3306}
DB_NAME=${SERVICES_MYSQL_DATABASE:-payscore}
# One account per job (storage/accounts.py states their rights), each at every host of
# SERVICES_MYSQL_HOSTS. The flow's:
DB_USER=${SERVICES_MYSQL_USER:-payscore_flow}
DB_PASSWORD=${SERVICES_MYSQL_PASSWORD:-payscore_flow}
REVIEW_USER=${SERVICES_MYSQL_REVIEW_USER:-payscore_review}
REVIEW_PASSWORD=${SERVICES_MYSQL_REVIEW_PASSWORD:-payscore_review}
MODELS_USER=${SERVICES_MYSQL_MODELS_USER:-payscore_models}
MODELS_PASSWORD=${SERVICES_MYSQL_MODELS_PASSWORD:-payscore_models}
# The analysts' command lines' (python -m rules, rules.backtest, review.explain).
ANALYST_USER=${SERVICES_MYSQL_ANALYST_USER:-payscore_analyst}
ANALYST_PASSWORD=${SERVICES_MYSQL_ANALYST_PASSWORD:-payscore_analyst}
ADMIN_USER=${SERVICES_MYSQL_ADMIN_USER:-payscore_admin}
ADMIN_PASSWORD=${SERVICES_MYSQL_ADMIN_PASSWORD:-payscore_admin}
MYSQL_HOSTS=${SERVICES_MYSQL_HOSTS:-127.0.0.1,localhost}
# Accounts an earlier payscore made that no job uses any more: dropped (payscore was the flow's
# and the review queue's, with every row right on the database).
RETIRED_USERS=${SERVICES_MYSQL_RETIRED_USERS-payscore}
PYTHON=${SERVICES_PYTHON:-$ROOT/.venv/bin/python}

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# The MariaDB server this script starts and stops: the system's (default), or a private one.
MYSQL_DATADIR=${SERVICES_MYSQL_DATADIR:-}
MYSQL_SERVER_ARGS=()
if [ -n "$MYSQL_DATADIR" ]; then
  [ "$MYSQL_PORT" = 3306 ] && die "SERVICES_MYSQL_DATADIR needs a port of its own (SERVICES_MYSQL_PORT), not 3306"
  case "$MYSQL_DATADIR" in /*) ;; *) die "SERVICES_MYSQL_DATADIR must be an absolute path; got $MYSQL_DATADIR" ;; esac
  MYSQL_HOME=$(dirname "$MYSQL_DATADIR")
  MYSQL_SOCKET=${SERVICES_MYSQL_SOCKET:-$MYSQL_HOME/mysqld.sock}
  MYSQL_PIDFILE=${SERVICES_MYSQL_PIDFILE:-$MYSQL_HOME/mysqld.pid}
  MYSQL_ERROR_LOG=$MYSQL_HOME/error.log
  MYSQL_SERVER_ARGS=(--datadir="$MYSQL_DATADIR" --port="$MYSQL_PORT" --socket="$MYSQL_SOCKET"
    --pid-file="$MYSQL_HOME/mariadbd.pid" --log-error="$MYSQL_ERROR_LOG")
else
  MYSQL_SOCKET=${SERVICES_MYSQL_SOCKET:-}  # root's socket; empty: the client's default
  MYSQL_PIDFILE=${SERVICES_MYSQL_PIDFILE:-/run/mysqld/payscore.pid}
  MYSQL_ERROR_LOG=/var/log/mysql/error.log
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {  # port, name, seconds, log file
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    if ((SECONDS > deadline)); then
      [ -f "${4:-}" ] && tail -n 30 "$4" >&2
      die "$2 did not open 127.0.0.1:$1 within $3 s (log: ${4:-none})"
    fi
    sleep 0.5
  done
}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------- Kafka
kafka_install() {
  if [ -f "$KAFKA_LIB/.complete" ]; then return; fi
  command -v java >/dev/null || die "java not found: install a JDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven)"
  log "resolving the Kafka broker from Maven Central into $KAFKA_LIB"
  rm -rf "$KAFKA_LIB"
  mvn -q -B -U -f "$ROOT/ops/kafka/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB"
  touch "$KAFKA_LIB/.complete"
}

kafka_pid() { [ -f "$KAFKA_HOME/kafka.pid" ] && kill -0 "$(cat "$KAFKA_HOME/kafka.pid")" 2>/dev/null && cat "$KAFKA_HOME/kafka.pid"; }

# The port clients bootstrap from: the SASL listener when it is the only one.
kafka_client_port() { if [ "$KAFKA_AUTH_ONLY" = 1 ]; then echo "$KAFKA_SASL_PORT"; else echo "$KAFKA_PORT"; fi; }

# With SERVICES_KAFKA_AUTH_ONLY=1 the broker's own logins (PLAIN, on the SASL and controller
# listeners) use one generated admin password, kept in admin.properties (mode 0600): librdkafka
# settings with which the tools, and whoever adds SCRAM users for the applications, log in.
kafka_admin_properties() {
  local file="$KAFKA_HOME/admin.properties"
  if [ ! -f "$file" ]; then
    (umask 077 && printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=admin\nsasl.password=%s\n' \
      "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$file")
  fi
  echo "$file"
}

# The broker's configuration: ops/kafka/server.properties, then its listeners for these ports
# and mode, then its log folder.
kafka_config() {
  cat "$ROOT/ops/kafka/server.properties"
  echo "controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT"
  echo "controller.listener.names=CONTROLLER"
  echo "sasl.enabled.mechanisms=SCRAM-SHA-256"
  echo "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  if [ "$KAFKA_AUTH_ONLY" = 1 ]; then
    local password login
    password=$(sed -n 's/^sasl.password=//p' "$(kafka_admin_properties)")
    login="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$password\" user_admin=\"$password\";"
    echo "listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
    echo "advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
    echo "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    echo "inter.broker.listener.name=SASL_PLAINTEXT"
    echo "sasl.mechanism.inter.broker.protocol=PLAIN"
    echo "sasl.mechanism.controller.protocol=PLAIN"
    echo "listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-256,PLAIN"
    echo "listener.name.sasl_plaintext.plain.sasl.jaas.config=$login"
    echo "listener.name.controller.sasl.enabled.mechanisms=PLAIN"
    echo "listener.name.controller.plain.sasl.jaas.config=$login"
  else
    echo "listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    echo "inter.broker.listener.name=PLAINTEXT"
  fi
  echo "log.dirs=$KAFKA_HOME/data"
}

kafka_up() {
  local port
  port=$(kafka_client_port)
  if kafka_pid >/dev/null && port_open "$port"; then log "kafka already running"; return; fi
  for p in "$port" "$KAFKA_CONTROLLER_PORT"; do
    port_open "$p" && die "127.0.0.1:$p is taken by a process this script did not start"
  done
  kafka_install
  mkdir -p "$KAFKA_HOME/data" "$KAFKA_HOME/logs"
  (umask 077 && kafka_config >"$KAFKA_HOME/server.properties")  # may hold the admin password
  local cp="$KAFKA_LIB/*"
  if [ ! -f "$KAFKA_HOME/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    log "formatting the KRaft log folder (cluster $cluster_id)"
    java -cp "$cp" kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$KAFKA_HOME/server.properties" >"$KAFKA_HOME/logs/format.log" 2>&1 \
      || { cat "$KAFKA_HOME/logs/format.log" >&2; die "formatting the Kafka log folder failed"; }
  fi
  log "starting kafka$([ "$KAFKA_AUTH_ONLY" = 1 ] && echo ' (SASL logins only)')"
  setsid nohup java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$ROOT/ops/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_HOME/logs" \
    -cp "$cp" kafka.Kafka "$KAFKA_HOME/server.properties" \
    >"$KAFKA_HOME/logs/stdout.log" 2>&1 &
  echo $! >"$KAFKA_HOME/kafka.pid"
  # The client port opens only once the broker can serve.
  wait_for_port "$port" kafka 240 "$KAFKA_HOME/logs/server.log"
  log "kafka ready on 127.0.0.1:$port"
}

kafka_down() {
  local pid
  if pid=$(kafka_pid); then
    log "stopping kafka (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$KAFKA_HOME/kafka.pid"
}

# ---------------------------------------------------------------- MariaDB
mysql_install() {
  if command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; then return; fi
  log "installing MariaDB from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client >/dev/null
}

mysql_root() { as_root mariadb --protocol=socket ${MYSQL_SOCKET:+--socket="$MYSQL_SOCKET"} -uroot "$@"; }

mysql_datadir() {  # a private server's data folder, initialised once
  [ -n "$MYSQL_DATADIR" ] || return 0
  as_root test -d "$MYSQL_DATADIR/mysql" && return 0
  log "initialising a private MariaDB data folder in $MYSQL_DATADIR"
  as_root install -d -o mysql -g mysql -m 750 "$MYSQL_HOME" "$MYSQL_DATADIR"
  as_root mariadb-install-db --user=mysql --datadir="$MYSQL_DATADIR" --skip-test-db \
    --auth-root-authentication-method=socket >"$MYSQL_HOME/install.log" 2>&1 \
    || { cat "$MYSQL_HOME/install.log" >&2; die "mariadb-install-db failed for $MYSQL_DATADIR"; }
}

# A throwaway CA and a server certificate for 127.0.0.1, so that clients can use (and the tests
# check) TLS with a verified server; real deployments bring their own. They live outside the
# checkout, where the server (user mysql) can read them: ca.pem is public, server.key is
# readable by mysql alone.
TLS=${SERVICES_MYSQL_TLS_DIR:-/etc/mysql/payscore-tls}
mysql_tls() {
  if as_root test -f "$TLS/server.pem"; then return; fi
  command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
  log "making a throwaway CA and server certificate in $TLS"
  local work
  work=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=payscore local CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$work/san.ext"
  openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 3650 -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null
  as_root install -d -m 755 "$TLS"
  as_root install -m 644 "$work/ca.pem" "$work/server.pem" "$TLS/"
  as_root install -o mysql -g mysql -m 600 "$work/server.key" "$TLS/"
  rm -rf "$work"  # the CA's key is not kept: nothing else is ever signed with it
}

mysql_up() {
  if port_open "$MYSQL_PORT" && mysql_root -e 'SELECT 1' >/dev/null 2>&1; then
    log "mariadb already running"
  else
    mysql_install
    mysql_tls
    mysql_datadir
    as_root mkdir -p /run/mysqld
    as_root chown mysql:mysql /run/mysqld
    log "starting mariadb"
    as_root start-stop-daemon --start --oknodo --background --pidfile "$MYSQL_PIDFILE" \
      --make-pidfile --exec /usr/sbin/mariadbd -- \
      --defaults-extra-file="$ROOT/ops/mariadb/payscore.cnf" --user=mysql \
      --ssl-ca="$TLS/ca.pem" --ssl-cert="$TLS/server.pem" --ssl-key="$TLS/server.key" \
      "${MYSQL_SERVER_ARGS[@]}"
    # A fresh data folder (InnoDB's files made at the first start) on a slow, loaded machine
    # takes more than a minute; past the bound, say so rather than fail later on the accounts.
    wait_for_port "$MYSQL_PORT" mariadb 180 "$MYSQL_ERROR_LOG"
    local ready=0
    for _ in $(seq 1 120); do mysql_root -e 'SELECT 1' >/dev/null 2>&1 && { ready=1; break; }; sleep 0.5; done
    if ((!ready)); then
      tail -n 30 "$MYSQL_ERROR_LOG" >&2 2>/dev/null || true
      die "mariadb answers on 127.0.0.1:$MYSQL_PORT but not to root on its socket within 60 s (log: $MYSQL_ERROR_LOG)"
    fi
  fi
  mysql_accounts
}

# The application's settings for these services' accounts (no passwords: the names and hosts
# are what storage.accounts needs).
export_account_settings() {
  export PAYSCORE_MYSQL_URL="mysql+pymysql://$DB_USER@127.0.0.1:$MYSQL_PORT/$DB_NAME"
  export PAYSCORE_REVIEW_MYSQL_URL="mysql+pymysql://$REVIEW_USER@127.0.0.1:$MYSQL_PORT/$DB_NAME"
  export PAYSCORE_MODELS_MYSQL_URL="mysql+pymysql://$MODELS_USER@127.0.0.1:$MYSQL_PORT/$DB_NAME"
  export PAYSCORE_ANALYST_MYSQL_URL="mysql+pymysql://$ANALYST_USER@127.0.0.1:$MYSQL_PORT/$DB_NAME"
  export PAYSCORE_MYSQL_ADMIN_URL="mysql+pymysql://$ADMIN_USER@127.0.0.1:$MYSQL_PORT/$DB_NAME"
  export PAYSCORE_MYSQL_ACCOUNT_HOSTS="$MYSQL_HOSTS"
}

# The database, one account per job at every host, and their rights: the admin owns the payscore
# databases (with the grant option: the schema command grants the job accounts their rights per
# table, storage/accounts.py); a job account has no right on the server; retired accounts are
# dropped. Nothing here takes a right away from an account a job still uses, even for a moment:
# mysql-up runs it after every start, and a flow reconnecting right after a restart that met a
# REVOKE-then-GRANT window was refused (1044) and stopped (issue 20, benchmarks/outage_drill.py).
# The table rights are given (and narrowed) only where they differ, additions first
# (storage.accounts.plan); a job account's rights on a whole database are taken away only after
# the schema command has given it its rights per table (revoke_database_rights).
mysql_accounts() {
  [ -x "$PYTHON" ] || die "$PYTHON not found: run 'bash ops/bootstrap.sh' first to create the virtualenv"
  local hosts user host
  IFS=, read -r -a hosts <<<"$MYSQL_HOSTS"
  {
    echo "CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
    for pair in "$ADMIN_USER:$ADMIN_PASSWORD" "$DB_USER:$DB_PASSWORD" "$REVIEW_USER:$REVIEW_PASSWORD" \
      "$MODELS_USER:$MODELS_PASSWORD" "$ANALYST_USER:$ANALYST_PASSWORD"; do
      for host in "${hosts[@]}"; do
        echo "CREATE USER IF NOT EXISTS '${pair%%:*}'@'$host' IDENTIFIED BY '${pair#*:}';"
        echo "ALTER USER '${pair%%:*}'@'$host' IDENTIFIED BY '${pair#*:}';"  # the password set here
      done
    done
  } | mysql_root
  local retire=()
  for user in $RETIRED_USERS; do retire+=(--retire "$user"); done
  (export_account_settings && cd "$ROOT" && "$PYTHON" -m storage.accounts "${retire[@]}") | mysql_root
  log "mariadb ready on 127.0.0.1:$MYSQL_PORT (database $DB_NAME; accounts: flow $DB_USER, review $REVIEW_USER, models $MODELS_USER, analyst $ANALYST_USER, admin $ADMIN_USER)"
}

# The tables, and the job accounts' rights on them (as the admin account); then no job account
# keeps a right on a whole database.
tables_up() {
  (
    export_account_settings
    export PAYSCORE_MYSQL_ADMIN_URL="mysql+pymysql://$ADMIN_USER:$ADMIN_PASSWORD@127.0.0.1:$MYSQL_PORT/$DB_NAME"
    unset PAYSCORE_MYSQL_ADMIN_PASSWORD_FILE
    cd "$ROOT" && "$PYTHON" -m storage.schema --create
  )
  revoke_database_rights
}

# Rights of a job account on a whole database (an earlier payscore gave the flow's account every
# row of it): taken away once its rights per table are there.
revoke_database_rights() {
  local job_users user quoted=""
  job_users=$(export_account_settings && cd "$ROOT" && "$PYTHON" -m storage.accounts --job-users)
  for user in $job_users; do quoted+="${quoted:+,}'$user'"; done
  [ -n "$quoted" ] || return 0
  mysql_root -N -r -e "SELECT User, Host, Db, Grant_priv FROM mysql.db WHERE User IN ($quoted)" |
    while IFS=$'\t' read -r user host db grant; do
      log "taking the rights on the whole database $db from '$user'@'$host'"
      [ "$grant" = Y ] && printf 'REVOKE GRANT OPTION ON `%s`.* FROM '"'%s'@'%s'"';\n' "$db" "$user" "$host"
      printf 'REVOKE ALL PRIVILEGES ON `%s`.* FROM '"'%s'@'%s'"';\n' "$db" "$user" "$host"
    done | mysql_root
}

# A drill of what DBAs' tools do when they apply an account's grants again: every right of the
# flow's account (at every host, on every database) revoked, and the same rights (SHOW GRANTS,
# as they were) granted SECONDS later. ops/services.sh itself never does this (see
# mysql_accounts); the outage tests check that a flow rides it out.
reset_flow_grants() {
  local seconds=${1:-0} hosts host grants
  IFS=, read -r -a hosts <<<"$MYSQL_HOSTS"
  log "resetting the grants of $DB_USER$( ((seconds > 0)) && echo " (for $seconds s without them)")"
  grants=$(for host in "${hosts[@]}"; do
    mysql_root -N -B -r -e "SHOW GRANTS FOR '$DB_USER'@'$host'" | grep -v '^GRANT USAGE ON \*\.\* ' || true
  done)
  for host in "${hosts[@]}"; do
    mysql_root -e "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '$DB_USER'@'$host'"
  done
  if ((seconds > 0)); then
    # As a restart does: a connection keeps the database access it had, a new one is refused
    # (1044), and its statements too (1142).
    for host in "${hosts[@]}"; do mysql_root -e "KILL CONNECTION USER '$DB_USER'@'$host'"; done
    sleep "$seconds"
  fi
  [ -z "$grants" ] || sed 's/$/;/' <<<"$grants" | mysql_root
}

mysql_down() {
  if [ -f "$MYSQL_PIDFILE" ] || port_open "$MYSQL_PORT"; then
    log "stopping mariadb"
    as_root start-stop-daemon --stop --oknodo --retry 30 --pidfile "$MYSQL_PIDFILE" \
      --exec /usr/sbin/mariadbd >/dev/null || true
    as_root rm -f "$MYSQL_PIDFILE"
  fi
}

# ---------------------------------------------------------------- topics
topics_up() {
  [ -x "$PYTHON" ] || die "$PYTHON not found: run 'bash ops/bootstrap.sh' first to create the virtualenv"
  (
    export PAYSCORE_KAFKA_BROKERS="127.0.0.1:$(kafka_client_port)"
    if [ "$KAFKA_AUTH_ONLY" = 1 ]; then export PAYSCORE_KAFKA_CONFIG_FILE="$KAFKA_HOME/admin.properties"; fi
    cd "$ROOT" && "$PYTHON" ops/create_topics.py
  )
}

status() {
  local port
  port=$(kafka_client_port)
  if kafka_pid >/dev/null && port_open "$port"; then
    echo "kafka: running (pid $(kafka_pid), 127.0.0.1:$port$([ "$KAFKA_AUTH_ONLY" = 1 ] && echo ', SASL logins only'))"
  else
    echo "kafka: stopped"
  fi
  if port_open "$MYSQL_PORT"; then echo "mariadb: running (127.0.0.1:$MYSQL_PORT)"; else echo "mariadb: stopped"; fi
}

USAGE="usage: bash ops/services.sh up|down|status|accounts|tables|mysql-down|mysql-up|kafka-down|kafka-up|kafka-install|restart-mysql|restart-kafka|reset-grants [SECONDS]"
MOST_SECONDS=3600

# The arguments, checked before anything stops or starts: `restart-mysql 5s` stopped MariaDB,
# then sleep refused "5s" and the script exited with MariaDB left down; a word after a command
# (`down now`, `restart-kafka 5 10`) was ignored. Refused with status 2 and the usage.
refuse() { printf '[services] refused: %s\n%s\n' "$1" "$USAGE" >&2; exit 2; }
shown() { printf '%q' "${1:0:40}"; }  # an argument quoted back: 40 characters, escaped
case "${1:-}" in
  up|down|status|accounts|tables|mysql-down|mysql-up|kafka-up|kafka-down|kafka-install)
    (($# <= 1)) || refuse "$1 takes no argument; got $(($# - 1)): $(shown "$2")" ;;
  restart-mysql|restart-kafka|reset-grants)
    (($# <= 2)) || refuse "$1 takes at most SECONDS; got $(($# - 1)) arguments"
    if (($# == 2)); then
      [[ "$2" =~ ^[0-9]{1,6}$ ]] && ((10#$2 <= MOST_SECONDS)) \
        || refuse "SECONDS: expected a whole number of seconds from 0 to $MOST_SECONDS; got $(shown "$2")"
      set -- "$1" "$((10#$2))"
    fi ;;
  *) refuse "expected a command; got $(shown "${1:-}")" ;;
esac

case "${1:-}" in
  up) mysql_up; kafka_up; topics_up; tables_up ;;
  down) kafka_down; mysql_down ;;
  status) status ;;
  accounts) mysql_accounts ;;
  tables) tables_up ;;
  restart-mysql) mysql_down; sleep "${2:-0}"; mysql_up ;;
  mysql-down) mysql_down ;;
  mysql-up) mysql_up ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  kafka-install) kafka_install ;;
  restart-kafka) kafka_down; sleep "${2:-0}"; kafka_up ;;
  reset-grants) reset_flow_grants "${2:-0}" ;;
  *) echo "$USAGE" >&2; exit 2 ;;
esac
