#!/usr/bin/env bash
# Install, with apt-get, the programs the test suite runs (servers started privately, CLI tools).
# Quiet and quick when everything is present; `apt-get update` runs once, only if something is
# missing. Under CI=true a tool that cannot be installed fails the run.
#
# To add a tool: one "command package" line below. The command is a name looked up on PATH, or a
# path (globs allowed) for programs Debian keeps off PATH.
set -u

TOOLS=(
  "openssl openssl"
  "/usr/lib/postgresql/*/bin/initdb postgresql"
  "/usr/lib/postgresql/*/bin/pg_ctl postgresql"
  "/usr/sbin/mariadbd mariadb-server"
  "redis-server redis-server"
  "rabbitmq-server rabbitmq-server"
  "mosquitto mosquitto"
  "mosquitto_passwd mosquitto"
  "nats-server nats-server"
  "prometheus prometheus"
  "promtool prometheus"
  "/usr/lib/nagios/plugins/check_dummy monitoring-plugins-basic"
  "chromium chromium"
  "etcd etcd-server"
  "etcdctl etcd-client"
  "haproxy haproxy"
  "wrk wrk"
)

present() {  # command-or-path-glob
  case $1 in
    */*) compgen -G "$1" >/dev/null ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

missing=()
for pair in "${TOOLS[@]}"; do
  read -r command package <<<"$pair"
  if ! present "$command"; then
    case " ${missing[*]-} " in *" $package "*) ;; *) missing+=("$package") ;; esac
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "tools: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if out=$({ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } 2>&1); then
  status=0
  for pair in "${TOOLS[@]}"; do
    read -r command package <<<"$pair"
    present "$command" || { echo "tools: $command still missing after installing $package" >&2; status=1; }
  done
else
  printf '%s\n' "$out" | tail -n 20 >&2
  echo "tools: apt-get could not install ${missing[*]}" >&2
  status=1
fi
if [ "$status" -ne 0 ] && [ "${CI:-}" = "true" ]; then
  echo "tools: a tool is missing and CI=true" >&2
  exit 1
fi
exit 0
