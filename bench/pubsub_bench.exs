# PubSub benchmark: Phoenix.PubSub over HyParView.PubSub (Plumtree on the
# HyParView overlay) vs Phoenix.PubSub's PG2 adapter over a full mesh, on the
# same number of fresh local BEAM nodes, in one run.
# A script, not library code: past ~600 lines because it carries its own
# phases, analysis and report writing; node boot and waiting come from dev/.
#
#   MIX_ENV=test mix run --no-start bench/pubsub_bench.exs -- [--nodes 32] ...
#   (normally through `bash bench/pubsub.sh`)
#
# The controller is NOT distributed: peers are driven over `:peer`'s
# standard_io control channel, so it adds no distribution links and sends no
# bench traffic. Every peer gets the same VM flags and code paths.

Code.require_file("json.ex", __DIR__)
Code.require_file("host.ex", __DIR__)
Code.require_file("pubsub_report.ex", __DIR__)

[{PubSubBenchAgent, agent_bin}] = Code.compile_file(Path.join(__DIR__, "pubsub_agent.ex"))

defmodule PubSubBench do
  @moduledoc false

  alias HyParView.Dev.{LocalCluster, Overlay}

  @defaults %{
    nodes: 32,
    modes: [:pg2, :hyparview],
    rounds: 1,
    messages: 2_000,
    size: 1_024,
    lat_messages: 2_000,
    rate: 200,
    origin: 1,
    settle: 5,
    # Longer than the widest gap of crossing's dense schedule (4 shuffle
    # intervals + 25 %), so a pause between two ticks is not taken for the end.
    quiet: 25,
    quiet_deadline: 180,
    early: true,
    stall: 10,
    deadline: 180,
    contacts: 2,
    # Logger level on the peers (their output crosses the control pipe).
    peer_log: "error",
    out: "bench/results/pubsub",
    # The project defaults except a faster shuffle, so the passive views are
    # full a few seconds after the overlay forms (as in bench/cluster_bench.exs).
    hv: [active_view_size: 5, passive_view_size: 30, shuffle_interval: 5_000]
  }

  def parse_args(argv) do
    {opts, _, bad} =
      OptionParser.parse(argv,
        strict: [
          nodes: :integer,
          modes: :string,
          rounds: :integer,
          messages: :integer,
          size: :integer,
          lat_messages: :integer,
          rate: :integer,
          origin: :integer,
          settle: :integer,
          quiet: :integer,
          quiet_deadline: :integer,
          early: :boolean,
          stall: :integer,
          deadline: :integer,
          contacts: :integer,
          out: :string,
          hv: :string,
          peer_log: :string
        ]
      )

    if bad != [], do: raise(ArgumentError, "unknown options: #{inspect(bad)}")

    cfg =
      Enum.reduce(opts, @defaults, fn
        {:modes, s}, acc -> %{acc | modes: s |> String.split(",") |> Enum.map(&mode/1)}
        {:hv, s}, acc -> %{acc | hv: Keyword.merge(acc.hv, kv(s))}
        {k, v}, acc -> Map.put(acc, k, v)
      end)

    unless cfg.origin in 1..cfg.nodes, do: raise(ArgumentError, "--origin must be in 1..nodes")
    cfg
  end

  defp mode(m) when m in ["pg2", "hyparview"], do: String.to_atom(m)
  defp mode(m), do: raise(ArgumentError, "unknown mode #{m}")

  defp kv(s) do
    for pair <- String.split(s, ",", trim: true) do
      [k, v] = String.split(pair, "=")
      {String.to_atom(k), String.to_integer(v)}
    end
  end

  # ------------------------------------------------------------------ peers

  def boot(n, mode, agent_bin, log_level) do
    args =
      [~c"-connect_all", ~c"false", ~c"-setcookie", ~c"hyparview_bench"] ++
        LocalCluster.code_path_args()

    1..n
    |> Task.async_stream(
      fn i ->
        node = :"pbench#{i}@127.0.0.1"
        {:ok, pid} = LocalCluster.start_node(node, args, wait_boot: 120_000, attempts: 1)

        {:module, PubSubBenchAgent} =
          :peer.call(pid, :code, :load_binary, [
            PubSubBenchAgent,
            ~c"bench/pubsub_agent.ex",
            agent_bin
          ])

        %{os_pid: os_pid} = :peer.call(pid, PubSubBenchAgent, :boot, [mode, log_level], 60_000)
        %{i: i, pid: pid, node: node, os_pid: os_pid}
      end,
      max_concurrency: 4,
      timeout: 180_000,
      ordered: true
    )
    |> Enum.map(fn {:ok, p} -> p end)
  end

  def stop_all(peers), do: BenchHost.stop_peers(peers, ~c"pbench", 16, 30_000)

  defdelegate pcall(peers, fun, timeout \\ 15_000), to: BenchHost

  def call(p, f, a, timeout \\ 15_000), do: :peer.call(p.pid, PubSubBenchAgent, f, a, timeout)

  # ------------------------------------------------------------------ setup

  def start_mode(peers, :hyparview, cfg) do
    nodes = Enum.map(peers, & &1.node)
    ids = Enum.zip(nodes, LocalCluster.free_ports(length(peers)))

    contacts =
      ids
      |> Enum.take(cfg.contacts + 1)
      |> Enum.map(fn {n, port} -> HyParView.Peer.new(n, {{127, 0, 0, 1}, port}) end)

    configs =
      Map.new(ids, fn {n, port} ->
        {n,
         [
           local_peer: HyParView.Peer.new(n, {{127, 0, 0, 1}, port}),
           contacts: contacts |> Enum.reject(&(&1.id == n)) |> Enum.take(cfg.contacts),
           hyparview_config: cfg.hv,
           secret: "hyparview-bench-secret"
         ]}
      end)

    started(pcall(peers, &call(&1, :start_hyparview, [configs[&1.node]], 35_000), 35_000))
  end

  def start_mode(peers, :pg2, _cfg) do
    nodes = Enum.map(peers, & &1.node)
    started(pcall(peers, &call(&1, :start_pg2, [nodes], 35_000), 35_000))
  end

  defp started(res) do
    case Enum.reject(res, fn {_, r} -> r == :ok end) do
      [] -> :ok
      bad -> raise "start failed: #{inspect(Enum.take(bad, 3))}"
    end
  end

  # Ready to measure. HyParView: active views symmetric and connected, the
  # adapter subscribed on every node (the strategy and the adapter are the
  # server's two subscribers). PG2: every node connected to every other and
  # every adapter process in the :pg group, as seen from every node.
  def wait_ready(peers, mode, cfg) do
    n = length(peers)
    nodes = Enum.map(peers, & &1.node)

    res =
      LocalCluster.wait_until(
        fn ->
          if mode == :pg2, do: pcall(peers, &call(&1, :connect, [nodes]))

          states =
            peers |> pcall(&call(&1, :state, [mode], 5_000), 5_000) |> Enum.map(&elem(&1, 1))

          if ready?(states, mode, n), do: {:ok, states}, else: :not_yet
        end,
        cfg.deadline * 1_000,
        200
      )

    case res do
      {:ok, states, ms} -> {states, ms}
      {:error, {:timeout, _}} -> raise "#{mode}: not ready within #{cfg.deadline} s"
    end
  end

  defp ready?(states, :pg2, n) do
    Enum.all?(states, &(is_map(&1) and length(&1.nodes) == n - 1 and &1[:pg_members] == n))
  end

  defp ready?(states, :hyparview, _n) do
    if Enum.all?(states, &(is_map(&1) and is_list(&1[:active]) and &1.active != [])) do
      views = Map.new(states, &{&1.node, &1.active})

      Overlay.asymmetric(views) == [] and Overlay.connected?(views) and
        Enum.all?(states, &(&1.subscribers >= 2))
    else
      false
    end
  end

  # HyParView: until no active view has changed anywhere for cfg.quiet s
  # (the overlay keeps reshaping itself for a while after it first
  # converges), at most cfg.quiet_deadline s. Returns when the last change
  # before the quiet stretch was seen, from the call (ms), or quiet: false.
  def wait_quiet(_peers, :pg2, _cfg), do: %{quiet: true, last_change_ms: 0}

  def wait_quiet(peers, :hyparview, cfg) do
    t0 = now()
    loop_quiet(peers, cfg, t0, {-1, t0})
  end

  defp loop_quiet(peers, cfg, t0, {last, since}) do
    total =
      peers
      |> pcall(&call(&1, :count, [:view_changes]))
      |> Enum.map(fn {_, c} -> if is_integer(c), do: c, else: 0 end)
      |> Enum.sum()

    t = now()
    since = if total == last, do: since, else: t

    cond do
      t - since >= cfg.quiet * 1_000 ->
        %{quiet: true, last_change_ms: since - t0}

      t - t0 > cfg.quiet_deadline * 1_000 ->
        %{quiet: false, last_change_ms: since - t0}

      true ->
        Process.sleep(200)
        loop_quiet(peers, cfg, t0, {total, since})
    end
  end

  # Shortest-path hops from the origin in the active-view graph (the lower
  # bound of a Plumtree tree's depth).
  def hops(states, origin) do
    views = Map.new(states, &{&1.node, &1.active})
    bfs(views, [origin], %{origin => 0}, 0)
  end

  defp bfs(_views, [], dist, _d), do: dist

  defp bfs(views, frontier, dist, d) do
    next =
      for n <- frontier, m <- Map.get(views, n, []), not Map.has_key?(dist, m), uniq: true, do: m

    bfs(views, next, Enum.reduce(next, dist, &Map.put(&2, &1, d + 1)), d + 1)
  end

  # Until every receiver got a warm-up message from the origin: the adapter
  # of every node delivers (HyParView: subscribed to its server; PG2: in the
  # :pg group seen by the origin).
  def warm_up(origin, receivers, cfg) do
    res =
      LocalCluster.wait_until(
        fn ->
          :ok = call(origin, :warm, [System.unique_integer([:positive])])
          Process.sleep(100)
          Enum.all?(pcall(receivers, &call(&1, :count, [:warm])), fn {_, c} -> c >= 1 end)
        end,
        cfg.deadline * 1_000,
        100
      )

    case res do
      {:ok, _, ms} -> ms
      {:error, _} -> raise "warm-up: not every node heard the origin"
    end
  end

  # ----------------------------------------------------------------- phases

  # Waits until every receiver has `n` messages of `phase`, or until no
  # receiver made progress for cfg.stall s (losses), or cfg.deadline.
  defp await_phase(receivers, phase, n, cfg) do
    t_end = now() + cfg.deadline * 1_000
    loop_await(receivers, phase, n, cfg, t_end, {-1, now()})
  end

  defp loop_await(receivers, phase, n, cfg, t_end, {last_total, since}) do
    counts = pcall(receivers, &call(&1, :count, [phase]))
    total = Enum.sum(for {_, c} <- counts, is_integer(c), do: c)
    t = now()

    cond do
      Enum.all?(counts, fn {_, c} -> is_integer(c) and c >= n end) ->
        :complete

      t > t_end ->
        :deadline

      total == last_total and t - since > cfg.stall * 1_000 ->
        :stalled

      true ->
        Process.sleep(100)
        progress = if total == last_total, do: {total, since}, else: {total, t}
        loop_await(receivers, phase, n, cfg, t_end, progress)
    end
  end

  def throughput(peers, origin, receivers, mode, cfg) do
    before = sample_all(peers, mode)
    sent = call(origin, :throughput, [cfg.messages, cfg.size], cfg.deadline * 1_000)
    outcome = await_phase(receivers, :throughput, cfg.messages, cfg)
    after_ = sample_all(peers, mode)
    reports = pcall(receivers, &call(&1, :report_phase, [:throughput], 30_000), 30_000)

    last_us = reports |> Enum.map(fn {_, r} -> r.last_us end) |> Enum.reject(&is_nil/1)
    all_done_us = if last_us == [], do: nil, else: Enum.max(last_us) - sent.t0_us
    send_us = sent.t_end_us - sent.t0_us
    lats = for {_, r} <- reports, {_seq, us} <- r.samples, do: us

    %{
      outcome: outcome,
      messages: cfg.messages,
      payload_bytes: cfg.size,
      # Origin: from the first broadcast call until the last returned.
      send_ms: send_us / 1_000,
      send_rate: rate(cfg.messages, send_us),
      # From the first broadcast until the last receiver got its last message.
      all_received_ms: all_done_us && all_done_us / 1_000,
      msgs_per_s: all_done_us && rate(cfg.messages, all_done_us),
      overloaded_retries: sent.retries,
      send_errors: sent.errors,
      # Queueing dominates here; for the spread, not as latency.
      burst_latency_ms: percentiles(lats),
      delivery: delivery(reports, cfg.messages),
      cost: cost(before, after_, peers, origin, cfg.messages)
    }
  end

  def latency(peers, origin, receivers, mode, cfg, phase \\ :latency) do
    before = sample_all(peers, mode)
    timeout = round(cfg.lat_messages / cfg.rate * 1_000) + 30_000
    sent = call(origin, :latency, [phase, cfg.lat_messages, cfg.rate, cfg.size], timeout)
    outcome = await_phase(receivers, phase, cfg.lat_messages, cfg)
    after_ = sample_all(peers, mode)
    reports = pcall(receivers, &call(&1, :report_phase, [phase], 30_000), 30_000)

    samples = for {_, r} <- reports, s <- r.samples, do: s
    lats = Enum.map(samples, &elem(&1, 1))

    # Per message: until the last receiver had it.
    per_msg =
      samples
      |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
      |> Enum.map(fn {_seq, us} -> Enum.max(us) end)

    # p50/p99 per tenth of the messages (by seq): a backlog shows as growth.
    bucket = max(1, div(cfg.lat_messages + 9, 10))

    timeline =
      samples
      |> Enum.group_by(fn {seq, _} -> div(seq - 1, bucket) end, &elem(&1, 1))
      |> Enum.sort()
      |> Enum.map(fn {_, us} ->
        p = percentiles(us)
        [p.p50, p.p99]
      end)

    %{
      outcome: outcome,
      messages: cfg.lat_messages,
      latency_timeline_p50_p99_ms: timeline,
      rate: cfg.rate,
      achieved_rate: rate(cfg.lat_messages, sent.duration_us),
      send_errors: sent.errors,
      latency_ms: percentiles(lats),
      last_receiver_latency_ms: percentiles(per_msg),
      delivery: delivery(reports, cfg.lat_messages),
      cost: cost(before, after_, peers, origin, cfg.lat_messages)
    }
  end

  defp rate(_n, us) when us <= 0, do: nil
  defp rate(n, us), do: n * 1_000_000 / us

  defp delivery(reports, n) do
    rs = Enum.map(reports, &elem(&1, 1))

    %{
      receivers: length(rs),
      expected: n * length(rs),
      received_unique: Enum.sum(Enum.map(rs, & &1.unique)),
      lost: Enum.sum(Enum.map(rs, &max(n - &1.unique, 0))),
      receivers_complete: Enum.count(rs, &(&1.unique >= n)),
      duplicates: Enum.sum(Enum.map(rs, & &1.duplicates)),
      order_violations: Enum.sum(Enum.map(rs, & &1.order_violations))
    }
  end

  def percentiles([]), do: %{p50: nil, p99: nil, max: nil, n: 0}

  def percentiles(us) do
    s = us |> Enum.sort() |> List.to_tuple()
    at = fn q -> elem(s, min(tuple_size(s) - 1, floor(q * (tuple_size(s) - 1) + 0.5))) / 1_000 end
    %{p50: at.(0.5), p90: at.(0.9), p99: at.(0.99), max: at.(1.0), n: tuple_size(s)}
  end

  # ------------------------------------------------------------------- cost

  defp sample_all(peers, mode) do
    tcp = tcp_bytes_sent()
    procs = Map.new(peers, &{&1.node, proc_sample(&1.os_pid, tcp)})
    counters = if mode == :hyparview, do: Map.new(pcall(peers, &call(&1, :counters, [mode])))
    %{procs: procs, counters: counters, t: now()}
  end

  # CPU (all nodes, and the origin alone) and TCP bytes sent (distribution
  # and HyParView connections alike), over the phase including its drain.
  defp cost(a, b, peers, origin, n) do
    tck = clk_tck()

    d = fn node, key ->
      case {a.procs[node], b.procs[node]} do
        {%{} = x, %{} = y} -> y[key] - x[key]
        _ -> 0
      end
    end

    nodes = Enum.map(peers, & &1.node)
    cpu_s = Enum.sum(Enum.map(nodes, &d.(&1, :ticks))) / tck
    sent = Enum.sum(Enum.map(nodes, &d.(&1, :tcp_sent)))

    base = %{
      window_ms: b.t - a.t,
      cpu_s_all_nodes: cpu_s,
      cpu_s_origin: d.(origin.node, :ticks) / tck,
      cpu_ms_per_message: cpu_s * 1_000 / n,
      tcp_bytes_sent_all_nodes: sent,
      tcp_bytes_sent_origin: d.(origin.node, :tcp_sent),
      tcp_bytes_sent_per_message: sent / n
    }

    if a.counters,
      do: Map.put(base, :hyparview, counters_delta(a.counters, b.counters)),
      else: base
  end

  # Summed over the nodes: every integer counter of the servers (broadcast,
  # connections, failures, ...), the adapters' counters, and overlay messages
  # sent by kind.
  def counters_delta(a, b) do
    sums =
      for {node, %{hyparview: y, adapter: ya}} <- b,
          %{hyparview: x, adapter: xa} <- [a[node]],
          reduce: %{} do
        acc ->
          acc =
            Enum.reduce(y, acc, fn
              {k, v}, acc when is_integer(v) -> add(acc, {:server, k}, v - Map.get(x, k, 0))
              {:messages_out, out}, acc -> sub_map(acc, :out, out, Map.get(x, :messages_out, %{}))
              _, acc -> acc
            end)

          sub_map(acc, :adapter, ya, xa)
      end

    group = fn tag ->
      for {{^tag, k}, v} <- sums, into: %{}, do: {k, v}
    end

    %{server: group.(:server), adapter: group.(:adapter), messages_out: group.(:out)}
  end

  defp sub_map(acc, tag, y, x) do
    Enum.reduce(y, acc, fn {k, v}, acc -> add(acc, {tag, k}, v - Map.get(x, k, 0)) end)
  end

  defp add(acc, k, v), do: Map.update(acc, k, v, &(&1 + v))

  def proc_sample(os_pid, tcp) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        [_, after_comm] = String.split(stat, ") ", parts: 2)
        f = String.split(after_comm, " ")
        ticks = String.to_integer(Enum.at(f, 11)) + String.to_integer(Enum.at(f, 12))
        %{ticks: ticks, tcp_sent: Map.get(tcp, os_pid, 0)}

      _ ->
        nil
    end
  end

  # bytes_sent of every established TCP socket, summed per owning OS pid
  # (`ss -tinp`). /proc/<pid>/io wchar would miss the native transport, whose
  # sockets are written with send(2), not write(2).
  def tcp_bytes_sent do
    case System.cmd("ss", ["-tinpH", "state", "established"], stderr_to_stdout: true) do
      {out, 0} ->
        out
        |> String.split("\n")
        |> Enum.reduce({nil, %{}}, fn line, {pid, acc} ->
          cond do
            line == "" ->
              {pid, acc}

            not String.starts_with?(line, [" ", "\t"]) ->
              case Regex.run(~r/pid=(\d+)/, line) do
                [_, p] -> {String.to_integer(p), acc}
                _ -> {nil, acc}
              end

            pid != nil ->
              case Regex.run(~r/bytes_sent:(\d+)/, line) do
                [_, b] ->
                  {nil, Map.update(acc, pid, String.to_integer(b), &(&1 + String.to_integer(b)))}

                _ ->
                  {nil, acc}
              end

            true ->
              {pid, acc}
          end
        end)
        |> elem(1)

      _ ->
        %{}
    end
  end

  defp clk_tck do
    case System.cmd("getconf", ["CLK_TCK"]) do
      {v, 0} -> String.to_integer(String.trim(v))
      _ -> 100
    end
  end

  # ---------------------------------------------------------------- one run

  def run_mode(mode, round, agent_bin, cfg) do
    log("round #{round} #{mode}: booting #{cfg.nodes} peers")
    load_start = BenchHost.load_avg()
    t_boot = now()
    peers = boot(cfg.nodes, mode, agent_bin, String.to_existing_atom(cfg.peer_log))
    boot_ms = now() - t_boot

    try do
      :ok = start_mode(peers, mode, cfg)
      {states, ready_ms} = wait_ready(peers, mode, cfg)
      log("round #{round} #{mode}: ready in #{ready_ms} ms; settling #{cfg.settle} s")
      origin = Enum.at(peers, cfg.origin - 1)
      receivers = List.delete(peers, origin)

      for {n, r} <- pcall(peers, &call(&1, :start_recorder, [mode])), r != :ok do
        raise "recorder on #{n}: #{inspect(r)}"
      end

      # The settle doubles as an idle baseline of the overlay's own churn.
      idle0 = sample_all(peers, mode)
      Process.sleep(cfg.settle * 1_000)

      idle = cost(idle0, sample_all(peers, mode), peers, origin, 1)
      log("round #{round} #{mode}: idle#{churn(idle)}")
      warm_ms = warm_up(origin, receivers, cfg)

      # HyParView keeps reshaping a fresh overlay for its first ~10 shuffle
      # intervals (crossing's dense phase: link swaps); measured apart.
      early =
        if mode == :hyparview and cfg.early do
          log("round #{round} #{mode}: latency phase while the overlay reshapes itself")
          e = latency(peers, origin, receivers, mode, cfg, :latency_early)

          log(
            "round #{round} #{mode}: early latency #{inspect(e.latency_ms)}, " <>
              "delivery #{inspect(e.delivery)}#{churn(e.cost)}"
          )

          e
        end

      quiet = wait_quiet(peers, mode, cfg)
      log("round #{round} #{mode}: quiet #{inspect(quiet)}")
      # States after the settle: the overlay the messages travel.
      states = if mode == :hyparview, do: elem(wait_ready(peers, mode, cfg), 0), else: states
      overlay = overlay(states, mode, origin, cfg)

      # Latency first, on the undisturbed overlay; then the burst.
      log("round #{round} #{mode}: overlay #{inspect(overlay)}; latency phase")

      lat = latency(peers, origin, receivers, mode, cfg)

      log(
        "round #{round} #{mode}: latency #{inspect(lat.latency_ms)}, " <>
          "delivery #{inspect(lat.delivery)}#{churn(lat.cost)}"
      )

      # Let lazy-push announcements and grafts drain before the next phase.
      Process.sleep(2_000)
      log("round #{round} #{mode}: throughput phase (#{cfg.messages} messages)")
      tp = throughput(peers, origin, receivers, mode, cfg)

      log(
        "round #{round} #{mode}: throughput #{fmt(tp.msgs_per_s)} msg/s (#{tp.outcome}, " <>
          "sent in #{fmt(tp.send_ms)} ms, all received in #{fmt(tp.all_received_ms)} ms), " <>
          "delivery #{inspect(tp.delivery)}#{churn(tp.cost)}"
      )

      %{
        mode: mode,
        round: round,
        nodes: cfg.nodes,
        origin: origin.node,
        boot_ms: boot_ms,
        ready_ms: ready_ms,
        warm_up_ms: warm_ms,
        settle_ms: cfg.settle * 1_000,
        overlay: overlay,
        idle: idle,
        quiet: quiet,
        latency_early: early,
        throughput: tp,
        latency: lat,
        loadavg_start: load_start,
        loadavg_end: BenchHost.load_avg()
      }
    after
      stop_all(peers)
    end
  end

  defp overlay(states, :hyparview, origin, cfg) do
    views = Map.new(states, &{&1.node, &1.active})
    h = states |> hops(origin.node) |> Map.delete(origin.node) |> Map.values()
    sizes = Enum.map(states, &length(&1.active))

    %{
      links: MapSet.size(Overlay.edges(views)),
      active_view_mean: Enum.sum(sizes) / length(sizes),
      origin_active_view: length(Map.fetch!(views, origin.node)),
      hops_from_origin_mean: Enum.sum(h) / length(h),
      hops_from_origin_max: Enum.max(h),
      reached_from_origin: length(h) + 1 == cfg.nodes
    }
  end

  defp overlay(_states, :pg2, _origin, cfg),
    do: %{links: div(cfg.nodes * (cfg.nodes - 1), 2), origin_links: cfg.nodes - 1}

  # Overlay churn during a phase (HyParView): connections failed and
  # DISCONNECT/NEIGHBOR messages sent, summed over the nodes.
  defp churn(%{hyparview: %{server: s, messages_out: out}}) do
    ", churn: active_view_changes=#{s[:active_view_changes]} " <>
      "failures_detected=#{s[:failures_detected]} heartbeat_timeouts=" <>
      "#{s[:heartbeat_timeouts]} disconnect=#{out[:disconnect]} neighbor=#{out[:neighbor]}" <>
      " frames_dropped=#{s[:broadcast_frames_dropped]} gap_skipped=#{s[:broadcasts_gap_skipped]}"
  end

  defp churn(_), do: ""

  # ---------------------------------------------------------------- summary

  # Per mode: the median over rounds of the headline numbers; ratios
  # hyparview / pg2 of those medians.
  def summarize(results) do
    metrics = %{
      throughput_msgs_per_s: &get_in(&1, [:throughput, :msgs_per_s]),
      origin_send_rate: &get_in(&1, [:throughput, :send_rate]),
      latency_p50_ms: &get_in(&1, [:latency, :latency_ms, :p50]),
      latency_p99_ms: &get_in(&1, [:latency, :latency_ms, :p99]),
      latency_max_ms: &get_in(&1, [:latency, :latency_ms, :max]),
      last_receiver_p50_ms: &get_in(&1, [:latency, :last_receiver_latency_ms, :p50]),
      last_receiver_p99_ms: &get_in(&1, [:latency, :last_receiver_latency_ms, :p99]),
      tput_cpu_ms_per_message: &get_in(&1, [:throughput, :cost, :cpu_ms_per_message]),
      tput_origin_bytes_per_message:
        &(get_in(&1, [:throughput, :cost, :tcp_bytes_sent_origin]) / &1.throughput.messages),
      tput_total_bytes_per_message:
        &get_in(&1, [:throughput, :cost, :tcp_bytes_sent_per_message]),
      lat_cpu_ms_per_message: &get_in(&1, [:latency, :cost, :cpu_ms_per_message]),
      early_latency_p50_ms: &get_in(&1, [:latency_early, :latency_ms, :p50]),
      early_latency_p99_ms: &get_in(&1, [:latency_early, :latency_ms, :p99]),
      early_lost: &get_in(&1, [:latency_early, :delivery, :lost]),
      quiet_after_ms: &(&1.quiet.last_change_ms + &1.settle_ms)
    }

    per_mode =
      results
      |> Enum.reject(&Map.has_key?(&1, :error))
      |> Enum.group_by(& &1.mode)
      |> Map.new(fn {mode, rs} ->
        meds = Map.new(metrics, fn {k, f} -> {k, median(Enum.map(rs, f))} end)

        losses = %{
          lost: Enum.sum(Enum.map(rs, &(&1.throughput.delivery.lost + &1.latency.delivery.lost))),
          duplicates:
            Enum.sum(
              Enum.map(rs, &(&1.throughput.delivery.duplicates + &1.latency.delivery.duplicates))
            ),
          order_violations:
            Enum.sum(
              Enum.map(
                rs,
                &(&1.throughput.delivery.order_violations + &1.latency.delivery.order_violations)
              )
            ),
          overloaded_retries: Enum.sum(Enum.map(rs, & &1.throughput.overloaded_retries))
        }

        {mode, Map.merge(meds, %{rounds: length(rs), totals: losses})}
      end)

    ratios =
      case per_mode do
        %{hyparview: h, pg2: p} ->
          Map.new(Map.keys(metrics), fn k -> {k, ratio(h[k], p[k])} end)

        _ ->
          %{}
      end

    %{per_mode: per_mode, ratio_hyparview_over_pg2: ratios}
  end

  defp ratio(a, b) when is_number(a) and is_number(b) and b != 0, do: a / b
  defp ratio(_, _), do: nil

  def median(xs) do
    s = xs |> Enum.reject(&is_nil/1) |> Enum.sort()
    n = length(s)

    cond do
      n == 0 -> nil
      rem(n, 2) == 1 -> Enum.at(s, div(n, 2))
      true -> (Enum.at(s, div(n, 2) - 1) + Enum.at(s, div(n, 2))) / 2
    end
  end

  # ---------------------------------------------------------------- machine

  def machine do
    %{
      cores: System.schedulers_online(),
      cpu_model: BenchHost.cpu_model(),
      otp: to_string(:erlang.system_info(:otp_release)),
      elixir: System.version(),
      git: BenchHost.cmd_out("git", ["rev-parse", "--short", "HEAD"]),
      git_uncommitted:
        case BenchHost.cmd_out("git", [
               "status",
               "--porcelain",
               "lib",
               "native",
               "mix.exs",
               "test"
             ]) do
          nil -> []
          s -> String.split(s, "\n", trim: true)
        end,
      loadavg: BenchHost.load_avg()
    }
  end

  # ------------------------------------------------------------------ utils

  def now, do: System.monotonic_time(:millisecond)

  def log(msg) do
    t = DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_time()
    IO.puts(:stderr, "[pubsub #{t}] #{msg}")
  end

  defdelegate fmt(x), to: PubSubReport
end

cfg = PubSubBench.parse_args(System.argv())
Process.flag(:trap_exit, true)
PubSubBench.log("config: #{inspect(cfg)}")
started_at = DateTime.utc_now()
machine = PubSubBench.machine()

results =
  for round <- 1..cfg.rounds, mode <- cfg.modes do
    try do
      PubSubBench.run_mode(mode, round, agent_bin, cfg)
    rescue
      e ->
        PubSubBench.log("round #{round} #{mode} FAILED: #{Exception.message(e)}")
        %{mode: mode, round: round, error: Exception.format(:error, e, __STACKTRACE__)}
    end
  end

report = %{
  generated_at: DateTime.utc_now() |> DateTime.to_iso8601(),
  started_at: DateTime.to_iso8601(started_at),
  runtime_s: DateTime.diff(DateTime.utc_now(), started_at),
  machine: Map.put(machine, :loadavg_end, BenchHost.load_avg()),
  config: %{
    nodes: cfg.nodes,
    modes: cfg.modes,
    rounds: cfg.rounds,
    throughput_messages: cfg.messages,
    payload_bytes: cfg.size,
    latency_messages: cfg.lat_messages,
    latency_rate_per_s: cfg.rate,
    origin_index: cfg.origin,
    settle_s: cfg.settle,
    quiet_s: cfg.quiet,
    quiet_deadline_s: cfg.quiet_deadline,
    early_phase: cfg.early,
    stall_s: cfg.stall,
    contacts_per_node: cfg.contacts,
    hyparview: Map.new(cfg.hv),
    vm_flags: "-connect_all false -setcookie hyparview_bench (otherwise OTP defaults)"
  },
  summary: PubSubBench.summarize(results),
  results: results
}

File.mkdir_p!(Path.dirname(cfg.out))
File.write!(cfg.out <> ".json", BenchJSON.encode(report))
# The raw report too (outside the repository), so the Markdown can be
# rebuilt after a report change: PubSubReport.markdown(:erlang.binary_to_term(...)).
File.write!(Path.join(System.tmp_dir!(), "pubsub_report.term"), :erlang.term_to_binary(report))
File.write!(cfg.out <> ".md", PubSubReport.markdown(report))
IO.puts(PubSubReport.table(report))
PubSubBench.log("wrote #{cfg.out}.json and #{cfg.out}.md")
