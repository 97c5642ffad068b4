# wan.sh: bench/run --wan PROFILE, streaming over a shaped swarm. Sourced
# by bench/run inside its namespace, once the tracker runs and the torrents
# are made; it uses run's helpers (measure, record, client_start,
# client_stop, jget) and variables. See bench/README.md, "WAN mode".
#
# The swarm: cmd/shaper (internal/swarmtest/shaper) installs an nftables
# table that sends every TCP connection to or from 127.0.13.0/24 through its
# proxy, which adds each seeder's RTT, jitter and rate cap (both ways), makes
# the churning seeder come and go, and plays the hostile profile's events.
# Then the profile's seeders start, python3-libtorrent and aria2c
# alternating, each on its own 127.0.13.x, seeding every torrent. The
# clients (at 127.0.0.1) are not shaped themselves: their seeders are.

# shaper_post PATH: POST to the shaper's control endpoint.
shaper_post() { curl -s --max-time 10 -X POST "$shaper_url$1" >/dev/null || echo "bench: shaper $1 failed" >&2; }

# shaper_out: the bytes every seeder has sent so far.
shaper_out() { "$py" "$here/measure.py" shaper-out "$shaper_url" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["bytes"])'; }

# wan_start_swarm: the shaper, then the profile's seeders; sets shaper_url,
# wan_desc and wan_header.
wan_start_swarm() {
  local i line kind ip n torrents
  wan_desc=$("$run/bin/shaper" -profile "$wan" -describe)
  wan_header=$(jget "$wan_desc" 'd["header"]')
  "$run/bin/shaper" -profile "$wan" -control 127.0.0.1:0 >"$run/logs/shaper.out" 2>"$run/logs/shaper.log" &
  SHAPER_PID=$!
  bench_track "$SHAPER_PID"
  shaper_url=
  for ((i = 0; i < 1000; i++)); do
    line=$(head -1 "$run/logs/shaper.out" 2>/dev/null)
    if [[ $line == control\ * ]]; then
      shaper_url=http://${line#control }
      break
    fi
    bench_alive "$SHAPER_PID" || bench_die "shaper exited: $(cat "$run/logs/shaper.log")"
    sleep 0.01
  done
  [ -n "$shaper_url" ] || bench_die "the shaper never said where it listens"
  torrents=("$run/torrents/data.torrent:$(dirname "$src")" "$run/torrents/video.torrent:$(dirname "$video")")
  n=0
  # The list on fd 3: the seeders inherit stdin, and aria2c reads it.
  while read -r kind ip <&3; do
    if [ "$kind" = libtorrent ]; then
      lt_seed_start "$py" "$here/measure.py" "$ip" "$seeder_port" "$run/logs/lt-$ip.stats" "$run/logs/lt-$ip.log" "${torrents[@]}" </dev/null
    else
      aria2_seed_start "$ip" "$seeder_port" $((rpc_port + n)) "$secret" "$run/logs/aria2-$ip.log" "${torrents[@]}" </dev/null
    fi
    n=$((n + 1))
  done 3< <("$py" -c 'import json,sys
for s in json.loads(sys.argv[1])["seeders"]: print(s["kind"], s["addr"])' "$wan_desc")
  # All but one (the churning seeder may be away when it announces).
  for t in data video; do
    tracker_wait_seeders "$tracker_port" "${ih[$t]}" $((n - 1))
  done
}

# wan_client_round CLIENT: the WAN rows, each on a fresh mount with an
# empty cache, the shaper reset (every seeder back) in between.
wan_client_round() {
  local c=$1 out0 ev=()
  echo "round $round: $c" >&2
  phase_seq=0
  # W1. the first 64 KiB at 1/2 of the file.
  shaper_post /reset
  client_start "$c" "$run/torrents/data.torrent"
  measure wan_ttfb "$c" "$wan_to" ttfb "$CMNT" data.bin "$CT0" "$src" "$half" "$chunk" || true
  client_stop
  # W2. random 64 KiB reads (the same offsets for both clients in a round).
  client_start "$c" "$run/torrents/data.torrent"
  measure wan_random "$c" "$((wan_to * 2))" random "$CMNT" data.bin "$CT0" "$src" "$wan_nrand" "$chunk" "$round" || true
  client_stop
  # W3. ffprobe of the moov-at-end MP4, then, on the same mount, ffmpeg
  # seeking to the middle (one frame).
  client_start "$c" "$run/torrents/video.torrent"
  if measure wan_ffprobe "$c" "$wan_to" run "$CMNT" f.mp4 "$CT0" -- ffprobe -v error -show_format -show_streams "$CMNT/f.mp4"; then
    measure wan_seek "$c" "$wan_to" run "$CMNT" f.mp4 "$CT0" -- \
      ffmpeg -nostdin -v error -ss "$seek" -i "$CMNT/f.mp4" -frames:v 1 -f null - || true
  fi
  client_stop
  # W4. real-time playback from the start on a fresh mount (start-up,
  # stalls, over-fetch; the hostile events start with it), then, on the
  # same mount, a seek to an unread region and its playback.
  out0=$(shaper_out)
  [ "$wan" = hostile ] && ev=(--events)
  client_start "$c" "$run/torrents/video.torrent"
  if measure wan_play "$c" "$((wan_to + play_secs))" play --secs "$play_secs" --shaper "$shaper_url" --out0 "$out0" "${ev[@]}" \
    "$CMNT" f.mp4 "$CT0" "$CMNT/f.mp4"; then
    measure wan_play_seek "$c" "$((wan_to + seek_secs))" play --ss "$seek2" --secs "$seek_secs" "$CMNT" f.mp4 "$CT0" "$CMNT/f.mp4" || true
  fi
  client_stop
  shaper_post /reset
  # W4f. ours only: the same playback with -fetch reads (nothing but what
  # readers ask for and their readahead): its over-fetch.
  if [ "$c" = ours ]; then
    out0=$(shaper_out)
    client_start ours "$run/torrents/video.torrent" - -fetch reads
    measure wan_play_fr ours "$((wan_to + play_secs))" play --secs "$play_secs" --shaper "$shaper_url" --out0 "$out0" "${ev[@]}" \
      "$CMNT" f.mp4 "$CT0" "$CMNT/f.mp4" || true
    client_stop
    shaper_post /reset
  fi
  # W5. sequential read of the whole file, against the sum of the caps
  # (when the swarm can give the file in under a minute).
  if [ "$wan_seq" = 1 ]; then
    client_start "$c" "$run/torrents/data.torrent"
    measure wan_seq "$c" "$((wan_to + size / wan_rate * 2))" seq --pid "$CPID" --wait "$CMNT" data.bin "$CT0" "$CMNT/data.bin" "$size" "$want_sha" || true
    client_stop
  fi
}

# wan_ref_round: the same media commands on the local file.
wan_ref_round() {
  echo "round $round: references" >&2
  measure wan_local_ffprobe ref 60 run - - 0 -- ffprobe -v error -show_format -show_streams "$video" || true
  measure wan_local_seek ref 60 run - - 0 -- ffmpeg -nostdin -v error -ss "$seek" -i "$video" -frames:v 1 -f null - || true
  measure wan_local_play ref "$((play_secs + 60))" play --secs "$play_secs" - - 0 "$video" || true
  measure wan_local_play_seek ref "$((seek_secs + 60))" play --ss "$seek2" --secs "$seek_secs" - - 0 "$video" || true
}

wan_main() {
  local c order start secs
  wan_start_swarm
  wan_rate=$(jget "$wan_desc" 'int(d["swarm_rate"])')
  # Time-outs: a slow swarm takes minutes where loopback takes a second.
  if [ "$wan_rate" -ge 4000000 ]; then wan_to=60 wan_nrand=20; else wan_to=300 wan_nrand=10; fi
  wan_seq=0
  [ $((size / wan_rate)) -le 60 ] && wan_seq=1
  play_secs=25 seek_secs=10
  seek2=$((video_secs * 3 / 4))
  record wan_profile ref "$wan_desc"
  echo "bench: WAN $wan_header" >&2
  echo "bench: $rounds round(s); $size_mib MiB file, ${video_secs} s video; playback ${play_secs} s, then a seek to ${seek2} s played ${seek_secs} s" >&2
  start=$EPOCHREALTIME
  for ((round = 1; round <= rounds; round++)); do
    if ((round % 2)); then order=(ours johang); else order=(johang ours); fi
    for c in "${order[@]}"; do
      if [[ ",$clients," == *",$c,"* ]]; then wan_client_round "$c"; fi
    done
    wan_ref_round
  done
  secs=$(elapsed "$start" "$EPOCHREALTIME" | cut -d. -f1)
  "$py" - "$run/meta.json" "$wan_header" <<EOF
import json, sys
json.dump({
  "machine": "$(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)",
  "command": "bench/run ${BENCH_ARGS:-}",
  "profile": sys.argv[2],
  "data": "$size_mib MiB random file, 1 MiB pieces; ${video_secs} s 720p H.264 MP4, ~2.1 Mbit/s (moov at the end)",
  "clients": "ours: $btfs; johang: $johang ($(dpkg-query -W -f='${Version}' btfs 2>/dev/null))",
  "rounds": $rounds,
  "seconds": $secs,
}, open(sys.argv[1], "w"), indent=1)
EOF
  json=${json:-$datadir/results-wan-$wan-$(date +%Y%m%d-%H%M%S).json}
  "$py" "$here/wanreport.py" "$results" "$json" "$run/meta.json"
  echo
  echo "bench: $secs s; results in $json; logs in $run/logs"
  trap - EXIT
  bench_cleanup
  if [ "$keeprun" != 1 ]; then
    for m in "$run"/mnt/*; do
      [ -e "$m" ] && mountpoint -q "$m" && continue
      rmdir "$m" 2>/dev/null || true
    done
    rm -rf "$run/cache" "$run/torrents" "$run/bin"
  fi
}
