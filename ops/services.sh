#!/usr/bin/env bash
# Local services for payscore, without Docker: an Apache Kafka broker (KRaft, one node) from Maven
# Central jars and MariaDB from Debian's packages, both on 127.0.0.1.
#
#   bash ops/services.sh up       install what is missing, start both, create the database, user and topics
#   bash ops/services.sh down     stop both (data is kept under .services/)
#   bash ops/services.sh status   say what runs
#   bash ops/services.sh mysql-down|mysql-up   stop or start MariaDB alone
#   bash ops/services.sh restart-mysql|restart-kafka [SECONDS]
#                                 stop one service, keep it down SECONDS (default 0), start it
#                                 again (outage drills; the chaos tests use them)
#   bash ops/services.sh reset-grants [SECONDS]
#                                 revoke the flow user's grants, drop its connections (as a
#                                 restart does) and grant them again SECONDS later (a drill of
#                                 grants re-applied by a DBA's tool; 0: no drop, no wait)
#
# A private MariaDB beside the shared one (for drills that stop and start it):
#   SERVICES_MYSQL_DATADIR=/work/drill-mysql/data SERVICES_MYSQL_PORT=3310 bash ops/services.sh mysql-up
# runs a second server with that data folder (initialised if it is new), that port, and its socket,
# pid file and error log beside the data folder (SERVICES_MYSQL_SOCKET, SERVICES_MYSQL_PIDFILE
# choose others); the same server settings, TLS, accounts and database as the default one.
# mysql-down, mysql-up and restart-mysql then stop and start that server alone.
#
# Idempotent: `up` on running services only checks them. Settings come from the environment with the
# defaults below (the same defaults the application's config uses).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.services"
KAFKA_HOME="$STATE/kafka"
KAFKA_PORT=9092
MYSQL_PORT=${SERVICES_MYSQL_PORT:-3306}
DB_NAME=${SERVICES_MYSQL_DATABASE:-payscore}
DB_USER=${SERVICES_MYSQL_USER:-payscore}
DB_PASSWORD=${SERVICES_MYSQL_PASSWORD:-payscore}
ADMIN_USER=${SERVICES_MYSQL_ADMIN_USER:-payscore_admin}
ADMIN_PASSWORD=${SERVICES_MYSQL_ADMIN_PASSWORD:-payscore_admin}
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
  MYSQL_SOCKET=${SERVICES_MYSQL_SOCKET:-}
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
  if [ -f "$KAFKA_HOME/lib/.complete" ]; then return; fi
  command -v java >/dev/null || die "java not found: install a JDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven)"
  log "resolving the Kafka broker from Maven Central into $KAFKA_HOME/lib"
  rm -rf "$KAFKA_HOME/lib"
  mvn -q -B -U -f "$ROOT/ops/kafka/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/lib"
  touch "$KAFKA_HOME/lib/.complete"
}

kafka_pid() { [ -f "$KAFKA_HOME/kafka.pid" ] && kill -0 "$(cat "$KAFKA_HOME/kafka.pid")" 2>/dev/null && cat "$KAFKA_HOME/kafka.pid"; }

kafka_up() {
  if kafka_pid >/dev/null && port_open $KAFKA_PORT; then log "kafka already running"; return; fi
  port_open $KAFKA_PORT && die "127.0.0.1:$KAFKA_PORT is taken by a process this script did not start"
  kafka_install
  mkdir -p "$KAFKA_HOME/data" "$KAFKA_HOME/logs"
  { cat "$ROOT/ops/kafka/server.properties"; echo "log.dirs=$KAFKA_HOME/data"; } > "$KAFKA_HOME/server.properties"
  local cp="$KAFKA_HOME/lib/*"
  if [ ! -f "$KAFKA_HOME/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    log "formatting the KRaft log folder (cluster $cluster_id)"
    java -cp "$cp" kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$KAFKA_HOME/server.properties" >"$KAFKA_HOME/logs/format.log" 2>&1 \
      || { cat "$KAFKA_HOME/logs/format.log" >&2; die "formatting the Kafka log folder failed"; }
  fi
  log "starting kafka"
  setsid nohup java -Xms1G -Xmx1G -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$ROOT/ops/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_HOME/logs" \
    -cp "$cp" kafka.Kafka "$KAFKA_HOME/server.properties" \
    >"$KAFKA_HOME/logs/stdout.log" 2>&1 &
  echo $! >"$KAFKA_HOME/kafka.pid"
  # The client port opens only once the broker can serve.
  wait_for_port $KAFKA_PORT kafka 120 "$KAFKA_HOME/logs/server.log"
  log "kafka ready on 127.0.0.1:$KAFKA_PORT"
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
    wait_for_port "$MYSQL_PORT" mariadb 60 "$MYSQL_ERROR_LOG"
    for _ in $(seq 1 60); do mysql_root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  # Two accounts: the admin creates and alters tables (storage.schema --create, the tests'
  # databases payscore_*); the flow's user only reads and writes rows.
  mysql_root <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$ADMIN_USER'@'127.0.0.1' IDENTIFIED BY '$ADMIN_PASSWORD';
CREATE USER IF NOT EXISTS '$ADMIN_USER'@'localhost' IDENTIFIED BY '$ADMIN_PASSWORD';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$ADMIN_USER'@'127.0.0.1', '$ADMIN_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`payscore\\_%\`.* TO '$ADMIN_USER'@'127.0.0.1', '$ADMIN_USER'@'localhost';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
SQL
  # The flow's grants are reset (REVOKE ALL, then GRANT) only when they are not these already:
  # between the two statements the flow's new connections are refused (1044), and a flow
  # reconnecting right after a restart met that window (issue 20, benchmarks/outage_drill.py).
  if [ "$(flow_grants_wrong)" != 0 ]; then
    reset_flow_grants 0
  fi
  mysql_root -e 'FLUSH PRIVILEGES'
  log "mariadb ready on 127.0.0.1:$MYSQL_PORT (database $DB_NAME; flow user $DB_USER, admin $ADMIN_USER)"
}

reset_flow_grants() {  # REVOKE ALL, then (SECONDS later) the flow's GRANTs, as DBAs' tools do
  log "resetting the grants of $DB_USER$( (($1 > 0)) && echo " (for $1 s without them)")"
  mysql_root -e "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost'"
  # A drill (SECONDS > 0) drops the account's connections too, as a restart does: a connection
  # keeps the database access it had, a new one is refused (1044).
  (($1 > 0)) && mysql_root -e "KILL CONNECTION USER '$DB_USER'@'127.0.0.1'; KILL CONNECTION USER '$DB_USER'@'localhost'"
  sleep "$1"
  mysql_root <<SQL
GRANT SELECT, INSERT, UPDATE, DELETE ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`payscore\\_%\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
SQL
}

flow_grants_wrong() {  # 0 when the flow's user holds exactly its grants, else how far off
  local who="'$DB_USER'@'127.0.0.1'\", \"'$DB_USER'@'localhost'"
  mysql_root -N <<SQL
SELECT (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES
         WHERE GRANTEE IN ("$who") AND PRIVILEGE_TYPE <> 'USAGE')
     + (SELECT COUNT(*) FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN ("$who"))
     + (SELECT COUNT(*) FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE IN ("$who"))
     + ABS(16 - (SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES
                 WHERE GRANTEE IN ("$who")
                   AND PRIVILEGE_TYPE IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
                   AND IS_GRANTABLE = 'NO'
                   AND TABLE_SCHEMA IN ('$DB_NAME', CONCAT('payscore', CHAR(92), '_%'))))
     + (SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES
         WHERE GRANTEE IN ("$who")
           AND NOT (PRIVILEGE_TYPE IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
                    AND IS_GRANTABLE = 'NO'
                    AND TABLE_SCHEMA IN ('$DB_NAME', CONCAT('payscore', CHAR(92), '_%'))));
SQL
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
  (cd "$ROOT" && "$PYTHON" ops/create_topics.py)
}

status() {
  if kafka_pid >/dev/null && port_open $KAFKA_PORT; then echo "kafka: running (pid $(kafka_pid), 127.0.0.1:$KAFKA_PORT)"; else echo "kafka: stopped"; fi
  if port_open "$MYSQL_PORT"; then echo "mariadb: running (127.0.0.1:$MYSQL_PORT)"; else echo "mariadb: stopped"; fi
}

case "${1:-}" in
  up) mysql_up; kafka_up; topics_up ;;
  down) kafka_down; mysql_down ;;
  status) status ;;
  restart-mysql) mysql_down; sleep "${2:-0}"; mysql_up ;;
  mysql-down) mysql_down ;;
  mysql-up) mysql_up ;;
  restart-kafka) kafka_down; sleep "${2:-0}"; kafka_up ;;
  reset-grants) reset_flow_grants "${2:-0}"; mysql_root -e 'FLUSH PRIVILEGES' ;;
  *) echo "usage: bash ops/services.sh up|down|status|mysql-down|mysql-up|restart-mysql|restart-kafka|reset-grants [SECONDS]" >&2; exit 2 ;;
esac
