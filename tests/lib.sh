# Set-up steps shared by the test command and the benchmarks. Sourced, not run.

step() {
  local title=$1; shift
  printf '\n==> %s\n' "$title"
  "$@"
}

# A virtual environment in .venv/ with the pinned requirements; reinstalled when they change.
ensure_venv() {
  local requirements=$1 stamp=.venv/.requirements-$(basename "$1" .txt)
  local want
  want=$(cat requirements*.txt | sha256sum | cut -c1-16)
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || {
      echo "python3 cannot create a virtual environment: apt-get install python3-venv" >&2; exit 1; }
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    step "installing $requirements into .venv" .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r "$requirements"
    echo "$want" >"$stamp"
  fi
}

ensure_package() {
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 && return
  step "installing $package" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $package >/dev/null"
}

# A Docker engine that answers; Debian's docker.io is installed and started when none does.
ensure_docker_engine() {
  docker info >/dev/null 2>&1 && return
  [ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || ensure_package dockerd docker.io
  echo "starting dockerd (log: /var/log/dockerd.log)"
  setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  echo "dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
  tail -20 /var/log/dockerd.log >&2
  exit 1
}
