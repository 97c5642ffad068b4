#!/usr/bin/python3
"""report.py RESULTS.jsonl OUT.json META.json: the table of bench/run.

RESULTS.jsonl holds one record per measure, written by bench/run:
  {"m": KIND, "client": "ours"|"johang"|"ref", "round": N, "data": {...}}
or, for a measure that failed, "error": "..." instead of "data". This turns
them into metrics (the issue's rows), prints medians with min-max, the
ratio ours / johang and each target's verdict, and writes OUT.json.
"""

import json
import statistics
import sys

# Metrics: (row, key, label, unit, better, extract). extract(data, rec,
# recs) returns the value of one measure, or None. better is "low" or
# "high" (for the reader of the table; targets say their own sense).
METRICS = [
    ("1", "listing_s", "mount -> listing visible (multi-file tree)", "s", "low",
     ("tree", lambda d, r, a: d["listing"])),
    ("1", "tree_s", "read + check every file of the tree", "s", "low",
     ("tree", lambda d, r, a: d["s"])),
    ("2", "ttfb_half_s", "first 64 KiB at 1/2 (fresh mount)", "s", "low",
     ("ttfb_half", lambda d, r, a: d["reads"][0])),
    ("2", "ttfb_3q_s", "first 64 KiB at 3/4 (fresh mount)", "s", "low",
     ("ttfb_3q", lambda d, r, a: d["reads"][0])),
    ("M", "magnet_listing_s", "magnet link: mount -> listing (metadata from the seeders)", "s", "low",
     ("magnet_ttfb", lambda d, r, a: d["listing"])),
    ("M", "magnet_ttfb_s", "magnet link: first 64 KiB at 1/2 after the listing", "s", "low",
     ("magnet_ttfb", lambda d, r, a: d["reads"][0])),
    ("3", "rand_first_s", "random 64 KiB reads (fresh mount): first", "s", "low",
     ("random", lambda d, r, a: d["first"])),
    ("3", "rand_median_s", "random 64 KiB reads: median of 20", "s", "low",
     ("random", lambda d, r, a: d["median"])),
    ("3", "rand_p90_s", "random 64 KiB reads: p90 of 20", "s", "low",
     ("random", lambda d, r, a: d["p90"])),
    ("4", "seq_mbps", "sequential read, fresh mount, SHA-256 checked", "MB/s", "high",
     ("seq", lambda d, r, a: d["mbps"])),
    ("5", "reread_cold_mbps", "re-read complete data, page cache dropped", "MB/s", "high",
     ("reread_cold", lambda d, r, a: d["mbps"])),
    ("5", "reread_warm_mbps", "re-read again (page cache warm)", "MB/s", "high",
     ("reread_warm", lambda d, r, a: d["mbps"])),
    ("6", "ffprobe_s", "ffprobe, moov-at-end MP4, fresh mount", "s", "low",
     ("ffprobe", lambda d, r, a: d["s"])),
    ("6", "ffmpeg_seek_s", "ffmpeg -ss middle, 1 frame, fresh mount", "s", "low",
     ("ffmpeg_seek", lambda d, r, a: d["s"])),
    ("7", "rss_mib", "peak RSS (VmHWM) over seq + re-reads", "MiB", "low",
     ("stats", lambda d, r, a: d["rss_mib"])),
    ("7", "seq_cpu_s", "client CPU seconds for the sequential read", "s", "low",
     ("seq", lambda d, r, a: d["cpu"])),
    ("8", "leech_mbps", "plain libtorrent leecher (no FUSE), start to finish", "MB/s", "high",
     ("leech", lambda d, r, a: d["mbps"])),
    ("8", "leech_flow_mbps", "plain libtorrent leecher, from its first byte", "MB/s", "high",
     ("leech", lambda d, r, a: d["flow_mbps"])),
    ("9", "shared_upload_x", "3 mounts, one cache: seeder upload / size", "x", "low",
     ("shared", lambda d, r, a: d["upload"] / d["size"])),
    ("9", "shared_wall_x", "3 mounts, one cache: wall / one mount's seq", "x", "low",
     ("shared", lambda d, r, a: shared_wall(d, r, a))),
    ("F", "fetch_reads_mib", "two 64 KiB reads, stored after 5 s (ours -fetch reads)", "MiB", "low",
     ("fetch_stored", lambda d, r, a: d["bytes"] / 2**20)),
    ("E", "enc_ttfb_s", "first 64 KiB at 1/2 (fresh mount), libtorrent seeder pe_forced (RC4)", "s", "low",
     ("enc_ttfb", lambda d, r, a: d["reads"][0])),
    ("E", "enc_seq_mbps", "sequential read, fresh mount, libtorrent seeder pe_forced (RC4)", "MB/s", "high",
     ("enc_seq", lambda d, r, a: d["mbps"])),
    ("E", "enc_seq_cpu_s", "client CPU seconds for that read (RC4)", "s", "low",
     ("enc_seq", lambda d, r, a: d["cpu"])),
    ("T", "utp_ttfb_s", "first 64 KiB (fresh mount), uTP-only libtorrent seeder", "s", "low",
     ("utp_ttfb", lambda d, r, a: d["reads"][0])),
    ("T", "utp_seq_mbps", "sequential read, fresh mount, uTP-only libtorrent seeder", "MB/s", "high",
     ("utp_seq", lambda d, r, a: d["mbps"])),
    ("T", "utp_seq_cpu_s", "client CPU seconds for that read (uTP)", "s", "low",
     ("utp_seq", lambda d, r, a: d["cpu"])),
    ("U", "unmount_exit_s", "SIGTERM while a read waits: exit time", "s", "low",
     ("unmount", lambda d, r, a: d["s"])),
    ("U", "unmount_reader_err", "... the waiting reader got an error (1 yes)", "", "high",
     ("unmount", lambda d, r, a: None if d.get("reader") is None else (0.0 if d["reader"] == "ok" else 1.0))),
]

# Metrics measured without a client: their values go in the reference
# column.
REF_ONLY = {"leech_mbps", "leech_flow_mbps"}

# References: metric -> (kind, field, label). The re-read references are
# measured right after each client's re-read (paired, client-tagged); the
# others once per round (client "ref").
REFS = {
    "reread_cold_mbps": ("src_cold", "mbps", "source file, page cache dropped, right after ours"),
    "reread_warm_mbps": ("src_warm", "mbps", "source file, page cache warm, right after ours"),
    "ffprobe_s": ("local_ffprobe", "s", "ffprobe of the local file"),
    "ffmpeg_seek_s": ("local_ffmpeg_seek", "s", "ffmpeg seek in the local file"),
    "fetch_reads_mib": ("fetch_bound", "mib", "bound: pieces under the reads + readahead"),
    # Row E against ours' plain read of the same bytes (row 4, when run).
    "enc_seq_mbps": ("seq", "mbps", "ours' plain sequential read, row 4"),
}


def shared_wall(d, rec, recs):
    """The wall time of 3 mounts over the median sequential time of one of
    ours in the run (seconds)."""
    one = [x["data"]["s"] for x in recs if x["m"] == "seq" and x["client"] == "ours" and "data" in x]
    return d["wall"] / statistics.median(one) if one else None


# Targets: key -> (kind, value, text). ratio_le/ratio_ge compare ours /
# johang; ref_ge compares ours / the reference; ours_le compares ours'
# median itself; metric_ge compares ours / another metric of ours' median.
TARGETS = {
    "ttfb_half_s": ("ratio_le", 0.1, "<= 0.1x johang"),
    "ttfb_3q_s": ("ratio_le", 0.1, "<= 0.1x johang"),
    "rand_first_s": ("ratio_le", 0.1, "<= 0.1x johang"),
    "magnet_ttfb_s": ("ours_le", 0.1, "<= 100 ms"),
    "ffprobe_s": ("ratio_le", 0.1, "<= 0.1x johang"),
    "ffmpeg_seek_s": ("ratio_le", 0.1, "<= 0.1x johang"),
    "seq_mbps": ("ratio_ge", 5.0, ">= 5x johang"),
    "reread_cold_mbps": ("ref_ge", 0.8, ">= 0.8x source"),
    "reread_warm_mbps": ("ref_ge", 0.8, ">= 0.8x source"),
    "rss_mib": ("ratio_le", 0.25, "<= 0.25x johang"),
    "seq_cpu_s": ("ratio_le", 1.0, "<= 1x johang"),
    "shared_upload_x": ("ours_le", 1.1, "<= 1.1"),
    "shared_wall_x": ("ours_le", 1.3, "<= 1.3"),
    "fetch_reads_mib": ("ref_le", 1.0, "<= bound"),
    "unmount_exit_s": ("ours_le", 1.0, "<= 1 s"),
    "enc_seq_mbps": ("ref_ge", 0.8, ">= 0.8x ours plain"),
    "unmount_reader_err": ("ours_ge", 1.0, "error"),
}
# seq_mbps has a second target: >= 0.7x the plain leecher (row 8).
SEQ_VS_LEECH = 0.7


def summary(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals), "values": vals}


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(s, fails, hung=0):
    if s is None:
        if hung:
            return f"hung, SIGKILL ({hung}/{hung + fails})"
        return f"failed ({fails})" if fails else "-"
    t = fmt(s["median"])
    if s["n"] > 1:
        t += f" ({fmt(s['min'])}-{fmt(s['max'])})"
    if fails:
        t += f" +{fails} failed"
    if hung:
        t += f" +{hung} hung"
    return t


def main():
    results, out_path, meta_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(results) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    with open(meta_path) as f:
        meta = json.load(f)
    rows = []
    for row, key, label, unit, better, (kind, extract) in METRICS:
        entry = {"row": row, "metric": key, "label": label, "unit": unit, "better": better}
        for client in ("ours", "johang", "ref"):
            vals, fails, hung = [], 0, 0
            for r in recs:
                if r["m"] != kind or r["client"] != client:
                    continue
                if "data" not in r:
                    fails += 1
                    continue
                try:
                    v = extract(r["data"], r, recs)
                except (KeyError, TypeError, ZeroDivisionError):
                    v = None
                if v is None:
                    if r["data"].get("hung"):
                        hung += 1
                    else:
                        fails += 1
                else:
                    vals.append(v)
            entry[client] = summary(vals)
            entry[client + "_failed"] = fails
            entry[client + "_hung"] = hung
            entry[client + "_errors"] = [r["error"] for r in recs if r["m"] == kind and r["client"] == client and "error" in r][:3]
        if key in REF_ONLY:
            entry["ref_label"] = "no client"
        if key in REFS:
            rk, field, rlabel = REFS[key]
            paired = [r["data"].get(field) for r in recs if r["m"] == rk and r["client"] == "ours" and "data" in r]
            entry["ref"] = summary(paired or [r["data"].get(field) for r in recs if r["m"] == rk and "data" in r])
            entry["ref_label"] = rlabel if paired else rlabel.replace(", right after ours", "")
        o, j = entry["ours"], entry["johang"]
        entry["ratio"] = o["median"] / j["median"] if o and j and j["median"] else None
        verdict(entry, recs)
        rows.append(entry)
    report = {"meta": meta, "rows": rows, "records": recs}
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)
    print_table(meta, rows)


def verdict(e, recs):
    t = TARGETS.get(e["metric"])
    e["target"], e["pass"] = None, None
    if not t:
        return
    kind, v, text = t
    o, j, ref = e["ours"], e["johang"], e.get("ref")
    ok = None
    if kind == "ratio_le" and e["ratio"] is not None:
        ok = e["ratio"] <= v
    elif kind == "ratio_ge" and e["ratio"] is not None:
        ok = e["ratio"] >= v
    elif kind == "ref_ge" and o and ref:
        e["ref_ratio"] = o["median"] / ref["median"]
        ok = e["ref_ratio"] >= v
    elif kind == "ref_le" and o and ref:
        e["ref_ratio"] = o["median"] / ref["median"]
        ok = o["max"] <= ref["median"] * v
    elif kind == "ours_le" and o:
        ok = o["median"] <= v
    elif kind == "ours_ge" and o:
        ok = o["min"] >= v
    if e["metric"] == "seq_mbps":
        lt = [r["data"]["mbps"] for r in recs if r["m"] == "leech" and "data" in r]
        if o and lt:
            e["vs_leech"] = o["median"] / statistics.median(lt)
            text += f"; >= {SEQ_VS_LEECH}x leecher"
            ok = (ok is not False) and e["vs_leech"] >= SEQ_VS_LEECH
    if (kind.startswith("ratio") and not (o and j)) or (o is None):
        ok = None
    e["target"], e["pass"] = text, ok


def measured(e):
    """Whether the run measured the metric at all (its row was among
    --rows): a value or a failure of a client, or a no-client reference."""
    if any(e[c] is not None or e[c + "_failed"] or e[c + "_hung"] for c in ("ours", "johang")):
        return True
    return e["metric"] in REF_ONLY and (e["ref"] is not None or e["ref_failed"] > 0)


def print_table(meta, rows):
    print()
    print(f"btfs bench: {meta.get('machine', '')}")
    print(f"command: {meta.get('command', '')}")
    print(f"data: {meta.get('data', '')}; rounds: {meta.get('rounds')}")
    hdr = ("row", "measure", "unit", "btfs (ours)", "johang/btfs", "ours/johang", "reference", "target", "")
    lines = [hdr]
    for e in rows:
        if not measured(e):
            continue  # not among --rows
        ref = ""
        if e.get("ref"):
            ref = f"{fmt(e['ref']['median'])} ({e['ref_label']})"
            if e.get("ref_ratio") is not None:
                ref += f" ours/ref {fmt(e['ref_ratio'])}"
        if e.get("vs_leech") is not None:
            ref = f"ours/leecher {fmt(e['vs_leech'])}"
        verdict_s = {True: "PASS", False: "MISS", None: ""}[e["pass"]] if e["target"] else ""
        if e["target"] and e["pass"] is None:
            verdict_s = "n/a"
        if e["metric"] in REF_ONLY and e.get("ref"):
            ref = cell(e["ref"], e["ref_failed"])
        lines.append((e["row"], e["label"], e["unit"], cell(e["ours"], e["ours_failed"], e["ours_hung"]),
                      cell(e["johang"], e["johang_failed"], e["johang_hung"]), fmt(e["ratio"]) if e["ratio"] is not None else "-",
                      ref, e["target"] or "", verdict_s))
    widths = [max(len(str(l[i])) for l in lines) for i in range(len(hdr))]
    for i, l in enumerate(lines):
        print("  ".join(str(c).ljust(widths[k]) for k, c in enumerate(l)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    errs = [(e["metric"], c, e[c + "_errors"]) for e in rows for c in ("ours", "johang", "ref") if e[c + "_errors"]]
    if errs:
        print("\nfailures (first of each):")
        seen = set()
        for m, c, es in errs:
            if (c, es[0]) in seen:
                continue
            seen.add((c, es[0]))
            print(f"  {m} {c}: {es[0][:200]}")


if __name__ == "__main__":
    main()
