# Shared by hack/up.sh and hack/down.sh: background processes with pid files in $STATE.
# Needs STATE, HOST, log and die from the sourcing script.

# True while a process exists and is not a zombie.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# Prints the pid of process <name> if its pid file names a live process that still runs the
# program we started (guards against pid reuse).
process_pid() {
  local name=$1 file pid program
  file=$STATE/$name.pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  case $name in
    runner|seed) program=modelrunner;;
    operator) program=modeloperator;;
  esac
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$program" || return 1
  echo "$pid"
}

start_process() { # start_process <name> <command...>
  local name=$1; shift
  # setsid: a session (and process group) of its own, so it outlives this shell and `make down`
  # can stop it with everything it started.
  setsid "$@" >>"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
}

stop_process() { # stop_process <name>: SIGTERM to its process group, SIGKILL after 20 s
  local name=$1 pid i
  [[ -d $STATE ]] || return 0
  if ! pid=$(process_pid "$name"); then
    rm -f "$STATE/$name.pid"
    return 0
  fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for 20s; sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  # Children left in its process group (none expected) go too.
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$STATE/$name.pid"
  log "stopped $name (pid $pid)"
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# pick_port <wanted> [taken]: <wanted> if free (0: any), else a free port the kernel picks.
pick_port() {
  local wanted=$1 taken=${2:-}
  if [[ $wanted != 0 && $wanted != "$taken" ]] && ! port_in_use "$wanted"; then
    echo "$wanted"; return
  fi
  [[ $wanted != 0 ]] && log "port $wanted is taken; using a free one"
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until <seconds> <what> <process name> <command...>: fails early when the process died.
wait_until() {
  local timeout=$1 what=$2 name=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! process_pid "$name" >/dev/null; then
      tail -n 30 "$STATE/$name.log" >&2 || true
      die "$name exited while waiting for $what; log: $STATE/$name.log"
    fi
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}
