#!/usr/bin/env bash
# What `make demo`, `make test` and .ci/run need from the machine itself, in one place:
# Debian packages (looked up by the command each provides, so nothing installed is
# installed again) and a running Docker engine.
#
#   tools/host_deps.sh [--for "make demo"] [--pid-file FILE]
#
# As root: installs what is missing (apt-get) and starts the engine when nothing answers:
# docker.service on a machine run by systemd, else dockerd in its own session, so it
# outlives this script and the make run (and a Ctrl-C in it); its PID and log path are
# printed. --pid-file writes that PID to FILE (left empty when this run started no
# dockerd): .ci/run uses it to stop the engine it started, and only that one.
# As anyone else: changes nothing; when something is missing, prints the exact
# commands to run as root and exits 1. With everything present it does nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
for_cmd="make demo"
pid_file=

die() { echo "host_deps: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --for) for_cmd=${2:?--for needs the command being run, e.g. \"make demo\"}; shift 2 ;;
        --pid-file) pid_file=${2:?--pid-file needs a file name}; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[ -z "$pid_file" ] || : >"$pid_file"

# package:command. docker.io brings both the engine and the client.
# git: fab deploy names releases by commit; make: what .ci/run calls; openssh-server:
# its sshd -T checks the base role's sshd drop-in (the package's service is not needed);
# nodejs, npm: the real-client test runs Google's Node client (googleapis, npm ci into .cache);
# sudo: its visudo checks the deploy user's sudoers drop-in as the base role's validate step does.
pairs=(docker.io:dockerd docker.io:docker debootstrap:debootstrap chromium:chromium
       chromium-driver:chromedriver curl:curl wrk:wrk openssh-client:ssh openssh-server:sshd
       rsync:rsync git:git make:make nodejs:node npm:npm sudo:visudo)
missing=()
add_missing() { [[ " ${missing[*]-} " == *" $1 "* ]] || missing+=("$1"); }
# A user's PATH often lacks /usr/sbin, where sshd lives.
have() { command -v "$1" >/dev/null 2>&1 || { [ "$1" = sshd ] && [ -x /usr/sbin/sshd ]; }; }
for pair in "${pairs[@]}"; do
    have "${pair#*:}" || add_missing "${pair%%:*}"
done
# The Makefile makes its toolchain with `$(PYTHON) -m venv`; Debian ships ensurepip,
# which venv needs, separately in python3-venv.
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
    # A PYTHON= of the user's own is theirs to provide; the default is Debian's.
    [ "$python" != python3 ] || { add_missing python3; add_missing python3-venv; }
elif ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
    add_missing python3-venv
fi

engine_error() { docker info 2>&1 >/dev/null; }
engine_up() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
wait_engine() { for _ in $(seq 1 60); do engine_up && return 0; sleep 0.5; done; return 1; }

if [ "$(id -u)" -ne 0 ]; then
    problems=()
    fixes=()
    if ((${#missing[@]})); then
        problems+=("missing Debian packages: ${missing[*]}")
        fixes+=("sudo apt-get install -y --no-install-recommends ${missing[*]}")
    fi
    if ! engine_up; then
        if command -v docker >/dev/null 2>&1 && engine_error | grep -qi 'permission denied'; then
            problems+=("the Docker engine runs, but user $(id -un) may not use it")
            fixes+=("sudo usermod -aG docker $(id -un)   # then log in again")
        else
            problems+=("the Docker engine is not running")
            fixes+=("sudo sh -c 'dockerd >/var/log/dockerd.log 2>&1 &'")
        fi
    fi
    ((${#problems[@]})) || exit 0
    {
        echo "host_deps: \`$for_cmd\` needs what only root can set up on this machine:"
        printf '  - %s\n' "${problems[@]}"
        echo "Run:"
        printf '  %s\n' "${fixes[@]}"
        echo "or run the whole command as root: sudo $for_cmd"
    } >&2
    exit 1
fi

if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]}, and there is no apt-get to install them (this expects Debian 12)"
    echo "host_deps: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

engine_up && exit 0
# A machine run by systemd has docker.service from the package (perhaps still starting): use it.
if [ -d /run/systemd/system ] && systemctl cat docker.service >/dev/null 2>&1; then
    echo "host_deps: starting docker.service (systemd)"
    systemctl start docker.service
    wait_engine || die "docker.service started but the engine does not answer within 30 s (journalctl -u docker.service)"
    echo "host_deps: the Docker engine runs as docker.service (log: journalctl -u docker.service); it keeps running"
    exit 0
fi
mkdir -p "$here/.cache"
log=$here/.cache/dockerd.log
echo "host_deps: starting dockerd (log $log)"
# Its own session: a Ctrl-C in make (sent to make's process group) does not reach it.
setsid dockerd >"$log" 2>&1 </dev/null &
pid=$!
if ! wait_engine; then
    tail -n 30 "$log" >&2 || true
    kill "$pid" 2>/dev/null || true
    die "dockerd did not answer within 30 s (log $log)"
fi
# Alive and not a zombie (an exited child this shell has not reaped yet still answers kill -0).
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat")" != Z ]; }
if ! alive "$pid"; then
    # Another engine came up meanwhile (ours exited: see its log); not ours to stop.
    echo "host_deps: the Docker engine answers, but it is not the dockerd started here (that one exited; log $log)"
    exit 0
fi
[ -z "$pid_file" ] || echo "$pid" >"$pid_file"
echo "host_deps: dockerd is running (PID $pid, log $log); it keeps running after this run: stop it with \`kill $pid\`"
