#!/usr/bin/env python3
"""Merge the cluster and simulator results into bench/results/latest.{json,md}
and plot them against N (bench/results/links.png, bench/results/scaling.png).

    python3 bench/report.py [--runs 'bench/results/runs/*.json']
                            [--cluster bench/results/cluster.json]
                            [--sim bench/results/sim.json] [--dir bench/results]

`bench/run.sh` runs one cluster-bench invocation per N (every mode of that N
in one run, so the ratios compare like with like) into bench/results/runs/;
this script merges those runs into cluster.json (the newest run of each N
wins), then reports. Without run files it reads cluster.json as it is.

Longer than ~600 lines would be a reason to split; it is not (one report).
"""
import argparse
import glob
import json
import os
import subprocess
import sys

TARGETS = {
    "conv_ms": 10_000,
    "repair_ms": 5_000,
    "detect_median_ms": 1_000,
    "cpu_pct": 1.0,
    "extra_rss_mib": 20.0,
    "extra_threads": 3,
    "sim_wall_s": 60.0,
}


def load(path):
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def merge(paths):
    """One cluster report from several runs: for each N, the results of the
    newest run that measured it (so one N's modes always come from one run)."""
    runs = sorted((load(p) for p in paths), key=lambda r: r["generated_at"])
    best = {}
    for i, run in enumerate(runs):
        for n in {r["n"] for r in run["results"]}:
            best[n] = i
    results = []
    for i, run in enumerate(runs):
        for r in run["results"]:
            if best.get(r["n"]) == i:
                results.append(slim(dict(r, run=i)))
    used = sorted(set(best.values()))
    last = runs[used[-1]]
    return {
        "generated_at": last["generated_at"],
        "machine": last["machine"],
        "config": last["config"],
        "runs": [{"run": i, "generated_at": runs[i]["generated_at"],
                  "sizes": sorted(n for n, j in best.items() if j == i),
                  "machine": runs[i]["machine"], "config": runs[i]["config"]} for i in used],
        "results": results,
    }


def slim(r):
    """The merged report keeps summaries: per-node rows and the long node
    lists of the timelines stay in the run files (bench/results/runs/)."""
    if isinstance(r.get("idle"), dict):
        r["idle"] = {k: v for k, v in r["idle"].items() if k != "per_node"}

    def cut(timeline):
        return [p[:5] + [[w[:160] for w in p[5]]] if len(p) > 5 else p for p in timeline or []]

    if "convergence_timeline" in r:
        r["convergence_timeline"] = cut(r["convergence_timeline"])
    if isinstance(r.get("repair"), dict) and "repair_timeline" in r["repair"]:
        r["repair"] = dict(r["repair"], repair_timeline=cut(r["repair"]["repair_timeline"]))
    return r


def extra_idle(res, n, mode):
    """Idle CPU per node above the unclustered control of the same run."""
    r = by(res, mode).get(n)
    c = by(res, "none").get(n)
    a, b = g(r, "idle", "summary", "cpu_pct_mean"), g(c, "idle", "summary", "cpu_pct_mean")
    if a is None or b is None or r.get("run") != c.get("run"):
        return None
    return a - b


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def f(x, d=2):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{d}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def by(results, mode):
    return {r["n"]: r for r in results if r.get("mode") == mode and "error" not in r}


def g(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k)
    return d


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**MISSED**"


def targets(cluster, sim):
    rows = []
    if cluster:
        res = cluster["results"]
        hv, fm, none = by(res, "hyparview"), by(res, "fullmesh"), by(res, "none")
        av = cluster["config"]["hyparview"].get("active_view_size", 5)
        n = max(hv) if hv else None
        h = hv.get(n) if n else None
        if h:
            bound = n * av // 2
            links, mx = g(h, "links", "links"), g(h, "links", "max_links")
            fm_links = g(fm.get(n), "links", "links")
            rows.append((f"{n} nodes: total links <= N*active_view_size/2 = {bound}",
                         f"{f(links)} (full mesh: {f(fm_links)}; N(N-1)/2 = {n*(n-1)//2:,})",
                         verdict(links is not None and links <= bound)))
            rows.append((f"{n} nodes: no node above active_view_size = {av} links",
                         f"max {f(mx)}", verdict(mx is not None and mx <= av)))
            c = h.get("convergence_ms")
            extra = g(h, "links_at_convergence", "links_outside_active_view")
            note = (f"{f(c)} ms" if c is not None else f"not within {cluster['config'].get('conv_deadline_s', '?')} s") + \
                f" (active views alone: {f(h.get('overlay_convergence_ms'))} ms" + \
                (f"; {extra} Node.list entries outside the active view at the deadline)" if c is None and extra is not None else ")")
            rows.append((f"{n} nodes: convergence <= 10 s", note,
                         verdict(c is not None and c <= TARGETS["conv_ms"])))
            rep = h.get("repair", {})
            r = rep.get("repair_ms")
            extra = g(rep, "after", "links_outside_active_view")
            note = (f"{f(r)} ms" if r is not None else f"not within {cluster['config'].get('repair_deadline_s', '?')} s") + \
                f" (active views alone: {f(rep.get('overlay_repair_ms'))} ms; views refilled: {f(g(rep, 'refill', 'ms'))} ms" + \
                (f"; {extra} Node.list entries outside the active view at the deadline)" if r is None and extra is not None else ")")
            rows.append((f"{n} nodes: repair after kill -9 of {rep.get('killed')} <= 5 s", note,
                         verdict(r is not None and r <= TARGETS["repair_ms"])))
            det = rep.get("detection", {})
            m = det.get("median_ms")
            ok = m is not None and m < TARGETS["detect_median_ms"] and det.get("missed", 1) == 0
            rows.append(("median failure detection (kill -9 -> peer_down) < 1 s",
                         f"median {f(m)} ms, max {f(det.get('max_ms'))} ms, "
                         f"{det.get('detected')}/{det.get('pairs')} pairs seen", verdict(ok)))
            idle = g(h, "idle", "summary") or {}
            ctl = g(none.get(n), "idle", "summary") or {}
            cpu = idle.get("cpu_pct_mean")
            rows.append(("idle CPU per node with the strategy < 1 % of a core",
                         f"{f(cpu, 3)} % (mean; max {f(idle.get('cpu_pct_max'), 3)} %; "
                         f"unclustered control {f(ctl.get('cpu_pct_mean'), 3)} %)",
                         verdict(cpu is not None and cpu < TARGETS["cpu_pct"])))
            if idle and ctl:
                xr = idle["rss_mib_mean"] - ctl["rss_mib_mean"]
                xt = idle["threads_mean"] - ctl["threads_mean"]
                rows.append(("extra RSS per node < 20 MiB", f"{f(xr)} MiB ({f(idle['rss_mib_mean'])} vs {f(ctl['rss_mib_mean'])})",
                             verdict(xr < TARGETS["extra_rss_mib"])))
                rows.append(("extra OS threads per node <= 3", f"{f(xt)} ({f(idle['threads_mean'])} vs {f(ctl['threads_mean'])})",
                             verdict(xt <= TARGETS["extra_threads"])))
    if cluster:
        res = cluster["results"]
        hv, fm = by(res, "hyparview"), by(res, "fullmesh")
        for n, cpu_max, conv_max in ((64, 0.5, 1.0), (256, 0.2, 0.5)):
            h, m = hv.get(n), fm.get(n)
            if not h and not m:
                rows.append((f"{n} nodes: HyParView/full mesh ratios", "not measured", verdict(None)))
                continue
            xh, xm = extra_idle(res, n, "hyparview"), extra_idle(res, n, "fullmesh")
            r = ratio(xh, xm)
            note = (f"{f(r)} (HyParView +{f(xh, 3)} %, full mesh +{f(xm, 3)} % of a core per node "
                    f"over the control)") if r is not None else \
                f"n/a (HyParView +{f(xh, 3)} %, full mesh +{f(xm, 3)} %)"
            rows.append((f"{n} nodes: extra idle CPU HyParView/full mesh <= {cpu_max}", note,
                         verdict(None if r is None else r <= cpu_max)))
            ch, cm = g(h, "convergence_ms"), g(m, "convergence_ms")
            if ch is not None and m and cm is None:
                rows.append((f"{n} nodes: convergence HyParView/full mesh <= {conv_max}",
                             f"HyParView {f(ch)} ms; full mesh did not converge within "
                             f"{cluster['config'].get('conv_deadline_s', '?')} s", verdict(True)))
            else:
                r = ratio(ch, cm)
                rows.append((f"{n} nodes: convergence HyParView/full mesh <= {conv_max}",
                             f"{f(r)} ({f(ch)} ms vs {f(cm)} ms)",
                             verdict(None if r is None else r <= conv_max)))
    if sim:
        rows.append((f"simulation {sim['nodes']:,} nodes x {sim['rounds']} rounds < 60 s",
                     f"wall {f(sim['wall_s'])} s (CPU {f(sim['cpu_s'])} s, single-threaded; "
                     f"load average {' '.join(sim.get('loadavg_start', []))} before, "
                     f"{' '.join(sim.get('loadavg', []))} after)",
                     verdict(sim["wall_s"] < TARGETS["sim_wall_s"])))
    return rows


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def cluster_rows(cluster):
    rows = []
    for r in sorted(cluster["results"], key=lambda r: (r["n"], r["mode"])):
        if "error" in r or r["mode"] == "none":
            continue
        l, rep = r.get("links", {}), r.get("repair", {})
        det = rep.get("detection", {})
        idle = g(r, "idle", "summary") or {}
        conv = r.get("convergence_ms")
        conv = f(conv) if conv is not None or not r.get("links_at_convergence") else \
            f"> {f(cluster['config'].get('conv_deadline_s'))} s (not converged)"
        rp = rep.get("repair_ms")
        rp = f(rp) if rp is not None or not rep else \
            f"> {f(cluster['config'].get('repair_deadline_s'))} s (not repaired)"
        rows.append([r["mode"], r["n"], f(l.get("links")), f(l.get("max_links")), f(l.get("mean_links")),
                     conv, rp,
                     f(det.get("median_ms"), 1), f(det.get("max_ms"), 1),
                     f(idle.get("cpu_pct_mean"), 3), f(extra_idle(cluster["results"], r["n"], r["mode"]), 3),
                     f(idle.get("rss_mib_mean"), 1),
                     f(idle.get("threads_mean"), 1), f(idle.get("dist_out_bps_mean"), 1),
                     f(idle.get("wchar_bps_mean"), 0),
                     f(idle.get("overlay_msgs_per_node_per_shuffle"))])
    for r in sorted(cluster["results"], key=lambda r: r["n"]):
        if r.get("mode") == "none" and "error" not in r:
            idle = r["idle"]["summary"]
            rows.append(["none (control)", r["n"], "0", "0", "0", "-", "-", "-", "-",
                         f(idle["cpu_pct_mean"], 3), "0", f(idle["rss_mib_mean"], 1), f(idle["threads_mean"], 1),
                         f(idle["dist_out_bps_mean"], 1), f(idle.get("wchar_bps_mean"), 0), "-"])
    return rows


HEADER = ["strategy", "N", "links", "max/node", "mean/node", "converge ms", "repair ms",
          "detect median ms", "detect max ms", "idle CPU %/node", "idle CPU over control %/node",
          "RSS MiB/node", "OS threads/node",
          "dist bytes out/s/node", "all bytes written/s/node", "overlay msgs/node/shuffle"]


STORM_HEADER = ["strategy", "N", "boot s", "storm s", "storm CPU s/node (mean, max)", "storm CPU %/node",
                "storm dist bytes out/s/node", "net_kernel queue max", "busy_dist_port events (nodes)",
                "repair CPU s/node", "repair net_kernel queue max", "repair busy_dist_port events"]


def storm_rows(cluster):
    rows = []
    for r in sorted(cluster["results"], key=lambda r: (r["n"], r["mode"])):
        if "error" in r or r["mode"] == "none":
            continue
        st, rs = r.get("storm") or {}, g(r, "repair", "storm") or {}
        rows.append([r["mode"], r["n"], f(r["boot_ms"] / 1000, 1), f(st.get("window_s"), 1),
                     f"{f(st.get('cpu_s_mean'))}, {f(st.get('cpu_s_max'))}", f(st.get("cpu_pct_mean"), 1),
                     f(st.get("dist_out_bps_mean"), 0), f(st.get("net_kernel_qmax")),
                     f"{f(st.get('busy_dist_port_events'))} ({f(st.get('busy_dist_port_nodes'))})",
                     f(rs.get("cpu_s_mean")), f(rs.get("net_kernel_qmax")),
                     f(rs.get("busy_dist_port_events"))])
    return rows


def plot(cluster, path):
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (used through matplotlib.ticker)

    res = cluster["results"]
    hv, fm = by(res, "hyparview"), by(res, "fullmesh")
    av = cluster["config"]["hyparview"].get("active_view_size", 5)
    ns = sorted(set(hv) | set(fm))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))

    def series(d, key):
        xs = [n for n in ns if n in d and g(d[n], "links", key) is not None]
        return xs, [g(d[n], "links", key) for n in xs]

    def annotate(ax, x, y, color, dy):
        for xi, yi in zip(x, y):
            ax.annotate(f"{yi:g}", (xi, yi), textcoords="offset points", xytext=(6, dy),
                        fontsize=8, color=color)

    x, y = series(fm, "links")
    a1.plot(x, y, "o-", color="tab:red", label="full mesh (measured)")
    annotate(a1, x, y, "tab:red", 4)
    x, y = series(hv, "links")
    a1.plot(x, y, "s-", color="tab:blue", label="HyParView (measured)")
    annotate(a1, x, y, "tab:blue", -12)
    a1.plot(ns, [n * (n - 1) / 2 for n in ns], ":", color="tab:red", alpha=0.6, label="N(N-1)/2")
    a1.plot(ns, [n * av / 2 for n in ns], ":", color="tab:blue", alpha=0.6, label=f"N*{av}/2 bound")
    a1.set_yscale("log")
    lows = [g(d[n], "links", "links") for d in (hv, fm) for n in d if g(d[n], "links", "links")]
    if lows:
        a1.set_ylim(bottom=min(lows) * 0.6)
    a1.set_xlabel("nodes N")
    a1.set_ylabel("distribution links (undirected, total)")
    a1.set_title("Total links")
    a1.set_xscale("log", base=2)
    a1.margins(x=0.1)
    a1.set_xticks(ns)
    a1.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    a1.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    a1.grid(True, which="both", alpha=0.3)
    a1.legend(fontsize=8)
    for d, label, color, m in ((fm, "full mesh", "tab:red", "o"), (hv, "HyParView", "tab:blue", "s")):
        x, y = series(d, "max_links")
        a2.plot(x, y, m + "-", color=color, label=f"{label}: max per node")
        annotate(a2, x, y, color, 4)
        x, y = series(d, "mean_links")
        a2.plot(x, y, m + "--", color=color, alpha=0.7, label=f"{label}: mean per node")
        if d is hv:
            annotate(a2, x, [round(v, 1) for v in y], color, -12)
    a2.axhline(av, color="tab:blue", ls=":", alpha=0.6, label=f"active_view_size = {av}")
    a2.set_yscale("log")
    a2.set_yticks([1, 2, 5, 10, 20, 50, 100])
    a2.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    a2.set_xlabel("nodes N")
    a2.set_ylabel("distribution links per node")
    a2.set_title("Links per node")
    a2.set_xscale("log", base=2)
    a2.margins(x=0.1)
    a2.set_xticks(ns)
    a2.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    a2.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    a2.grid(True, alpha=0.3)
    a2.legend(fontsize=8, loc="upper left")
    fig.suptitle("libcluster_hyparview: Erlang distribution links in steady state (measured after the idle window)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_scaling(cluster, path):
    """Links, idle CPU over the control, convergence and repair against N,
    both strategies on each panel: where the lines cross is the crossover."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    res, c = cluster["results"], cluster["config"]
    hv, fm = by(res, "hyparview"), by(res, "fullmesh")
    ns = sorted(set(hv) | set(fm))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.2))
    styles = ((fm, "fullmesh", "full mesh", "tab:red", "o"), (hv, "hyparview", "HyParView", "tab:blue", "s"))

    def xaxis(ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns)
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.margins(x=0.1)
        ax.set_xlabel("nodes N")
        ax.grid(True, which="both", alpha=0.3)

    def draw(ax, value, missing, fmt_label, title, ylabel, log=False):
        for d, mode, label, color, m in styles:
            xs = [n for n in ns if n in d]
            pts = [(n, value(d[n], n, mode)) for n in xs]
            ok = [(n, v) for n, v in pts if v is not None]
            if ok:
                ax.plot([n for n, _ in ok], [v for _, v in ok], m + "-", color=color, label=label)
                for n, v in ok:
                    ax.annotate(fmt_label(v), (n, v), textcoords="offset points",
                                xytext=(6, 4 if d is fm else -12), fontsize=8, color=color)
            for n, v in pts:
                if v is None and missing is not None:
                    y, text = missing(d[n])
                    ax.plot([n], [y], "x", color=color, ms=10, mew=2)
                    ax.annotate(text, (n, y), textcoords="offset points", xytext=(-60, 6),
                                fontsize=8, color=color)
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        xaxis(ax)
        ax.legend(fontsize=8)

    draw(axes[0][0], lambda r, n, mode: g(r, "links", "links"), None, lambda v: f"{v:,}",
         "Distribution links (total, steady state)", "links", log=True)
    draw(axes[0][1], lambda r, n, mode: extra_idle(res, n, mode), None, lambda v: f"{v:.3f}",
         "Idle CPU per node above the unclustered control", "% of one core")
    axes[0][1].axhline(0, color="grey", lw=0.8)
    conv_dl, rep_dl = c.get("conv_deadline_s", 0), c.get("repair_deadline_s", 0)
    draw(axes[1][0],
         lambda r, n, mode: None if r.get("convergence_ms") is None else r["convergence_ms"] / 1000,
         lambda r: (conv_dl, f"not converged in {conv_dl} s"), lambda v: f"{v:.1f}",
         "Convergence (one component, Node.list() = active view)", "seconds from the first start", log=True)
    draw(axes[1][1],
         lambda r, n, mode: None if g(r, "repair", "repair_ms") is None else r["repair"]["repair_ms"] / 1000,
         lambda r: (rep_dl, f"not repaired in {rep_dl} s"), lambda v: f"{v:.2f}",
         f"Repair after kill -9 of {int(c.get('kill_frac', 0.25) * 100)} %", "seconds from the kill", log=True)
    ov = c.get("hyparview_overrides")
    fig.suptitle("libcluster_hyparview vs full mesh on real BEAM nodes (one run per N, "
                 + ("library defaults)" if ov == {} else f"HyParView config {ov or c.get('hyparview')})"),
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def crossover(cluster):
    """Smallest measured N from which HyParView stays below full mesh, per metric."""
    res = cluster["results"]
    hv, fm = by(res, "hyparview"), by(res, "fullmesh")
    ns = sorted(set(hv) & set(fm))
    big = float("inf")
    metrics = {
        "idle CPU over the control": lambda n, mode: extra_idle(res, n, mode),
        "convergence": lambda n, mode: (lambda v: big if v is None else v)(
            g(by(res, mode).get(n), "convergence_ms")),
        "repair": lambda n, mode: (lambda v: big if v is None else v)(
            g(by(res, mode).get(n), "repair", "repair_ms")),
    }
    out = {}
    for name, v in metrics.items():
        below = [n for n in ns if v(n, "hyparview") is not None and v(n, "fullmesh") is not None
                 and v(n, "hyparview") < v(n, "fullmesh")]
        first = None
        for n in reversed(ns):
            if n in below:
                first = n
            else:
                break
        out[name] = first
    return out


def markdown(cluster, sim, png):
    out = ["# libcluster_hyparview benchmark results", ""]
    m = cluster["machine"] if cluster else None
    if m:
        out += [f"Generated {cluster['generated_at']} by `bash bench/run.sh`.", "",
                "## Machine", "",
                f"- {m['logical_cpus']} logical CPUs ({m['cpu_model']}), {m['mem_mib']:,} MiB RAM, {m['os']}, {m['kernel']}",
                f"- OTP {m['otp']} (erts {m['erts']}), Elixir {m['elixir']}, {m['rustc']}",
                f"- NIF: release build (`cargo build --release` via the project's Mix compiler), "
                f"MIX_ENV={g(m, 'nif_build', 'mix_env')}",
                (f"- code: commit {g(m, 'git', 'head')}"
                 + (f" plus uncommitted edits in {', '.join(x.split()[-1] for x in g(m, 'git', 'uncommitted'))}"
                    if g(m, "git", "uncommitted") else "") + "\n" if g(m, "git", "head") else "")
                + f"- load average at start {m['loadavg']}, at end {m.get('loadavg_end')} "
                "(the machine is shared; compare ratios within this run, not absolute numbers across runs)", ""]
        c = cluster["config"]
        for run in cluster.get("runs", []):
            rm = run["machine"]
            out.insert(-1, f"- run {run['run']} (N = {', '.join(map(str, run['sizes']))}): {run['generated_at']}, "
                           f"commit {g(rm, 'git', 'head')}, load average {rm['loadavg']} at start, "
                           f"{rm.get('loadavg_end')} at end")
        if cluster.get("runs"):
            out.insert(-1, "")
        ov = c.get("hyparview_overrides")
        hvc = ("the library's defaults (`HyParView.Config`), nothing overridden" if ov == {} else
               f"overrides `{', '.join(f'{k}: {v}' for k, v in (ov or c['hyparview']).items())}`, other keys default")
        out += ["## Setup", "",
                f"- Real BEAM nodes on 127.0.0.1 started with `:peer` (`connection: :standard_io`, "
                f"`-name benchN@127.0.0.1`, `{c['vm_flags']}`, the same for every mode; see bench/README.md), "
                f"booted {c.get('boot_concurrency', 4)} at a time; the controller is not distributed, so it adds no links.",
                f"- HyParView config: {hvc}; each node gets the first {c['contacts_per_node']} nodes as contacts "
                "and its own free port on 127.0.0.1.",
                f"- Full-mesh baseline: each node `Node.connect/1`s every other node, re-checking every "
                f"{c['fullmesh_recheck_ms']} ms (what libcluster's Epmd/Gossip strategies amount to).",
                "- Convergence is timed from the strategy start (every node starts at one agreed instant, right after the VMs are up; the same for both strategies) until every "
                "`Node.list()` equals the node's active view and the link graph is connected "
                f"(full mesh: everyone sees everyone), holding for {c['stable_ms']} ms (polled every {c['poll_ms']} ms, "
                "each poll stamped when the last node answered, so times are upper bounds; a poll of busy nodes "
                "can itself take seconds: see \"slowest poll\"). "
                "HyParView nodes preload the project's modules and the NIF at boot, as a release in embedded mode does.",
                f"- Repair: `kill -9` of {int(c['kill_frac']*100)} % of the nodes (seeded random choice); same property on the survivors. "
                "Detection: kill timestamp vs `peer_down` timestamps (`HyParView.subscribe`; full mesh: `:nodedown`) "
                "from `System.os_time` on each survivor, for every (survivor, killed active neighbour) pair.",
                f"- Idle cost: {c['idle_s']} s window after convergence (+{c['settle_s']} s settle"
                + (f", and not before {c['idle_after_start_s']} s after the first strategy start: HyParView's "
                   "startup crossing, a transient, is over by then" if c.get('idle_after_start_s') else "")
                + "), from /proc "
                "(utime+stime, VmRSS, task count, wchar) and `:inet.getstat` on the distribution sockets; "
                "the control row is the same VM with nothing clustered and no HyParView.", ""]
        out += ["- Connect storm: from just before the first strategy start until convergence was confirmed: "
                "CPU per node (/proc schedstat of every thread), bytes sent on distribution links, the maximum "
                f"`net_kernel` message queue length (sampled every {c.get('probe_ms', 100)} ms on each node) and "
                "`busy_dist_port` events (`:erlang.system_monitor/2`); the same for the repair, on the survivors.", ""]
        out += ["## Results", "", md_table(HEADER, cluster_rows(cluster)), ""]
        cross = crossover(cluster)
        out += ["Crossover (smallest N from which HyParView stays below full mesh, in this report): "
                + "; ".join(f"{k}: {('N = ' + str(v)) if v else 'not within the measured N'}" for k, v in cross.items())
                + ".", ""]
        if png:
            out += ["![links, idle CPU, convergence and repair vs N](scaling.png)", "",
                    f"![links vs N]({os.path.basename(png)})", ""]
        out += ["### Connect storm and repair", "", md_table(STORM_HEADER, storm_rows(cluster)), ""]
        extra = []
        for r in sorted(cluster["results"], key=lambda r: r["n"]):
            if r.get("mode") != "hyparview" or "error" in r:
                continue
            rep = r.get("repair", {})
            kinds = g(r, "idle", "summary", "overlay_msgs_by_kind_per_node_per_shuffle") or {}
            kinds = ", ".join(f"{k} {v:.2f}" for k, v in sorted(kinds.items()) if v)
            refill = rep.get("refill") or {}
            extra.append([r["n"], f(r.get("start_spread_ms")), f(r.get("convergence_poll_max_ms")),
                          f(r.get("overlay_convergence_ms")),
                          f(g(r, "links", "active_view_mean")), f(g(r, "links", "links_outside_active_view")),
                          f(rep.get("killed")), f(rep.get("overlay_repair_ms")),
                          f(g(rep, "dist_nodedown", "median_ms"), 1),
                          f(refill.get("ms")), f(refill.get("mean_links")), kinds or "n/a",
                          f(g(r, "idle", "summary", "nodes_with_link_changes"))])
        if extra:
            out += ["### HyParView details", "",
                    md_table(["N", "start spread ms", "slowest poll ms", "active views alone converge ms", "mean active view",
                              "Node.list entries outside active view (steady)", "killed",
                              "active views alone repair ms", "dist nodedown median ms",
                              "views refilled ms", "mean links after refill",
                              "overlay msgs/node/shuffle by kind", "nodes whose links moved while idle"], extra), "",
                    "\"Active views alone\" is the same property on the HyParView active views only "
                    "(symmetric, connected, no dead peer), ignoring `Node.list()`: it separates the protocol "
                    "from the strategy's distribution links. \"Views refilled\": survivors back to >= 95 % of the "
                    "pre-kill mean active-view size.", ""]
        errs = [r for r in cluster["results"] if "error" in r]
        for r in errs:
            out += [f"- **{r['mode']} N={r['n']} failed:** `{r['error'].splitlines()[0]}`"]
        if errs:
            out.append("")
    if sim:
        out += ["## Simulator", "",
                f"`{sim['command']}`: wall **{f(sim['wall_s'])} s** (CPU {f(sim['cpu_s'])} s, max RSS {f(sim['max_rss_mib'], 0)} MiB), "
                f"{f(sim['events'])} events ({f(sim['events_per_s'], 0)}/s), {f(sim['messages'])} protocol messages "
                f"({f(sim['messages_per_s'], 0)}/s), {f(sim['virtual_ms'])} ms of virtual time; "
                f"load average {' '.join(sim.get('loadavg_start', []))} before, {' '.join(sim.get('loadavg', []))} after. "
                + (f"Built from {sim['git_head']}" + (" plus uncommitted core/simulator edits in the tree" if sim.get("sources_modified") else "") + ". " if sim.get("git_head") else "")
                + "The simulator is single-threaded: CPU time is the machine-independent figure; wall time "
                "exceeds it only when other jobs compete for the 2 cores.", ""]
    rows = targets(cluster, sim)
    if rows:
        out += ["## Targets", "", md_table(["target", "measured", "verdict"], rows), ""]
    return "\n".join(out)


def readme_table(cluster):
    """The compact table of the README's Performance section."""
    res = cluster["results"]
    hv, fm = by(res, "hyparview"), by(res, "fullmesh")

    def s(ms):
        return "no" if ms is None else f"{ms / 1000:,.2f} s" if ms < 10_000 else f"{ms / 1000:,.1f} s"

    rows = []
    for n in sorted(set(hv) | set(fm)):
        h, m = hv.get(n, {}), fm.get(n, {})
        xh, xm = extra_idle(res, n, "hyparview"), extra_idle(res, n, "fullmesh")
        r = ratio(xh, xm)
        ch, cm = h.get("convergence_ms"), m.get("convergence_ms")
        rc = ratio(ch, cm)
        rows.append([
            n, f"{f(g(h, 'links', 'links'))} / {f(g(m, 'links', 'links'))}",
            f"{f(g(h, 'links', 'max_links'))} / {f(g(m, 'links', 'max_links'))}",
            f"{s(ch)} / {s(cm)}" + (f" ({rc:.2f})" if rc is not None else ""),
            f"{s(g(h, 'repair', 'repair_ms'))} / {s(g(m, 'repair', 'repair_ms'))}",
            f"{f(xh, 3)} / {f(xm, 3)}" + (f" ({r:.2f})" if r is not None else ""),
            f"{f(g(h, 'storm', 'cpu_s_mean'))} / {f(g(m, 'storm', 'cpu_s_mean'))}",
            f"{f(g(h, 'storm', 'net_kernel_qmax'))} / {f(g(m, 'storm', 'net_kernel_qmax'))}",
            f"{f(g(h, 'storm', 'busy_dist_port_events'))} / {f(g(m, 'storm', 'busy_dist_port_events'))}",
            g(cluster, "runs") and next((g(x, "machine", "git", "head") for x in cluster["runs"]
                                         if n in x["sizes"]), None) or g(cluster, "machine", "git", "head"),
        ])
    return md_table(["N", "links", "max links/node", "converge (ratio)", "repair after kill -9 of N/4",
                     "idle CPU %/node over control (ratio)", "connect-storm CPU s/node",
                     "net_kernel queue max", "busy_dist_port events", "commit"], rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="bench/results/runs/*.json")
    ap.add_argument("--cluster", default="bench/results/cluster.json")
    ap.add_argument("--sim", default="bench/results/sim.json")
    ap.add_argument("--dir", default="bench/results")
    ap.add_argument("--readme-table", action="store_true",
                    help="print the README's Performance table (HyParView / full mesh) and exit")
    a = ap.parse_args()
    paths = sorted(glob.glob(a.runs))
    if paths:
        merged = merge(paths)
        with open(a.cluster, "w") as fh:
            json.dump(merged, fh, indent=1, sort_keys=True)
    cluster, sim = load(a.cluster), load(a.sim)
    if a.readme_table:
        print(readme_table(cluster))
        return
    if not cluster and not sim:
        sys.exit("no results to report")
    os.makedirs(a.dir, exist_ok=True)
    png = None
    if cluster and any(r.get("mode") != "none" and "error" not in r for r in cluster["results"]):
        png = os.path.join(a.dir, "links.png")
        plot(cluster, png)
        plot_scaling(cluster, os.path.join(a.dir, "scaling.png"))
    with open(os.path.join(a.dir, "latest.json"), "w") as fh:
        json.dump({"cluster": cluster, "sim": sim}, fh, indent=2, sort_keys=True)
    md = markdown(cluster, sim, png)
    with open(os.path.join(a.dir, "latest.md"), "w") as fh:
        fh.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
