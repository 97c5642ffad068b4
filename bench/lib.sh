# lib.sh: the shell pieces the bench scripts share. Source it; it defines
# functions and variables only.
#
#   bench_need CMD...                  fail unless every command is on PATH
#   bench_enter_ns SCRIPT ARGS...      re-run SCRIPT inside a private network,
#                                      mount and PID namespace (BENCH_INSIDE=1)
#   bench_build_and_enter SCRIPT ARGS... build btfs into a fresh work directory,
#                                      bench_enter_ns with BENCH_WORK, exit
#   bench_track PID / bench_untrack PID / bench_stop PID [GRACE]
#   bench_track_mount MNT / bench_unmount MNT
#   bench_cleanup                      stop every tracked PID, unmount every
#                                      tracked mount (the EXIT trap)
#   tracker_start DIR PORT HASH...     opentracker on 127.0.0.1:PORT (HTTP and
#                                      UDP), whitelisting HASH..., as user nobody
#   tracker_wait_seeders PORT HASH N   wait until the tracker counts N seeders
#   aria2_seed_start ...               an aria2c seeder (see below)
#   lt_seed_start ...                  a libtorrent seeder (see below)
#   mbps BYTES SECONDS                 10^6 bytes per second, one decimal
#   elapsed T0 T1                      T1 - T0 ($EPOCHREALTIME values), seconds
#
# Everything binds loopback addresses only, inside the namespace that
# bench_enter_ns makes: nothing can leave it, whatever a client's DHT, LSD
# or UPnP tries.

# BENCH_PIDS are the processes this script started and has not stopped yet;
# BENCH_MOUNTS the mount points that may hold a live mount.
BENCH_PIDS=()
BENCH_MOUNTS=()

bench_die() { echo "bench: $*" >&2; exit 1; }

bench_need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || bench_die "$c missing (apt-get install: see bench/README.md)"
  done
}

# bench_enter_ns runs SCRIPT ARGS... inside a new network namespace with only
# loopback up, a private mount namespace (FUSE mounts stay out of the
# host's table) and a PID namespace whose processes all die with it: even a
# SIGKILL of the bench leaves nothing running. BENCH_INSIDE=1 tells the
# script it is inside; the caller's environment is passed on. It returns
# the script's exit status.
bench_enter_ns() {
  local script=$1; shift
  BENCH_INSIDE=1 unshare -n -m --propagation private -p --fork --kill-child --mount-proc \
    bash -c 'ip link set lo up && exec bash "$0" "$@"' "$script" "$@"
}

# bench_build_and_enter SCRIPT ARGS... is the outer half of a bench script
# in the repository's bench/: it builds btfs into a fresh work directory
# (outside the namespace: the module cache may need the network), re-runs
# SCRIPT ARGS... through bench_enter_ns with BENCH_WORK set to that
# directory, removes it on exit and exits with the script's status. With
# BENCH_WORK_MODE set, the work directory gets that mode (755 where
# opentracker, as nobody, reads its whitelist below it).
bench_build_and_enter() {
  local script=$1 rc=0
  cd "$(dirname "$script")/.."
  work=$(mktemp -d /tmp/btfs-bench.XXXXXX)
  [ -z "${BENCH_WORK_MODE:-}" ] || chmod "$BENCH_WORK_MODE" "$work"
  trap 'rm -rf "$work"' EXIT
  go build -o "$work/btfs" ./cmd/btfs
  BENCH_WORK=$work bench_enter_ns "$@" || rc=$?
  exit "$rc"
}

bench_track() { BENCH_PIDS+=("$1"); }

bench_untrack() {
  local i
  for i in "${!BENCH_PIDS[@]}"; do
    [ "${BENCH_PIDS[$i]}" = "$1" ] && unset 'BENCH_PIDS[i]'
  done
  BENCH_PIDS=("${BENCH_PIDS[@]}")
}

# bench_alive PID: the process exists and is not a zombie.
bench_alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# bench_stop PID [GRACE]: SIGTERM, then SIGKILL after GRACE seconds (default
# 3), then reap it if it is our child. Only ever by PID.
bench_stop() {
  local pid=$1 grace=${2:-3} i
  if bench_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 100; i++)); do
      bench_alive "$pid" || break
      sleep 0.01
    done
    bench_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  bench_untrack "$pid"
}

bench_track_mount() { BENCH_MOUNTS+=("$1"); }

# bench_unmount MNT: fusermount3 -u, else a lazy unmount; never rm a
# directory that may hold a live mount.
bench_unmount() {
  local mnt=$1 i
  if mountpoint -q "$mnt" 2>/dev/null; then
    fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  elif [ -d "$mnt" ] && ! stat "$mnt" >/dev/null 2>&1; then
    umount -l "$mnt" 2>/dev/null || true # a dead FUSE server's "transport endpoint is not connected"
  fi
  for i in "${!BENCH_MOUNTS[@]}"; do
    [ "${BENCH_MOUNTS[$i]}" = "$mnt" ] && unset 'BENCH_MOUNTS[i]'
  done
  BENCH_MOUNTS=("${BENCH_MOUNTS[@]}")
}

# bench_cleanup stops everything tracked, newest first, then unmounts.
bench_cleanup() {
  local i
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    bench_stop "${BENCH_PIDS[$i]}" 2
  done
  for i in "${BENCH_MOUNTS[@]}"; do
    bench_unmount "$i"
  done
}

# tracker_url PORT HASH: an announce URL for HASH (hex) that the tracker
# takes out again at once (event=stopped): a probe, registering nobody.
tracker_probe_url() {
  local port=$1 ih
  ih=$(sed 's/../%&/g' <<<"$2")
  echo "http://127.0.0.1:$port/announce?info_hash=$ih&peer_id=-BENCH-0000000000000&port=1&left=0&event=stopped&compact=1"
}

# tracker_start DIR PORT HASH...: opentracker serving HTTP and UDP on
# 127.0.0.1:PORT, whitelisting HASH... (hex info-hashes). It refuses to run
# as root, and as root it would chroot and then drop privileges; so it is
# started as user nobody directly: unprivileged, it skips the chroot, and
# the whitelist is given by absolute path (DIR and its parents must be
# readable by nobody). opentracker loads the whitelist asynchronously:
# this returns once every hash is accepted (a client refused once, like
# aria2c, waits minutes before it asks again). Sets TRACKER_PID.
tracker_start() {
  local dir=$1 port=$2 h i ok
  shift 2
  mkdir -p "$dir"
  printf '%s\n' "$@" >"$dir/wl.txt"
  chmod 755 "$dir"
  chmod 644 "$dir/wl.txt"
  setpriv --reuid=nobody --regid=nogroup --clear-groups \
    opentracker -i 127.0.0.1 -p "$port" -P "$port" -d "$dir" -u nobody -w "$dir/wl.txt" \
    >"$dir/opentracker.log" 2>&1 &
  TRACKER_PID=$!
  bench_track "$TRACKER_PID"
  for h in "$@"; do
    ok=
    for ((i = 0; i < 300; i++)); do
      bench_alive "$TRACKER_PID" || bench_die "opentracker exited: $(cat "$dir/opentracker.log")"
      if curl -s --max-time 2 "$(tracker_probe_url "$port" "$h")" 2>/dev/null | grep -q interval; then
        ok=1
        break
      fi
      sleep 0.02
    done
    [ -n "$ok" ] || bench_die "opentracker never accepted $h"
  done
}

# tracker_wait_seeders PORT HASH N: wait (up to 20 s) until the tracker
# counts at least N seeders of HASH.
tracker_wait_seeders() {
  local port=$1 h=$2 n=$3 i c
  for ((i = 0; i < 1000; i++)); do
    c=$(curl -s --max-time 2 "$(tracker_probe_url "$port" "$h")" 2>/dev/null |
      grep -ao '8:completei[0-9]*e' | head -1 | sed 's/^8:completei\([0-9]*\)e$/\1/')
    [ "${c:-0}" -ge "$n" ] && return 0
    sleep 0.02
  done
  bench_die "the tracker never counted $n seeders of $h"
}

# ARIA_COMMON are the aria2c options of every instance: no DHT, LSD, PEX
# or IPv6, no config file, quiet.
ARIA_COMMON=(--no-conf=true --enable-dht=false --enable-dht6=false --bt-enable-lpd=false
  --enable-peer-exchange=false --disable-ipv6=true --console-log-level=warn
  --summary-interval=0 --show-console-readout=false)

# aria2_seed_start IP PORT RPCPORT SECRET LOG TORRENT:DIR...: one aria2c on
# IP:PORT seeding each TORRENT from its DIR (holding the content under the
# torrent's name), trusting the data without hashing it, forever, with
# JSON-RPC on 127.0.0.1:RPCPORT. Start it only once the tracker accepts the
# torrents: after a refused announce aria2c waits about 2 minutes. Sets
# ARIA_PID; returns once its RPC answers.
aria2_seed_start() {
  local ip=$1 port=$2 rpc=$3 secret=$4 log=$5 spec input i
  shift 5
  input=$log.input
  : >"$input"
  for spec in "$@"; do
    printf '%s\n  dir=%s\n' "${spec%%:*}" "${spec#*:}" >>"$input"
  done
  aria2c "${ARIA_COMMON[@]}" --interface="$ip" --listen-port="$port" \
    --enable-rpc=true --rpc-listen-port="$rpc" --rpc-listen-all=false --rpc-secret="$secret" \
    --max-concurrent-downloads=16 --seed-ratio=0.0 --bt-seed-unverified=true --check-integrity=false \
    -i "$input" >"$log" 2>&1 &
  ARIA_PID=$!
  bench_track "$ARIA_PID"
  for ((i = 0; i < 500; i++)); do
    bench_alive "$ARIA_PID" || bench_die "aria2c exited: $(cat "$log")"
    curl -s --max-time 2 -d '{"jsonrpc":"2.0","id":"b","method":"aria2.getVersion","params":["token:'"$secret"'"]}' \
      "http://127.0.0.1:$rpc/jsonrpc" 2>/dev/null | grep -q version && return 0
    sleep 0.02
  done
  bench_die "aria2c RPC never answered"
}

# lt_seed_start PY MEASURE IP PORT STATS LOG TORRENT:DIR...: a libtorrent
# seeder (measure.py lt-seed, with the Python PY) on IP:PORT seeding each
# TORRENT from its DIR, TCP only, writing its upload counts to STATS. Like
# aria2c, start it once the tracker accepts the torrents. Sets LT_SEED_PID;
# returns once the seeder runs (its STATS file exists).
lt_seed_start() {
  local py=$1 measure=$2 ip=$3 port=$4 stats=$5 log=$6 i
  shift 6
  rm -f "$stats"
  "$py" "$measure" lt-seed "$ip" "$port" "$stats" "$@" >"$log" 2>&1 &
  LT_SEED_PID=$!
  bench_track "$LT_SEED_PID"
  for ((i = 0; i < 500; i++)); do
    bench_alive "$LT_SEED_PID" || bench_die "libtorrent seeder exited: $(cat "$log")"
    [ -s "$stats" ] && return 0
    sleep 0.02
  done
  bench_die "libtorrent seeder never started"
}

mbps() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / s / 1e6 }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
