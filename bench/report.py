#!/usr/bin/env python3
"""Merge the cluster and simulator results into bench/results/latest.{json,md}
and plot links against N (bench/results/links.png).

    python3 bench/report.py [--cluster bench/results/cluster.json]
                            [--sim bench/results/sim.json] [--dir bench/results]
"""
import argparse
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
        rows.append([r["mode"], r["n"], f(l.get("links")), f(l.get("max_links")), f(l.get("mean_links")),
                     f(r.get("convergence_ms")), f(rep.get("repair_ms")),
                     f(det.get("median_ms"), 1), f(det.get("max_ms"), 1),
                     f(idle.get("cpu_pct_mean"), 3), f(idle.get("rss_mib_mean"), 1),
                     f(idle.get("threads_mean"), 1), f(idle.get("dist_out_bps_mean"), 1),
                     f(idle.get("wchar_bps_mean"), 0),
                     f(idle.get("overlay_msgs_per_node_per_shuffle"))])
    for r in sorted(cluster["results"], key=lambda r: r["n"]):
        if r.get("mode") == "none" and "error" not in r:
            idle = r["idle"]["summary"]
            rows.append(["none (control)", r["n"], "0", "0", "0", "-", "-", "-", "-",
                         f(idle["cpu_pct_mean"], 3), f(idle["rss_mib_mean"], 1), f(idle["threads_mean"], 1),
                         f(idle["dist_out_bps_mean"], 1), f(idle.get("wchar_bps_mean"), 0), "-"])
    return rows


HEADER = ["strategy", "N", "links", "max/node", "mean/node", "converge ms", "repair ms",
          "detect median ms", "detect max ms", "idle CPU %/node", "RSS MiB/node", "OS threads/node",
          "dist bytes out/s/node", "all bytes written/s/node", "overlay msgs/node/shuffle"]


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
        out += ["## Setup", "",
                f"- Real BEAM nodes on 127.0.0.1 started with `:peer` (`connection: :standard_io`, "
                f"`-name benchN@127.0.0.1`, `{c['vm_flags']}`); the controller is not distributed, so it adds no links.",
                f"- HyParView config: `{', '.join(f'{k}: {v}' for k, v in c['hyparview'].items())}` (other keys default); each node gets the first {c['contacts_per_node']} nodes as contacts.",
                f"- Full-mesh baseline: each node `Node.connect/1`s every other node, re-checking every "
                f"{c['fullmesh_recheck_ms']} ms (what libcluster's Epmd/Gossip strategies amount to).",
                "- Convergence is timed from the first strategy start (all nodes are started in parallel right after the VMs are up) until every "
                "`Node.list()` equals the node's active view and the link graph is connected "
                f"(full mesh: everyone sees everyone), holding for {c['stable_ms']} ms (polled every {c['poll_ms']} ms, "
                "each poll stamped when the last node answered, so times are upper bounds; a poll of busy nodes "
                "can itself take seconds: see \"slowest poll\"). "
                "HyParView nodes preload the project's modules and the NIF at boot, as a release in embedded mode does.",
                f"- Repair: `kill -9` of {int(c['kill_frac']*100)} % of the nodes (seeded random choice); same property on the survivors. "
                "Detection: kill timestamp vs `peer_down` timestamps (`HyParView.subscribe`; full mesh: `:nodedown`) "
                "from `System.os_time` on each survivor, for every (survivor, killed active neighbour) pair.",
                f"- Idle cost: {c['idle_s']} s window after convergence (+{c['settle_s']} s settle), from /proc "
                "(utime+stime, VmRSS, task count, wchar) and `:inet.getstat` on the distribution sockets; "
                "the control row is the same VM with nothing clustered and no HyParView.", ""]
        out += ["## Results", "", md_table(HEADER, cluster_rows(cluster)), ""]
        if png:
            out += [f"![links vs N]({os.path.basename(png)})", ""]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", default="bench/results/cluster.json")
    ap.add_argument("--sim", default="bench/results/sim.json")
    ap.add_argument("--dir", default="bench/results")
    a = ap.parse_args()
    cluster, sim = load(a.cluster), load(a.sim)
    if not cluster and not sim:
        sys.exit("no results to report")
    os.makedirs(a.dir, exist_ok=True)
    png = None
    if cluster and any(r.get("mode") != "none" and "error" not in r for r in cluster["results"]):
        png = os.path.join(a.dir, "links.png")
        plot(cluster, png)
    with open(os.path.join(a.dir, "latest.json"), "w") as fh:
        json.dump({"cluster": cluster, "sim": sim}, fh, indent=2, sort_keys=True)
    md = markdown(cluster, sim, png)
    with open(os.path.join(a.dir, "latest.md"), "w") as fh:
        fh.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
