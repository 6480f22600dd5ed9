#!/usr/bin/env python3
"""Reads a results .json of the shared kit (bench/results/<date>-<tag>.json)
and prints, per scenario, berth (each transport) against the direct stdio
floor and the best peer of the same run, plus berth's targets.

  python3 bench/compare.py bench/results/2026-11-22-berth.json

Best peer = highest median throughput among the kit's peer rows that had no
error and no stray reply in that scenario (a proxy that misroutes replies is
not a usable baseline); the best peer including misrouting ones is named too
when it differs. Standard library only.
"""
import json
import sys

SCEN = ["seq-100B", "seq-64K", "pipe8-100B", "pipe8-64K", "scale64-100B", "churn"]
NOT_PEERS = ("direct stdio", "loadgen null server", "berth")


def med(row, s):
    return ((row["scenarios"].get(s) or {}).get("median")) or {}


def tput(m, s):
    return m.get("sessions_per_s" if s == "churn" else "throughput_cps")


def p(m, s, q):
    return m.get(("setup_%s_ms" if s == "churn" else "%s_ms") % q)


def f(v, nd=0):
    if v is None:
        return "—"
    return "{:,.{}f}".format(v, nd)


def mib(kb):
    return None if kb is None else kb / 1024.0


def ratio(a, b, nd=2):
    if a is None or not b:
        return "—"
    return "%s×" % f(a / b, nd)


def main():
    doc = json.load(open(sys.argv[1]))
    rows = doc["rows"]
    stdio = next((r for r in rows if r["transport"] == "stdio"), None)
    berths = [r for r in rows if r["label"].startswith("berth")]
    peers = [r for r in rows if not r["label"].startswith(NOT_PEERS)]
    m = doc["meta"]
    print("Run: `%s`, %s, %d rep(s)%s, %s (%s cores)." % (
        m["command"], m["date"], m["reps"], " (quick)" if m.get("quick") else "", m["host"]["cpu_model"],
        m["host"]["cpus"]))
    print()
    print("| scenario | row | calls/s | p50 ms | p99 ms | errors | stray | peak RSS tree MiB | peak RSS proxy MiB |"
          " foreign cores |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    best = {}
    for s in SCEN:
        lines = []
        if stdio:
            lines.append(("direct stdio", stdio))
        for b in berths:
            lines.append(("**%s %s**" % (b["label"], b["transport"]), b))
        ok = [r for r in peers if (med(r, s).get("errors_total") or 0) == 0 and (med(r, s).get("stray_replies_total") or 0) == 0
              and tput(med(r, s), s) is not None]
        anyp = [r for r in peers if tput(med(r, s), s) is not None]
        bp = max(ok, key=lambda r: tput(med(r, s), s)) if ok else None
        ba = max(anyp, key=lambda r: tput(med(r, s), s)) if anyp else None
        best[s] = bp
        if bp:
            lines.append(("best peer: %s %s" % (bp["label"], bp["transport"]), bp))
        if ba and ba is not bp:
            lines.append(("fastest peer incl. misrouting: %s %s" % (ba["label"], ba["transport"]), ba))
        if not any(med(r, s) for _, r in lines):
            continue
        for name, r in lines:
            mm = med(r, s)
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                s, name, f(tput(mm, s), 1 if s == "churn" else 0), f(p(mm, s, "p50"), 2), f(p(mm, s, "p99"), 2),
                f(mm.get("errors_total")), f(mm.get("stray_replies_total")), f(mib(mm.get("peak_tree_rss_kb")), 1),
                f(mib(mm.get("peak_main_rss_kb")), 1), f(mm.get("foreign_load_cores"), 2)))
    print()
    print("Ratios (berth ÷ reference; throughput: higher is better, latency: lower is better):")
    print()
    print("| scenario | berth transport | calls/s vs stdio | added p50 vs stdio ms | calls/s vs best peer | p50 vs best peer | p99 vs best peer |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s in SCEN:
        for b in berths:
            mb, ms = med(b, s), med(stdio, s) if stdio else {}
            bp = best.get(s)
            mp = med(bp, s) if bp else {}
            if not mb:
                continue
            added = None if p(mb, s, "p50") is None or p(ms, s, "p50") is None else p(mb, s, "p50") - p(ms, s, "p50")
            print("| %s | %s | %s | %s | %s | %s | %s |" % (
                s, b["transport"], ratio(tput(mb, s), tput(ms, s)), f(added, 2), ratio(tput(mb, s), tput(mp, s), 1),
                ratio(p(mb, s, "p50"), p(mp, s, "p50")), ratio(p(mb, s, "p99"), p(mp, s, "p99"))))
    print()
    print("Targets:")
    print()
    print("| target | berth transport | measured | met |")
    print("|---|---|---:|---|")
    for b in berths:
        t = b["transport"]
        mb, ms = med(b, "seq-100B"), med(stdio, "seq-100B") if stdio else {}
        if mb and ms and mb.get("p50_ms") is not None and ms.get("p50_ms") is not None:
            a = mb["p50_ms"] - ms["p50_ms"]
            print("| added p50 ≤ 0.1 ms over stdio, seq-100B | %s | %.2f ms (%.2f − %.2f) | %s |" % (
                t, a, mb["p50_ms"], ms["p50_ms"], "yes" if a <= 0.1 else "**no**"))
        mb = med(b, "pipe8-100B")
        if mb.get("throughput_cps") is not None:
            v = mb["throughput_cps"]
            print("| ≥ 10,000 calls/s, pipe8-100B | %s | %s calls/s | %s |" % (t, f(v), "yes" if v >= 10000 else "**no**"))
        mb = med(b, "scale64-100B")
        if mb.get("p99_ms") is not None:
            v = mb["p99_ms"]
            print("| p99 ≤ 10 ms, scale64-100B | %s | %.2f ms | %s |" % (t, v, "yes" if v <= 10 else "**no**"))
    bad = [(b["label"], b["transport"], s, med(b, s)) for b in berths for s in SCEN
           if (med(b, s).get("errors_total") or 0) or (med(b, s).get("stray_replies_total") or 0)
           or (med(b, s).get("failed_runs") or 0)]
    print()
    if bad:
        for lab, t, s, mm in bad:
            print("- %s %s %s: errors %s, stray %s, failed runs %s" % (
                lab, t, s, mm.get("errors_total"), mm.get("stray_replies_total"), mm.get("failed_runs")))
    else:
        print("berth: no error, no stray reply, no failed run in any scenario.")


if __name__ == "__main__":
    main()
