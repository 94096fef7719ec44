# Multi-node benchmark: Cluster.Strategy.HyParView vs a full-mesh baseline
# (vs an unclustered control node for idle cost), on real local BEAM nodes.
# A script, not library code: longer than ~600 lines because it carries its own
# measuring, stamping and reporting; node boot and waiting come from dev/.
#
#   MIX_ENV=test mix run --no-start bench/cluster_bench.exs -- [--sizes 16,32,64] ...
#   (normally through `bash bench/run.sh`, which also runs the simulator and report)
#
# The controller is NOT distributed: peers are driven over `:peer`'s
# standard_io control channel, so the controller adds no distribution links.
# Every peer gets identical VM flags and code paths; only the started
# strategy differs between modes.

Code.require_file("json.ex", __DIR__)
Code.require_file("host.ex", __DIR__)

[{BenchAgent, agent_bin}] = Code.compile_file(Path.join(__DIR__, "agent.ex"))

defmodule Bench do
  @moduledoc false

  alias HyParView.Dev.{LocalCluster, Overlay}

  @defaults %{
    sizes: [16, 64, 128, 256],
    modes: [:none, :fullmesh, :hyparview],
    idle: 30,
    # After convergence, before the idle window (the control: at most 3 s).
    settle: 60,
    # ...and never sooner than this long (s) after the first strategy start,
    # in both clustered modes; nil = 11 shuffle intervals of the HyParView
    # config (110 s with the defaults): HyParView's crossing, which merges a
    # fleet started at once, runs at 0.5 to 10.5 intervals after the join
    # and is a startup transient, not idle cost.
    after_start: nil,
    kill_frac: 0.25,
    seed: 1,
    conv_deadline: 90,
    repair_deadline: 30,
    refill_window: 15,
    stable_ms: 1_000,
    poll_ms: 100,
    mesh_interval: 5_000,
    out: "bench/results/cluster.json",
    contacts: 2,
    boot_concurrency: 8,
    # net_kernel queue sampling period during the connect storm and repair.
    probe_ms: 100,
    # Stop booting when the machine has less than this much memory available.
    min_free_mib: 1_536,
    # The library's defaults (HyParView.Config): the bench passes only what it
    # must (listen port, contacts); `--hv key=value,...` overrides keys.
    hv: []
  }

  def parse_args(argv) do
    {opts, _, bad} =
      OptionParser.parse(argv,
        strict: [
          sizes: :string,
          modes: :string,
          idle: :integer,
          settle: :integer,
          after_start: :integer,
          kill_frac: :float,
          seed: :integer,
          conv_deadline: :integer,
          repair_deadline: :integer,
          refill_window: :integer,
          out: :string,
          hv: :string,
          contacts: :integer,
          boot_concurrency: :integer
        ]
      )

    if bad != [], do: raise(ArgumentError, "unknown options: #{inspect(bad)}")

    Enum.reduce(opts, @defaults, fn
      {:sizes, s}, acc -> %{acc | sizes: ints(s)}
      {:modes, s}, acc -> %{acc | modes: s |> String.split(",") |> Enum.map(&mode/1)}
      {:hv, s}, acc -> %{acc | hv: Keyword.merge(acc.hv, kv(s))}
      {k, v}, acc -> Map.put(acc, k, v)
    end)
  end

  defp ints(s), do: s |> String.split(",", trim: true) |> Enum.map(&String.to_integer/1)
  defp mode(m) when m in ["none", "fullmesh", "hyparview"], do: String.to_atom(m)
  defp mode(m), do: raise(ArgumentError, "unknown mode #{m}")

  defp kv(s) do
    for pair <- String.split(s, ",", trim: true) do
      [k, v] = String.split(pair, "=")
      {String.to_atom(k), String.to_integer(v)}
    end
  end

  # ------------------------------------------------------------------ peers

  # The node boot, free ports, the wait and the overlay checks are the
  # harness's (dev/: HyParView.Dev.LocalCluster, HyParView.Dev.Overlay); the
  # VM flags are the bench's own, the same for every mode.
  #
  # Trimmed so that 256 VMs fit on 2 cores and 24 GiB (bench/README.md says
  # what each flag does): one scheduler, one dirty CPU and one dirty IO
  # scheduler, one async thread, no busy waiting by any scheduler type, and
  # smaller process and port tables. Allocators keep OTP's defaults.
  @vm_flags ~w(+S 1:1 +SDcpu 1:1 +SDio 1 +A 1 +sbwt none +sbwtdcpu none +sbwtdio none
               +P 16384 +Q 4096 -connect_all false -setcookie hyparview_bench)

  def vm_flags, do: Enum.join(@vm_flags, " ")

  def peer_args do
    Enum.map(@vm_flags, &String.to_charlist/1) ++ LocalCluster.code_path_args()
  end

  # Boots in parallel, `boot_concurrency` VMs at a time (boot is CPU-bound:
  # more in flight only queues on the 2 cores). A VM that fails to come up is
  # retried (LocalCluster.start_node/3); a machine short of memory stops the
  # run before the OOM killer picks something.
  def boot(n, mode, agent_bin, cfg) do
    args = peer_args()

    1..n
    |> Task.async_stream(
      fn i ->
        free = mem_available_mib()

        if free != nil and free < cfg.min_free_mib,
          do: raise("only #{free} MiB available after #{i - 1} nodes: stopping the boot")

        node = :"bench#{i}@127.0.0.1"
        {:ok, pid} = LocalCluster.start_node(node, args, wait_boot: 180_000, attempts: 3)

        {:module, BenchAgent} =
          :peer.call(pid, :code, :load_binary, [BenchAgent, ~c"bench/agent.ex", agent_bin])

        %{os_pid: os_pid} = :peer.call(pid, BenchAgent, :boot, [mode], 120_000)
        :ok = :peer.call(pid, BenchAgent, :start_probe, [], 15_000)
        %{i: i, pid: pid, node: node, os_pid: os_pid}
      end,
      max_concurrency: cfg.boot_concurrency,
      timeout: 600_000,
      ordered: true
    )
    |> Enum.map(fn {:ok, p} -> p end)
  end

  def mem_available_mib do
    case File.read("/proc/meminfo") do
      {:ok, s} ->
        [_, kb] = Regex.run(~r/MemAvailable:\s+(\d+)/, s)
        div(String.to_integer(kb), 1024)

      _ ->
        nil
    end
  end

  def stop_all(peers), do: BenchHost.stop_peers(peers, ~c"bench", 64, 15_000)

  defdelegate pcall(peers, fun, timeout \\ 15_000, concurrency \\ 64), to: BenchHost

  def call(p, f, a, timeout \\ 15_000), do: :peer.call(p.pid, BenchAgent, f, a, timeout)

  # ---------------------------------------------------------------- analysis

  def states(peers, mode) do
    peers
    |> pcall(fn p -> call(p, :state, [mode], 5_000) end, 5_000)
    |> Enum.map(fn
      {_n, %{} = s} -> s
      {n, _err} -> %{node: n, nodes: [], active: nil, error: true}
    end)
  end

  def analyze(states, mode, alive) do
    alive_set = MapSet.new(alive)

    # Distribution links among the alive nodes.
    links =
      Map.new(alive, fn n -> {n, []} end) |> Map.merge(Map.new(states, &{&1.node, &1.nodes}))

    links = Map.take(links, alive)
    edges = Overlay.edges(links)
    degrees = Enum.map(states, &length(&1.nodes))
    connected = Overlay.connected?(links)
    symmetric = Overlay.asymmetric(links) == []

    {ok, mismatched} =
      case mode do
        :hyparview ->
          bad =
            Enum.count(states, fn s ->
              s.active == nil or MapSet.new(s.active) != MapSet.new(s.nodes)
            end)

          # A killed node still listed (in Node.list or the active view) means
          # the failure is not handled yet, even if both sides agree.
          stale =
            Enum.count(states, fn s ->
              Enum.any?(s.nodes ++ (s.active || []), &(not MapSet.member?(alive_set, &1)))
            end)

          {bad == 0 and stale == 0 and connected, bad}

        :fullmesh ->
          bad = Enum.count(states, &(MapSet.new(&1.nodes) != MapSet.delete(alive_set, &1.node)))
          {bad == 0, bad}
      end

    active_sizes = for s <- states, s.active != nil, do: length(s.active)

    # The overlay alone: active views symmetric and connected (among alive).
    views =
      Map.new(alive, fn n -> {n, []} end)
      |> Map.merge(Map.new(states, &{&1.node, &1.active || []}))
      |> Map.take(alive)

    overlay_symmetric = Overlay.asymmetric(views) == []

    overlay_ok =
      mode == :hyparview and overlay_symmetric and Overlay.connected?(views) and
        Enum.all?(states, fn s ->
          s.active != nil and Enum.all?(s.active, &MapSet.member?(alive_set, &1))
        end)

    extra_links = Enum.sum(for s <- states, s.active != nil, do: length(s.nodes -- s.active))

    # For the log/report: which nodes break the property and how.
    mismatch_detail =
      if mode == :hyparview do
        for s <- states,
            s.active == nil or MapSet.new(s.active) != MapSet.new(s.nodes),
            do: %{
              node: s.node,
              linked_not_active: s.nodes -- (s.active || []),
              active_not_linked: (s.active || []) -- s.nodes
            }
      else
        []
      end

    %{
      ok: ok,
      links: MapSet.size(edges),
      max_links: Enum.max(degrees, fn -> 0 end),
      mean_links: mean(degrees),
      min_links: Enum.min(degrees, fn -> 0 end),
      connected: connected,
      symmetric: symmetric,
      mismatched_nodes: mismatched,
      overlay_ok: overlay_ok,
      overlay_symmetric: overlay_symmetric,
      # Directed count of Node.list entries that are not in the active view.
      links_outside_active_view: extra_links,
      mismatch_detail: Enum.take(mismatch_detail, 5),
      active_view_max: Enum.max(active_sizes, fn -> nil end),
      active_view_mean: if(active_sizes == [], do: nil, else: mean(active_sizes))
    }
  end

  @doc """
  Polls until the property holds continuously for `stable_ms` (a single
  lucky poll during churn does not count). Returns the time of the first
  poll of that stable stretch, relative to t0 (monotonic ms).
  """
  def wait_converged(peers, mode, alive, t0, cfg, deadline_s) do
    st = %{
      deadline: t0 + deadline_s * 1_000,
      t0: t0,
      since: nil,
      osince: nil,
      overlay_ms: nil,
      polls: 0,
      poll_max_ms: 0,
      timeline: []
    }

    loop_conv(peers, mode, alive, cfg, st)
  end

  # Tracks two properties: `ok` (the full one, which is what we time) and
  # `overlay_ok` (active views alone are symmetric and connected), so a miss
  # can be attributed to the protocol core or to the strategy's dist links.
  defp loop_conv(peers, mode, alive, cfg, st) do
    t_begin = now()
    a = analyze(states(peers, mode), mode, alive)
    # Stamped at the END of the poll: every node had answered by then, so the
    # times are upper bounds. A poll's duration is its resolution (busy nodes
    # answer late), hence also recorded.
    t = now()
    st = %{st | polls: st.polls + 1, poll_max_ms: max(st.poll_max_ms, t - t_begin)}

    osince = if a.overlay_ok, do: st.osince || t, else: nil

    overlay_ms =
      st.overlay_ms ||
        if(osince != nil and t - osince >= cfg.stable_ms, do: osince - st.t0)

    # Compact timeline (only changes) to show where time goes: overlay vs links.
    short = fn n -> n |> Atom.to_string() |> String.split("@") |> hd() end

    why =
      for d <- Enum.take(a.mismatch_detail, 2) do
        "#{short.(d.node)} +#{Enum.map_join(d.linked_not_active, ",", short)} " <>
          "-#{Enum.map_join(d.active_not_linked, ",", short)}"
      end

    point = [t - st.t0, a.ok, a.overlay_ok, a.mismatched_nodes, a.links, why]

    timeline =
      case st.timeline do
        [[_ | same] | _] when same == tl(point) -> st.timeline
        tlist -> [point | tlist]
      end

    st = %{st | osince: osince, overlay_ms: overlay_ms, timeline: timeline}

    res = fn conv, ms ->
      %{
        converged: conv,
        ms: ms,
        overlay_ms: overlay_ms,
        analysis: a,
        polls: st.polls,
        poll_max_ms: st.poll_max_ms,
        timeline: Enum.reverse(st.timeline)
      }
    end

    cond do
      a.ok and st.since != nil and t - st.since >= cfg.stable_ms ->
        res.(true, st.since - st.t0)

      t > st.deadline ->
        res.(false, nil)

      true ->
        Process.sleep(cfg.poll_ms)
        loop_conv(peers, mode, alive, cfg, %{st | since: if(a.ok, do: st.since || t)})
    end
  end

  # -------------------------------------------------------------- /proc stats

  def proc_sample(os_pid) do
    base = "/proc/#{os_pid}"

    with {:ok, stat} <- File.read(base <> "/stat"),
         {:ok, status} <- File.read(base <> "/status"),
         {:ok, io} <- File.read(base <> "/io"),
         {:ok, tasks} <- File.ls(base <> "/task") do
      # Fields after the ")" of comm: state is field 3; utime/stime are 14/15.
      [_, after_comm] = String.split(stat, ") ", parts: 2)
      f = String.split(after_comm, " ")
      ticks = String.to_integer(Enum.at(f, 11)) + String.to_integer(Enum.at(f, 12))
      rss_kb = status_kb(status, "VmRSS")

      %{
        ticks: ticks,
        cpu_ns: run_ns(base, tasks),
        rss_kb: rss_kb,
        threads: length(tasks),
        wchar: io_field(io, "wchar"),
        rchar: io_field(io, "rchar")
      }
    else
      _ -> nil
    end
  end

  # CPU time in ns, summed over the threads' schedstat (first field: time on
  # the CPU): 10 ms ticks are too coarse for 0.01 % of a core over 30 s. A
  # thread that exits between two samples drops out, hence `threads` too.
  defp run_ns(base, tasks) do
    Enum.reduce(tasks, 0, fn t, acc ->
      case File.read("#{base}/task/#{t}/schedstat") do
        {:ok, s} -> acc + (s |> String.split(" ") |> hd() |> String.to_integer())
        _ -> acc
      end
    end)
  end

  def cpu_pct(a, b, secs, tck) do
    if a.cpu_ns > 0 and b.cpu_ns > 0,
      do: (b.cpu_ns - a.cpu_ns) / 1.0e9 / secs * 100,
      else: (b.ticks - a.ticks) / tck / secs * 100
  end

  defp status_kb(status, key) do
    [_, v] = Regex.run(~r/^#{key}:\s+(\d+) kB/m, status)
    String.to_integer(v)
  end

  defp io_field(io, key) do
    [_, v] = Regex.run(~r/^#{key}: (\d+)/m, io)
    String.to_integer(v)
  end

  def clk_tck do
    case System.cmd("getconf", ["CLK_TCK"]) do
      {v, 0} -> String.to_integer(String.trim(v))
      _ -> 100
    end
  end

  # ------------------------------------------------------------- idle window

  @doc """
  Seconds after the first strategy start before which the idle window does
  not begin (`--after-start`; default 15 shuffle intervals).
  """
  def after_start(cfg) do
    cfg.after_start ||
      div(15 * HyParView.Config.new(cfg.hv).shuffle_interval + 999, 1_000)
  end

  # `t0`: the first strategy start (nil for the control).
  def idle_window(peers, mode, cfg, t0 \\ nil) do
    tck = clk_tck()
    # The strategies settle (views fill, the mesh's last connects finish)
    # and HyParView's startup crossing ends; the control has nothing to
    # settle.
    case t0 do
      nil ->
        Process.sleep(min(cfg.settle, 3) * 1_000)

      t0 ->
        Process.sleep(max(cfg.settle * 1_000, t0 + after_start(cfg) * 1_000 - now()))
    end

    # CPU over [p0, p1] (which includes the two sample calls, the same in
    # every mode); bytes and messages over each node's own [s0, s1] stamps.
    t0_window = now()
    p0 = Map.new(peers, &{&1.node, proc_sample(&1.os_pid)})
    s0 = peers |> pcall(&call(&1, :sample, [mode])) |> Map.new()
    Process.sleep(cfg.idle * 1_000)
    s1 = peers |> pcall(&call(&1, :sample, [mode])) |> Map.new()
    p1 = Map.new(peers, &{&1.node, proc_sample(&1.os_pid)})
    t1 = now()
    secs = (t1 - t0_window) / 1_000

    per_node =
      for p <- peers do
        a = p0[p.node]
        b = p1[p.node]
        x = s0[p.node]
        y = s1[p.node]

        {dist_out, dist_in} = dist_delta(x.dist, y.dist)
        dsecs = (y.t_us - x.t_us) / 1.0e6

        %{
          node: p.node,
          cpu_pct: cpu_pct(a, b, secs, tck),
          rss_mib: b.rss_kb / 1024,
          threads: b.threads,
          dist_out_bps: dist_out / dsecs,
          dist_in_bps: dist_in / dsecs,
          # All bytes the process wrote to any fd (distribution + HyParView TCP
          # + the tiny control-pipe replies at the window edges).
          wchar_bps: (b.wchar - a.wchar) / secs,
          msgs_out: msg_delta(x.counters, y.counters, :messages_out),
          msgs_in: msg_delta(x.counters, y.counters, :messages_in),
          links_changed: MapSet.new(x.nodes) != MapSet.new(y.nodes)
        }
      end

    summary = %{
      window_s: secs,
      # When the window began, after the first strategy start (s).
      began_after_start_s: if(t0, do: (t0_window - t0) / 1_000),
      nodes: length(per_node),
      cpu_pct_mean: mean(Enum.map(per_node, & &1.cpu_pct)),
      cpu_pct_max: Enum.max(Enum.map(per_node, & &1.cpu_pct)),
      rss_mib_mean: mean(Enum.map(per_node, & &1.rss_mib)),
      rss_mib_max: Enum.max(Enum.map(per_node, & &1.rss_mib)),
      threads_mean: mean(Enum.map(per_node, & &1.threads)),
      threads_max: Enum.max(Enum.map(per_node, & &1.threads)),
      dist_out_bps_mean: mean(Enum.map(per_node, & &1.dist_out_bps)),
      dist_out_bps_max: Enum.max(Enum.map(per_node, & &1.dist_out_bps)),
      wchar_bps_mean: mean(Enum.map(per_node, & &1.wchar_bps)),
      nodes_with_link_changes: Enum.count(per_node, & &1.links_changed)
    }

    summary =
      case Enum.map(per_node, & &1.msgs_out) do
        outs when mode == :hyparview ->
          if Enum.any?(outs, &is_nil/1) do
            Map.merge(summary, %{
              overlay_msgs_per_node_per_shuffle: nil,
              overlay_msgs_by_kind: nil
            })
          else
            shuffles = cfg.idle * 1_000 / HyParView.Config.new(cfg.hv).shuffle_interval
            by_kind = Enum.reduce(outs, %{}, &Map.merge(&2, &1, fn _k, a, b -> a + b end))
            total = by_kind |> Map.values() |> Enum.sum()
            n = length(outs)

            Map.merge(summary, %{
              overlay_msgs_per_node_per_shuffle: total / n / shuffles,
              overlay_msgs_by_kind_per_node_per_shuffle:
                Map.new(by_kind, fn {k, v} -> {k, v / n / shuffles} end)
            })
          end

        _ ->
          summary
      end

    %{summary: summary, per_node: per_node}
  end

  defp dist_delta(d0, d1) do
    # Links that existed at both ends only (a changed link set is flagged).
    Enum.reduce(d1, {0, 0}, fn {n, {o1, i1}}, {ao, ai} ->
      case d0[n] do
        {o0, i0} -> {ao + o1 - o0, ai + i1 - i0}
        nil -> {ao + o1, ai + i1}
      end
    end)
  end

  defp msg_delta(nil, _, _), do: nil
  defp msg_delta(_, nil, _), do: nil

  defp msg_delta(c0, c1, key) do
    a = Map.get(c0, key, %{})
    b = Map.get(c1, key, %{})
    Map.new(b, fn {k, v} -> {k, v - Map.get(a, k, 0)} end)
  end

  # ----------------------------------------------------------- storm window

  @doc """
  Opens a measured busy phase (the connect storm, a repair) on `peers`:
  probes open (net_kernel queue sampled every `probe_ms`, busy_dist_port
  counted from zero), /proc and distribution counters read.
  """
  def window_begin(peers, mode, cfg) do
    _ = pcall(peers, &call(&1, :probe_open, [cfg.probe_ms]))
    s0 = peers |> pcall(&call(&1, :sample, [mode])) |> Map.new()
    %{t: now(), procs: Map.new(peers, &{&1.node, proc_sample(&1.os_pid)}), samples: s0}
  end

  @doc "Closes the phase opened by window_begin/3: CPU, bytes, probe counts per node."
  def window_end(peers, mode, w0) do
    p1 = Map.new(peers, &{&1.node, proc_sample(&1.os_pid)})
    t1 = now()
    s1 = peers |> pcall(&call(&1, :sample, [mode])) |> Map.new()
    probes = peers |> pcall(&call(&1, :probe_close, [])) |> Map.new()
    secs = max(t1 - w0.t, 1) / 1_000
    tck = clk_tck()

    per_node =
      for p <- peers, w0.procs[p.node] != nil and p1[p.node] != nil do
        a = w0.procs[p.node]
        b = p1[p.node]

        {out, _in} =
          case {w0.samples[p.node], s1[p.node]} do
            {%{dist: d0}, %{dist: d1}} -> dist_delta(d0, d1)
            _ -> {0, 0}
          end

        pr = probes[p.node]
        pr = if is_map(pr), do: pr, else: %{busy_dist_port: nil, net_kernel_qmax: nil}
        cpu_s = cpu_pct(a, b, 1.0, tck) / 100

        %{
          cpu_s: cpu_s,
          cpu_pct: cpu_s / secs * 100,
          dist_out_bytes: out,
          wchar_bytes: b.wchar - a.wchar,
          busy_dist_port: pr.busy_dist_port,
          net_kernel_qmax: pr.net_kernel_qmax
        }
      end

    col = fn k -> per_node |> Enum.map(&Map.get(&1, k)) |> Enum.reject(&is_nil/1) end

    %{
      window_s: secs,
      nodes: length(per_node),
      cpu_s_mean: mean(col.(:cpu_s)),
      cpu_s_max: Enum.max(col.(:cpu_s), fn -> nil end),
      cpu_pct_mean: mean(col.(:cpu_pct)),
      cpu_pct_max: Enum.max(col.(:cpu_pct), fn -> nil end),
      # Bytes on the links open at the end (a link closed meanwhile is lost).
      dist_out_bps_mean: mean(Enum.map(col.(:dist_out_bytes), &(&1 / secs))),
      dist_out_bytes_total: Enum.sum(col.(:dist_out_bytes)),
      wchar_bps_mean: mean(Enum.map(col.(:wchar_bytes), &(&1 / secs))),
      busy_dist_port_events: Enum.sum(col.(:busy_dist_port)),
      busy_dist_port_nodes: Enum.count(col.(:busy_dist_port), &(&1 > 0)),
      net_kernel_qmax: Enum.max(col.(:net_kernel_qmax), fn -> nil end),
      net_kernel_qmax_mean: mean(col.(:net_kernel_qmax)),
      probe_ms: nil
    }
  end

  # CPU seconds per node (mean) from just before the start calls until all
  # had returned: the part of the storm that is starting the strategy.
  defp start_cpu(peers, before, started) do
    tck = clk_tck()

    peers
    |> Enum.filter(&(before[&1.node] != nil and started[&1.node] != nil))
    |> Enum.map(&(cpu_pct(before[&1.node], started[&1.node], 1.0, tck) / 100))
    |> mean()
  end

  # ------------------------------------------------------------------ repair

  def repair(peers, mode, cfg) do
    alive_before = Enum.map(peers, & &1.node)
    k = max(1, round(length(peers) * cfg.kill_frac))
    :rand.seed(:exsss, {cfg.seed, length(peers), 7})
    victims = Enum.take_random(peers, k)
    victim_nodes = MapSet.new(victims, & &1.node)
    survivors = Enum.reject(peers, &MapSet.member?(victim_nodes, &1.node))
    alive = Enum.map(survivors, & &1.node)

    recorders = pcall(survivors, &call(&1, :start_recorder, [mode]))
    rec_errors = for {n, r} <- recorders, not match?({:ok, _}, r), do: {n, r}

    # Who each survivor had as neighbours right before the kill: those are
    # the (survivor, victim) pairs whose detection latency we measure.
    w0 = window_begin(survivors, mode, cfg)
    # Read last, right before the kill: views move even when idle.
    before = states(survivors, mode)

    neighbour_pairs =
      for s <- before,
          v <- if(mode == :hyparview, do: s.active || [], else: s.nodes),
          MapSet.member?(victim_nodes, v),
          do: {s.node, v}

    kill_us = System.os_time(:microsecond)
    t_kill = now()
    {_, 0} = System.cmd("kill", ["-9" | Enum.map(victims, &Integer.to_string(&1.os_pid))])

    conv = wait_converged(survivors, mode, alive, t_kill, cfg, cfg.repair_deadline)
    storm = window_end(survivors, mode, w0)

    # Keep watching so late events and the view refill are seen too.
    pre = analyze(before, mode, alive_before)
    refill = if mode == :hyparview, do: refill(survivors, mode, alive, t_kill, pre, cfg)

    events = survivors |> pcall(&call(&1, :events, [])) |> Map.new()
    down_kind = if mode == :hyparview, do: :peer_down, else: :nodedown

    lat = latencies(neighbour_pairs, events, down_kind, kill_us)
    dist_lat = latencies(neighbour_pairs, events, :nodedown, kill_us)

    %{
      killed: k,
      victims: Enum.map(victims, & &1.node),
      survivors: length(survivors),
      recorder_errors: rec_errors |> Enum.map(&inspect/1),
      repair_converged: conv.converged,
      repair_ms: conv.ms,
      repair_poll_max_ms: conv.poll_max_ms,
      overlay_repair_ms: conv.overlay_ms,
      repair_timeline: conv.timeline,
      after: conv.analysis,
      refill: refill,
      storm: %{storm | probe_ms: cfg.probe_ms},
      detection: Map.put(lat, :event, down_kind),
      dist_nodedown: dist_lat
    }
    |> Map.put(:survivor_peers, survivors)
  end

  # After repair: how long until the survivors' active views are back to the
  # pre-kill fill (mean degree within 95 %); the minimum is reported, not
  # required (HyParView does not promise every view full).
  defp refill(survivors, mode, alive, t_kill, pre, cfg) do
    deadline = t_kill + cfg.refill_window * 1_000
    target_mean = min(pre.mean_links * 0.95, length(alive) - 1)

    Stream.repeatedly(fn ->
      a = analyze(states(survivors, mode), mode, alive)
      {now(), a}
    end)
    |> Enum.reduce_while(nil, fn {t, a}, _ ->
      cond do
        a.mean_links >= target_mean ->
          {:halt, %{ms: t - t_kill, mean_links: a.mean_links, min_links: a.min_links}}

        t > deadline ->
          {:halt, %{ms: nil, mean_links: a.mean_links, min_links: a.min_links}}

        true ->
          Process.sleep(cfg.poll_ms)
          {:cont, nil}
      end
    end)
    |> Map.merge(%{target_mean: target_mean, pre_kill_min: pre.min_links})
  end

  defp latencies(pairs, events, kind, kill_us) do
    ls =
      for {s, v} <- pairs do
        evs = Map.get(events, s, [])
        evs = if is_list(evs), do: evs, else: []

        case Enum.find(evs, fn {k, n, t} -> k == kind and n == v and t >= kill_us end) do
          {_, _, t} -> (t - kill_us) / 1_000
          nil -> nil
        end
      end

    got = ls |> Enum.reject(&is_nil/1) |> Enum.sort()

    %{
      pairs: length(pairs),
      detected: length(got),
      missed: length(pairs) - length(got),
      median_ms: median(got),
      p90_ms: pct(got, 0.9),
      max_ms: List.last(got)
    }
  end

  # ---------------------------------------------------------------- one run

  def run_mode(n, mode, agent_bin, cfg) do
    log("#{mode} N=#{n}: booting #{n} peers")
    t_boot = now()
    peers = boot(n, mode, agent_bin, cfg)
    boot_ms = now() - t_boot
    nodes = Enum.map(peers, & &1.node)
    free = mem_available_mib()
    log("#{mode} N=#{n}: booted in #{boot_ms} ms, #{free} MiB available")

    try do
      result = %{mode: mode, n: n, boot_ms: boot_ms, mem_available_mib_after_boot: free}

      case mode do
        :none ->
          log("none N=#{n}: idle window #{cfg.idle}s")
          Map.put(result, :idle, idle_window(peers, mode, cfg))

        _ ->
          w0 = window_begin(peers, mode, cfg)
          {start_spread_ms, t0, start_call_ms} = start_strategy(peers, mode, cfg)
          started = Map.new(peers, &{&1.node, proc_sample(&1.os_pid)})

          log(
            "#{mode} N=#{n}: started (spread #{start_spread_ms} ms, per call #{inspect(start_call_ms)}), waiting for convergence"
          )

          conv = wait_converged(peers, mode, nodes, t0, cfg, cfg.conv_deadline)

          storm =
            %{window_end(peers, mode, w0) | probe_ms: cfg.probe_ms}
            |> Map.put(:start_cpu_s_mean, start_cpu(peers, w0.procs, started))

          log("#{mode} N=#{n}: connect storm #{inspect(storm)}")

          log(
            "#{mode} N=#{n}: converged=#{conv.converged} in #{inspect(conv.ms)} ms (overlay alone #{inspect(conv.overlay_ms)} ms): #{inspect(conv.analysis)}"
          )

          debug = if conv.converged, do: [], else: debug_mismatch(peers, conv.analysis)

          result =
            Map.merge(result, %{
              start_spread_ms: start_spread_ms,
              start_call_ms: start_call_ms,
              converged: conv.converged,
              convergence_ms: conv.ms,
              convergence_poll_max_ms: conv.poll_max_ms,
              overlay_convergence_ms: conv.overlay_ms,
              # [ms since start, ok, overlay_ok, nodes with Node.list != active view, links,
              #  first two such nodes as "node +linked-not-active -active-not-linked"]
              convergence_timeline: conv.timeline,
              # From just before the first start until convergence was confirmed.
              storm: storm,
              links_at_convergence: conv.analysis,
              not_converged_debug: debug
            })

          log("#{mode} N=#{n}: idle window #{cfg.idle}s")
          idle = idle_window(peers, mode, cfg, t0)
          # Steady-state links: after settle + idle window, i.e. ~idle+settle s
          # after convergence, once the active views had time to fill.
          links = analyze(states(peers, mode), mode, nodes)
          log("#{mode} N=#{n}: steady state #{inspect(links)}")

          log("#{mode} N=#{n}: kill -9 #{round(n * cfg.kill_frac)} nodes")
          rep = repair(peers, mode, cfg)

          log(
            "#{mode} N=#{n}: repaired=#{rep.repair_converged} in #{inspect(rep.repair_ms)} ms (overlay alone #{inspect(rep.overlay_repair_ms)} ms), refill #{inspect(rep.refill)}, detection #{inspect(rep.detection)}"
          )

          Map.merge(result, %{
            idle: idle,
            links: links,
            repair: Map.delete(rep, :survivor_peers)
          })
      end
    after
      stop_all(peers)
    end
  end

  # When the property never held: what the offending nodes' strategies think.
  defp debug_mismatch(peers, analysis) do
    bad = MapSet.new(Map.get(analysis, :mismatch_detail, []), & &1.node)

    peers
    |> Enum.filter(&MapSet.member?(bad, &1.node))
    |> pcall(&call(&1, :debug_state, []))
    |> Enum.map(fn {_n, d} ->
      log("not converged: #{inspect(d, limit: :infinity, printable_limit: 4_000)}")
      d
    end)
  end

  defp start_strategy(peers, mode, cfg) do
    nodes = Enum.map(peers, & &1.node)

    configs =
      case mode do
        :hyparview ->
          ports = LocalCluster.free_ports(length(peers))
          ids = Enum.zip(nodes, ports)

          contacts =
            ids
            |> Enum.take(cfg.contacts + 1)
            |> Enum.map(fn {n, port} -> HyParView.Peer.new(n, {{127, 0, 0, 1}, port}) end)

          Map.new(ids, fn {n, port} ->
            {n,
             [
               local_peer: HyParView.Peer.new(n, {{127, 0, 0, 1}, port}),
               contacts: contacts |> Enum.reject(&(&1.id == n)) |> Enum.take(cfg.contacts),
               hyparview_config: cfg.hv
             ]}
          end)

        :fullmesh ->
          nil
      end

    # Every node starts at one agreed instant, far enough ahead for every
    # call to arrive; convergence is timed from it.
    lead_ms = 1_000 + 20 * length(peers)
    at = System.os_time(:millisecond) + lead_ms
    t0 = now() + lead_ms

    res =
      pcall(
        peers,
        fn p ->
          case mode do
            :hyparview -> call(p, :start_hyparview, [configs[p.node], at], 60_000)
            :fullmesh -> call(p, :start_fullmesh, [nodes, cfg.mesh_interval, at], 60_000)
          end
        end,
        60_000,
        length(peers)
      )

    case Enum.reject(res, &match?({_, {:ok, _}}, &1)) do
      [] -> :ok
      bad -> raise "strategy start failed: #{inspect(Enum.take(bad, 3))}"
    end

    started = Enum.map(res, fn {_, {:ok, s}} -> s.started end)
    took = Enum.map(res, fn {_, {:ok, s}} -> s.took_ms end)

    # The spread of the starts at the nodes, and how long each start took.
    {Enum.max(started) - Enum.min(started), t0, %{median: median(took), max: Enum.max(took)}}
  end

  # ---------------------------------------------------------------- machine

  def machine do
    os =
      case File.read("/etc/os-release") do
        {:ok, s} ->
          case Regex.run(~r/^PRETTY_NAME="?([^"\n]+)"?/m, s) do
            [_, m] -> m
            _ -> "unknown"
          end

        _ ->
          "unknown"
      end

    mem_mib =
      case File.read("/proc/meminfo") do
        {:ok, s} -> div(String.to_integer(Enum.at(Regex.run(~r/MemTotal:\s+(\d+)/, s), 1)), 1024)
        _ -> nil
      end

    %{
      cores: System.schedulers_online(),
      logical_cpus: :erlang.system_info(:logical_processors_available),
      cpu_model: BenchHost.cpu_model(),
      mem_mib: mem_mib,
      os: os,
      kernel: String.trim(elem(System.cmd("uname", ["-sr"]), 0)),
      otp: to_string(:erlang.system_info(:otp_release)),
      erts: to_string(:erlang.system_info(:version)),
      elixir: System.version(),
      rustc: cmd_version("rustc"),
      cargo: cmd_version("cargo"),
      nif_build: nif_build(),
      git: git_state(),
      loadavg: BenchHost.load_avg()
    }
  end

  defp cmd_version(c) do
    try do
      {v, 0} = System.cmd(c, ["--version"])
      String.trim(v)
    catch
      _, _ -> nil
    end
  end

  defp nif_build do
    lib = to_string(:code.lib_dir(:libcluster_hyparview))
    # Relative to the project: results must not carry this machine's paths.
    so = Enum.map(Path.wildcard(Path.join(lib, "priv/native/*")), &Path.relative_to_cwd/1)

    %{files: so, mix_env: to_string(Mix.env())}
  rescue
    _ -> nil
  end

  # The build is of the working tree (shared with other engineers): record the
  # commit and which code paths had uncommitted edits.
  defp git_state do
    head = BenchHost.cmd_out("git", ["rev-parse", "--short", "HEAD"])

    dirty =
      BenchHost.cmd_out("git", [
        "status",
        "--porcelain",
        "lib",
        "native",
        "mix.exs",
        "test/libcluster_standin"
      ])

    %{head: head, uncommitted: if(dirty, do: String.split(dirty, "\n", trim: true), else: [])}
  end

  # ------------------------------------------------------------------ utils

  def now, do: System.monotonic_time(:millisecond)
  def mean([]), do: nil
  def mean(xs), do: Enum.sum(xs) / length(xs)
  def median([]), do: nil
  def median(xs), do: pct(xs, 0.5)
  def pct([], _), do: nil

  def pct(xs, q) do
    s = Enum.sort(xs)
    Enum.at(s, min(length(s) - 1, floor(q * (length(s) - 1) + 0.5)))
  end

  def log(msg) do
    t = DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_time()
    IO.puts(:stderr, "[bench #{t}] #{msg}")
  end

  # ------------------------------------------------------------------- table

  def print_table(results) do
    rows =
      for r <- results, r.mode != :none do
        l = r.links || %{}
        rep = r[:repair] || %{}
        det = rep[:detection] || %{}
        idle = r[:idle][:summary] || %{}

        [
          "#{r.mode}",
          "#{r.n}",
          fmt(l[:links]),
          fmt(l[:max_links]),
          fmt(l[:mean_links]),
          fmt(r[:convergence_ms]),
          fmt(rep[:repair_ms]),
          fmt(det[:median_ms]),
          fmt(det[:max_ms]),
          fmt(idle[:cpu_pct_mean]),
          fmt(idle[:rss_mib_mean]),
          fmt(idle[:threads_mean]),
          fmt(idle[:dist_out_bps_mean]),
          fmt(idle[:overlay_msgs_per_node_per_shuffle])
        ]
      end

    controls =
      for r <- results, r.mode == :none do
        idle = r.idle.summary

        [
          "none",
          "#{r.n}",
          "-",
          "-",
          "-",
          "-",
          "-",
          "-",
          "-",
          fmt(idle.cpu_pct_mean),
          fmt(idle.rss_mib_mean),
          fmt(idle.threads_mean),
          fmt(idle.dist_out_bps_mean),
          "-"
        ]
      end

    header = ~w(mode N links max/node mean/node conv_ms repair_ms detect_med_ms detect_max_ms
                cpu_% rss_MiB threads dist_B/s msgs/node/shuffle)

    all = [header | rows ++ controls]

    widths =
      all
      |> Enum.zip()
      |> Enum.map(fn t -> t |> Tuple.to_list() |> Enum.map(&String.length/1) |> Enum.max() end)

    for row <- all do
      row
      |> Enum.zip(widths)
      |> Enum.map(fn {c, w} -> String.pad_leading(c, w) end)
      |> Enum.join("  ")
      |> IO.puts()
    end
  end

  defp fmt(nil), do: "n/a"
  defp fmt(x) when is_float(x), do: :erlang.float_to_binary(x, decimals: 2)
  defp fmt(x), do: to_string(x)
end

cfg = Bench.parse_args(System.argv())
Process.flag(:trap_exit, true)
Bench.log("config: #{inspect(Map.take(cfg, [:sizes, :modes, :idle, :kill_frac, :hv]))}")
machine_before = Bench.machine()

results =
  for n <- cfg.sizes, mode <- cfg.modes do
    try do
      Bench.run_mode(n, mode, agent_bin, cfg)
    catch
      kind, e ->
        msg = Exception.format(kind, e, __STACKTRACE__)
        Bench.log("#{mode} N=#{n} FAILED: #{msg}")
        %{mode: mode, n: n, error: msg}
    end
  end

report = %{
  generated_at: DateTime.utc_now() |> DateTime.to_iso8601(),
  machine: Map.put(machine_before, :loadavg_end, BenchHost.load_avg()),
  config: %{
    sizes: cfg.sizes,
    modes: cfg.modes,
    idle_s: cfg.idle,
    settle_s: cfg.settle,
    idle_after_start_s: Bench.after_start(cfg),
    kill_frac: cfg.kill_frac,
    seed: cfg.seed,
    conv_deadline_s: cfg.conv_deadline,
    repair_deadline_s: cfg.repair_deadline,
    refill_window_s: cfg.refill_window,
    contacts_per_node: cfg.contacts,
    stable_ms: cfg.stable_ms,
    poll_ms: cfg.poll_ms,
    fullmesh_recheck_ms: cfg.mesh_interval,
    # What the nodes ran with (the library's defaults unless --hv overrode
    # keys) and the overrides alone.
    hyparview: cfg.hv |> HyParView.Config.new() |> Map.from_struct(),
    hyparview_overrides: Map.new(cfg.hv),
    boot_concurrency: cfg.boot_concurrency,
    probe_ms: cfg.probe_ms,
    vm_flags: Bench.vm_flags()
  },
  results: results
}

File.mkdir_p!(Path.dirname(cfg.out))
File.write!(cfg.out, BenchJSON.encode(report))
Bench.print_table(Enum.reject(results, &Map.has_key?(&1, :error)))
Bench.log("wrote #{cfg.out}")
