#!/usr/bin/env bash
# http.sh — streaming over HTTP next to streaming through the mount: ffprobe,
# and ffmpeg seeking to 5:00 (`ffmpeg -ss 300 -i SRC -frames:v 1`), on a
# 10-minute 720p MP4 whose moov atom is at the end, each on a fresh mount
# with an empty cache: once through the file's URL (`btfs mount -http`),
# once through its path in the mount. Prints seconds per run and the
# HTTP/mount ratios (the target is at most 1.2).
#
# Usage (as root: it needs a private network namespace):
#   bench/http.sh [ROUNDS]                       default: 3 rounds
#
# Everything runs inside `unshare -n` with only loopback up: one
# python3-libtorrent seeder (measure.py lt-seed, TCP only, seed mode; it
# answers a handshake at once, unlike aria2c's 1 s tick) on 127.0.0.2,
# btfs dialling it with -peer and no tracker. The video is bench/run's
# (`$BTFS_BENCH_DATA`, default /var/tmp/btfs-bench: data/video-600/f.mp4),
# encoded once (~80 s) when missing. Each command is timed from when the
# mount (and its HTTP server) is ready, so the two columns differ only in
# the path the bytes take: FUSE, or HTTP Range requests through the same
# stream.Reader.
set -euo pipefail

rounds=${1:-3}

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
py=/usr/bin/python3 # Debian's: it has libtorrent
data=${BTFS_BENCH_DATA:-/var/tmp/btfs-bench}/data/video-600

if [ "${BENCH_INSIDE:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || bench_die "http: run as root (unshare -n)"
  bench_need go unshare ip ffmpeg ffprobe fusermount3 curl "$py"
  if [ ! -s "$data/f.mp4" ]; then
    echo "bench: encoding a 600 s 720p H.264 MP4, moov at the end (~80 s)" >&2
    mkdir -p "$data"
    ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine \
      -t 600 -c:v libx264 -preset ultrafast -b:v 2M -c:a aac -f mp4 "$data/.f.mp4"
    mv "$data/.f.mp4" "$data/f.mp4"
  fi
  BENCH_DATA_DIR=$data bench_build_and_enter "$0" "$rounds"
fi

work=$BENCH_WORK
data=$BENCH_DATA_DIR
trap bench_cleanup EXIT

"$work/btfs" create -piece-length 1MiB -o "$work/video.torrent" "$data/f.mp4" >/dev/null
LT_SEED_ENC=off lt_seed_start "$py" "$here/measure.py" 127.0.0.2 6881 "$work/seed.stats" "$work/seed.log" \
  "$work/video.torrent:$data"
ih=$("$work/btfs" info "$work/video.torrent" | awk '/info-hash/ {print $NF; exit}')
[ -n "$ih" ] || bench_die "no info-hash from btfs info"

TIMEFORMAT='%R'
# start_mount: a fresh mount with an empty cache and -http on a free
# loopback port; sets MNT, PID and URL (the file's) once both are ready.
start_mount() {
  local cache=$work/cache i
  MNT=$work/mnt
  rm -rf "$cache"
  mkdir -p "$MNT" "$cache"
  "$work/btfs" mount -no-dht -no-lsd -listen "" -no-trackers -peer 127.0.0.2:6881 -cache-dir "$cache" \
    -http 127.0.0.1:0 "$work/video.torrent" "$MNT" >"$work/mount.out" 2>&1 &
  PID=$!
  bench_track "$PID"
  bench_track_mount "$MNT"
  URL=
  for ((i = 0; i < 1000; i++)); do
    bench_alive "$PID" || bench_die "btfs mount exited: $(tail -5 "$work/mount.out")"
    if [ -e "$MNT/f.mp4" ] && grep -q "serving HTTP at" "$work/mount.out"; then
      URL=$(sed -n 's|.*serving HTTP at \(http://[^/ ]*/\).*|\1|p' "$work/mount.out" | head -1)t/$ih/f.mp4
      break
    fi
    sleep 0.01
  done
  [ -n "$URL" ] || bench_die "btfs mount not ready: $(tail -5 "$work/mount.out")"
}
stop_mount() {
  bench_stop "$PID" 10
  bench_unmount "$MNT"
}
# timed CMD...: run CMD on a fresh mount; prints its wall seconds. SRC in
# CMD is replaced by the URL (http) or the path (mount), per $VIA.
timed() {
  local t args=() a src
  start_mount
  src=$MNT/f.mp4
  [ "$VIA" = http ] && src=$URL
  for a in "$@"; do args+=("${a//SRC/$src}"); done
  t=$( { time "${args[@]}" >"$work/cmd.out" 2>&1; } 2>&1 ) || bench_die "$VIA: ${args[*]} failed: $(tail -3 "$work/cmd.out")"
  stop_mount
  echo "$t"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "video: $(du -m "$data/f.mp4" | cut -f1) MB, 600 s, moov at the end, 1 MiB pieces; one libtorrent seeder on loopback; $(nproc) CPUs"
printf '%-6s %-10s %9s %9s %6s\n' round command http_s mount_s ratio
for r in $(seq "$rounds"); do
  for cmd in ffprobe seek300; do
    case $cmd in
      ffprobe) c=(ffprobe -v error -show_format -show_streams SRC) ;;
      seek300) c=(ffmpeg -nostdin -v error -ss 300 -i SRC -frames:v 1 -f null -) ;;
    esac
    h=$(VIA=http timed "${c[@]}")
    m=$(VIA=mount timed "${c[@]}")
    printf '%-6s %-10s %9s %9s %6s\n' "$r" "$cmd" "$h" "$m" "$(ratio "$h" "$m")"
  done
done
