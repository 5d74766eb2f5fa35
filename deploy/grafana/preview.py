#!/usr/bin/env python3
"""Draws deploy/grafana/slip-sockets.json without Grafana: every panel's
queries are asked of a Prometheus over a time range and drawn as line
charts, laid out on the dashboard's own grid, into one HTML page (which
headless Chromium can screenshot). It shows what the dashboard's queries
give; Grafana's own look is not the point. Standard library only.

    python3 deploy/grafana/preview.py --prometheus http://127.0.0.1:9090 \\
        --minutes 5 --out dashboard.html
"""

import argparse
import html
import json
import re
import sys
import time
import urllib.parse
import urllib.request

# Grafana's grid: 24 columns; a row unit of this many pixels.
COLUMNS = 24
ROW_PX = 30
# The most series one panel draws (the rest are counted in its legend).
MAX_SERIES = 12
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#ffb357", "#96d98d",
           "#ff7383", "#ca95e5", "#fade2a"]


def ask(prometheus, expr, start, end, step):
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{query}", timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def concrete(expr, rate_interval):
    """The dashboard's variables as Grafana would fill them with "All"."""
    expr = expr.replace("$__rate_interval", rate_interval)
    return re.sub(r"\$\{?(region|node)\}?", ".*", expr)


def legend(template, labels):
    if not template:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def shown(value, unit):
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    if unit == "bytes":
        for size, name in [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]:
            if value >= size:
                return f"{value / size:.3g} {name}"
        return f"{value:.0f} B"
    return f"{value:.3g}"


def chart(series, width, height, start, end, unit):
    """An SVG of the series (name, [(t, v)]) over [start, end]."""
    values = [v for _, points in series for _, v in points]
    top = max(values + [0.0])
    low = min(values + [0.0])
    span = (top - low) or 1.0
    left, bottom = 58, 16
    plot_w, plot_h = width - left - 8, height - bottom - 6
    out = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(3):
        value = low + span * i / 2
        y = 6 + plot_h - plot_h * i / 2
        out.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ffffff18"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{html.escape(shown(value, unit))}</text>')
    for i, when in enumerate([start, (start + end) / 2, end]):
        x = left + plot_w * i / 2
        label = time.strftime("%H:%M:%S", time.localtime(when))
        anchor = ["start", "middle", "end"][i]
        out.append(f'<text x="{x:.1f}" y="{height - 2}" text-anchor="{anchor}">{label}</text>')
    for i, (_, points) in enumerate(series):
        path = " ".join(
            f"{left + plot_w * (t - start) / ((end - start) or 1):.1f},{6 + plot_h - plot_h * (v - low) / span:.1f}"
            for t, v in points
        )
        out.append(f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="1.5" points="{path}"/>')
    out.append("</svg>")
    return "".join(out)


def panel_html(panel, prometheus, start, end, step, rate_interval, width):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    series = []
    for target in panel.get("targets", []):
        expr = concrete(target["expr"], rate_interval)
        for result in ask(prometheus, expr, start, end, step):
            points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if points:
                series.append((legend(target.get("legendFormat", ""), result["metric"]), points))
    drawn = series[:MAX_SERIES]
    height = panel["gridPos"]["h"] * ROW_PX - 8
    legend_lines = min(len(drawn), 4)
    svg = chart(drawn, width - 16, height - 30 - 16 * max(legend_lines, 1), start, end, unit)
    names = "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{html.escape(name)}</span>'
        for i, (name, _) in enumerate(drawn)
    )
    if len(series) > len(drawn):
        names += f"<span>and {len(series) - len(drawn)} more</span>"
    if not series:
        names = '<span class="none">no data</span>'
    return f'<h3>{html.escape(panel["title"])}</h3>{svg}<div class="legend">{names}</div>'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--dashboard", default="deploy/grafana/slip-sockets.json")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--step", type=float, default=2, help="seconds between points")
    parser.add_argument("--rate-interval", default="10s", help="what $__rate_interval becomes")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.dashboard) as f:
        dashboard = json.load(f)
    end = time.time()
    start = end - args.minutes * 60
    unit_w = args.width / COLUMNS
    blocks, bottom = [], 0
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        x, y, w, h = grid["x"] * unit_w, grid["y"] * ROW_PX, grid["w"] * unit_w, grid["h"] * ROW_PX
        bottom = max(bottom, y + h)
        style = f"left:{x:.0f}px;top:{y + 50:.0f}px;width:{w - 8:.0f}px;height:{h - 8:.0f}px"
        if panel["type"] == "row":
            blocks.append(f'<div class="row" style="{style}">{html.escape(panel["title"])}</div>')
            continue
        try:
            inner = panel_html(panel, args.prometheus, start, end, args.step, args.rate_interval, int(w - 8))
        except Exception as e:  # a query Prometheus refuses is shown, not hidden
            inner = f'<h3>{html.escape(panel["title"])}</h3><p class="none">{html.escape(str(e))}</p>'
        blocks.append(f'<div class="panel" style="{style}">{inner}</div>')
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(dashboard["title"])}</title>
<style>
body {{ margin: 0; background: #111217; color: #ccccdc; font: 12px system-ui, sans-serif; }}
header {{ position: absolute; left: 8px; top: 10px; font-size: 16px; }}
header small {{ color: #8e8e9e; font-size: 12px; margin-left: 1em; }}
.panel {{ position: absolute; background: #181b1f; border: 1px solid #ffffff1a; border-radius: 3px; padding: 4px 8px; box-sizing: border-box; overflow: hidden; }}
.row {{ position: absolute; font-size: 14px; font-weight: 600; padding-top: 6px; }}
h3 {{ margin: 2px 0 6px; font-size: 12px; font-weight: 600; }}
svg text {{ fill: #8e8e9e; font-size: 10px; }}
.legend span {{ margin-right: 10px; white-space: nowrap; display: inline-block; }}
.legend i {{ display: inline-block; width: 12px; height: 3px; margin-right: 4px; vertical-align: middle; }}
.none {{ color: #8e8e9e; }}
</style></head><body>
<header>{html.escape(dashboard["title"])}<small>every panel's own queries, asked of Prometheus over the last
{args.minutes:g} minutes (region and node: All); drawn without Grafana</small></header>
{"".join(blocks)}
<div style="position:absolute;top:{bottom + 60}px;height:1px;width:1px"></div>
</body></html>"""
    with open(args.out, "w") as f:
        f.write(page)
    print(f"{args.out}: {len(dashboard['panels'])} panels, {bottom + 60} px high")


if __name__ == "__main__":
    sys.exit(main())
