"""Per-day RSS table from memrun.py's rss.tsv files: usage python table.py DIR..."""
import sys

for d in sys.argv[1:]:
    rows = [l.rstrip("\n").split("\t") for l in open(f"{d}/rss.tsv")][1:]
    steps = [r for r in rows if r[0].isdigit()]
    days = [r for r in steps if int(r[0]) % 96 == 0]
    end = next((r for r in rows if r[0] == "end"), None)
    peak = next((r for r in rows if r[0] == "peak_main_mib"), None)
    main = [float(r[3]) for r in days]
    heap = [float(r[7]) for r in days if len(r) > 7 and r[7]]
    kids = [r[6] for r in days]
    blocks = [int(r[8]) for r in days if len(r) > 8 and r[8]]
    g = (max(main[1:]) - main[0]) / main[0] if len(main) > 1 else None
    print(f"{d}: main RSS by day {main} MiB; growth after day 1 {g:+.1%}" if g is not None else f"{d}: {main}")
    print(f"   live heap by day {heap}; children by day {kids}")
    if blocks:
        print(f"   Python objects (allocated blocks, thousands) by day {blocks}")
    print(f"   after run (summary etc.) {end[3] if end else '-'}; peak main {peak[1] if peak else '-'}; wall at last day {days[-1][2] if days else '-'} s")
