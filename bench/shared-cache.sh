#!/usr/bin/env bash
# bench/shared-cache.sh — what the shared piece cache buys: the same file read
# by one btfs mount alone, then by three mounts sharing one cache directory at
# once, each from a fresh cache, with aria2c as the only seeder. Reports the
# wall time of each run (from starting btfs to the end of the last reader)
# and what the seeder uploaded meanwhile, as a multiple of the torrent's
# size (aria2c's own count, by JSON-RPC).
#
#   bench/shared-cache.sh [SIZE_MIB [ROUNDS]]      (default 256 MiB, 2 rounds)
#
# SEED_RATE caps the seeder's upload (aria2c's --max-overall-upload-limit,
# e.g. SEED_RATE=50M for 400 Mbit/s); MOUNTS_N is the number of mounts of the
# shared run (default 3). The CPU column is the sum of the btfs processes'
# user+system time.
#
# Root only (FUSE mounts, a network namespace). It re-runs itself inside
# `unshare -n -m` with only loopback up: no packet can leave the machine, and
# the mounts stay out of the host's mount table. Needs go, aria2c,
# opentracker, fusermount3, curl. The targets: three ≤ 1.3 × one; upload of
# the three ≤ 1.1 × the torrent.
set -euo pipefail

if [[ "${BTFS_BENCH_NS:-}" != 1 ]]; then
	[[ $(id -u) == 0 ]] || { echo "bench/shared-cache.sh: run as root" >&2; exit 1; }
	exec unshare -n -m --propagation private env BTFS_BENCH_NS=1 "$0" "$@"
fi
ip link set lo up

SIZE_MIB=${1:-256}
ROUNDS=${2:-2}
PIECE=${PIECE:-256KiB}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/btfs-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
MOUNTS=()

cleanup() {
	for mp in "${MOUNTS[@]}"; do fusermount3 -u "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

say() { printf '%s\n' "$*" >&2; }

# --- build, data, torrent
say "== building btfs"
(cd "$REPO" && go build -o "$WORK/btfs" ./cmd/btfs)
BTFS=$WORK/btfs
mkdir -p "$WORK/seed" "$WORK/tracker"
say "== $SIZE_MIB MiB of random data, pieces of $PIECE"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$WORK/seed/bench.bin"
TRACKER=http://127.0.0.1:6969/announce
"$BTFS" create -piece-length "$PIECE" -t "$TRACKER" -o "$WORK/bench.torrent" "$WORK/seed/bench.bin" >"$WORK/create.out"
IH=$(grep -o 'info-hash [0-9a-f]*' "$WORK/create.out" | cut -d' ' -f2)
SIZE=$(stat -c %s "$WORK/seed/bench.bin")

# --- tracker (whitelist-only, refuses root; loads the whitelist asynchronously)
echo "$IH" >"$WORK/tracker/wl.txt"
opentracker -i 127.0.0.1 -p 6969 -P 6969 -d "$WORK/tracker" -u nobody -w /wl.txt >"$WORK/tracker.log" 2>&1 &
PIDS+=($!)
ih_url=$(printf '%s' "$IH" | sed 's/../%&/g')
for _ in $(seq 100); do
	if curl -fsS "$TRACKER?info_hash=$ih_url&peer_id=-BENCH-000000000000&port=1&uploaded=0&downloaded=0&left=0&compact=1&event=stopped" 2>/dev/null |
		grep -q interval; then break; fi
	sleep 0.1
done

# --- the seeder, with its RPC for the upload count
aria2c --no-conf=true --seed-ratio=0.0 --bt-seed-unverified=true --check-integrity=false \
	--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false --disable-ipv6=true \
	--interface=127.0.0.2 --listen-port=51413 --enable-rpc=true --rpc-listen-port=6800 --rpc-listen-all=false \
	--console-log-level=warn --summary-interval=0 --show-console-readout=false \
	--max-overall-upload-limit="${SEED_RATE:-0}" \
	-d "$WORK/seed" "$WORK/bench.torrent" >"$WORK/aria2.log" 2>&1 &
PIDS+=($!)
uploaded() {
	curl -fsS -d '{"jsonrpc":"2.0","id":1,"method":"aria2.tellActive","params":[["uploadLength"]]}' \
		http://127.0.0.1:6800/jsonrpc | grep -o '"uploadLength":"[0-9]*"' | grep -o '[0-9]*' | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
for _ in $(seq 100); do uploaded >/dev/null 2>&1 && break; sleep 0.1; done
sleep 2 # its first announce

# run N: N mounts on one fresh cache read bench.bin at once, each as soon as
# its mount is up; prints "seconds uploaded_bytes", both counted from before
# the first btfs starts (a mount starts fetching at once) to the last
# reader's end.
run() {
	local n=$1 cache pids=() mps=() readers=() start end up0 up1 k mp
	cache=$(mktemp -d "$WORK/cache.XXXX")
	for k in $(seq "$n"); do
		mp=$(mktemp -d "$WORK/mnt.XXXX")
		mps+=("$mp")
		MOUNTS+=("$mp")
	done
	up0=$(uploaded)
	start=$(date +%s.%N)
	for mp in "${mps[@]}"; do
		"$BTFS" mount -quiet -no-dht -listen 127.0.0.1:0 -cache-dir "$cache" "$WORK/bench.torrent" "$mp" >"$mp.log" 2>&1 &
		pids+=($!)
	done
	for mp in "${mps[@]}"; do
		(
			for _ in $(seq 400); do [[ -e "$mp/bench.bin" ]] && break; sleep 0.01; done
			cat "$mp/bench.bin" >/dev/null
		) &
		readers+=($!)
	done
	for r in "${readers[@]}"; do wait "$r"; done
	end=$(date +%s.%N)
	up1=$(uploaded)
	local cpu=0 ticks
	ticks=$(getconf CLK_TCK)
	for p in "${pids[@]}"; do
		cpu=$(awk -v c="$cpu" -v t="$ticks" '{ print c + ($14 + $15) / t }' "/proc/$p/stat")
	done
	# Checked after the clock stopped (the kernel's page cache of each
	# mount serves most of it again).
	for mp in "${mps[@]}"; do
		cmp -s "$mp/bench.bin" "$WORK/seed/bench.bin" || { say "MISMATCH in $mp"; exit 1; }
	done
	for p in "${pids[@]}"; do kill -TERM "$p"; done
	for p in "${pids[@]}"; do wait "$p" || true; done
	rm -rf "$cache"
	echo "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }') $((up1 - up0)) $cpu"
}

N=${MOUNTS_N:-3}
say "== reading $SIZE_MIB MiB: 1 mount alone vs $N mounts sharing one cache, $ROUNDS rounds, seeder cap ${SEED_RATE:-none}"
printf '%-8s %6s %10s %14s %10s\n' round mounts seconds "upload/size" cpu-s
for r in $(seq "$ROUNDS"); do
	for n in 1 "$N"; do
		read -r secs up cpu < <(run "$n")
		printf '%-8s %6d %10.2f %14.3f %10.2f\n' "$r" "$n" "$secs" "$(awk -v u="$up" -v s="$SIZE" 'BEGIN { print u / s }')" "$cpu"
		echo "$n $secs $up $cpu" >>"$WORK/results"
	done
done
awk -v size="$SIZE" -v n="$N" '
	{ t[$1] += $2; u[$1] += $3; p[$1] += $4; c[$1]++ }
	END {
		one = t[1] / c[1]; many = t[n] / c[n]
		printf "mean: one %.2f s, %d: %.2f s: ratio = %.2f; upload of the %d = %.3f × the torrent; cpu one %.2f s, %d: %.2f s (ratio %.2f)\n",
			one, n, many, many / one, n, u[n] / c[n] / size, p[1] / c[1], n, p[n] / c[n], (p[n] / c[n]) / (p[1] / c[1])
	}' "$WORK/results"
