# Code that runs INSIDE each benchmarked peer node. The controller
# (bench/cluster_bench.exs) compiles this file in memory and loads the binary
# into every peer with :code.load_binary/3, so the peers need nothing from
# bench/ on their code path and the project build stays untouched.
#
# Every public function is called through :peer.call/4, which runs it in a
# short-lived process; anything that must outlive the call (cluster
# supervisor, full-mesh loop, event recorder) is owned by a spawned holder.
defmodule BenchAgent do
  @moduledoc false

  @topology :bench
  @sup BenchAgent.ClusterSupervisor
  @recorder :bench_agent_recorder

  @doc "Common setup for every mode: Logger quiet (its output crosses the control pipe)."
  def boot(mode) do
    {:ok, _} = Application.ensure_all_started(:logger)
    Logger.configure(level: :error)

    if mode == :hyparview do
      # Starts the project's application and its deps (the libcluster stand-in).
      {:ok, _} = Application.ensure_all_started(:libcluster_hyparview)

      # Load every module (and so the NIF) now, as a release in embedded mode
      # would at boot; otherwise lazy code loading on 64 nodes sharing 2 cores
      # would be timed as "convergence".
      for app <- [:libcluster, :libcluster_hyparview],
          {:ok, mods} = :application.get_key(app, :modules),
          mod <- mods,
          do: Code.ensure_loaded(mod)
    end

    %{os_pid: List.to_integer(:os.getpid()), node: node()}
  end

  # ---------------------------------------------------------------- strategies

  @doc "libcluster topology with Cluster.Strategy.HyParView, as a user would write it."
  def start_hyparview(config, at) do
    at_start(at, fn ->
      topologies = [{@topology, [strategy: Cluster.Strategy.HyParView, config: config]}]

      Supervisor.start_link([{Cluster.Supervisor, [topologies, [name: @sup]]}],
        strategy: :one_for_one
      )
    end)
  end

  @doc """
  Full-mesh baseline: what libcluster's Epmd/Gossip strategies end up doing.
  Connect to every other node, then re-check every `interval` ms (Gossip
  reconnects on each heartbeat) and connect whatever is missing.
  """
  def start_fullmesh(nodes, interval, at) do
    at_start(at, fn ->
      others = nodes -- [node()]
      {:ok, spawn_link(fn -> mesh_loop(others, interval) end)}
    end)
  end

  defp mesh_loop(others, interval) do
    connected = MapSet.new(Node.list())
    for n <- others, not MapSet.member?(connected, n), do: Node.connect(n)

    receive do
    after
      interval -> mesh_loop(others, interval)
    end
  end

  # ------------------------------------------------------------------- queries

  @doc "Node.list/0 and (for HyParView) the active view ids, read back to back."
  def state(mode) do
    nodes = Node.list()
    active = if mode == :hyparview, do: active_ids()
    %{node: node(), nodes: nodes, active: active}
  end

  defp active_ids do
    case server() do
      nil ->
        nil

      s ->
        try do
          s |> HyParView.active_view() |> Enum.map(& &1.id)
        catch
          _, _ -> nil
        end
    end
  end

  @doc "The HyParView server the strategy started (cached once found)."
  def server do
    case :persistent_term.get({__MODULE__, :server}, nil) do
      pid when is_pid(pid) ->
        if Process.alive?(pid), do: pid, else: find_and_cache_server()

      _ ->
        find_and_cache_server()
    end
  end

  defp find_and_cache_server do
    pid = official_lookup() || walk_for_server()
    if is_pid(pid), do: :persistent_term.put({__MODULE__, :server}, pid)
    pid
  end

  defp official_lookup do
    mod = Cluster.Strategy.HyParView

    if Code.ensure_loaded?(mod) and function_exported?(mod, :server, 1) do
      case apply(mod, :server, [@topology]) do
        pid when is_pid(pid) -> pid
        {:ok, pid} when is_pid(pid) -> pid
        _ -> nil
      end
    end
  end

  # Fallback: breadth-first over supervisor children and links from our
  # cluster supervisor, looking for a process started as HyParView.Server.
  defp walk_for_server do
    case Process.whereis(@sup) do
      nil -> nil
      root -> walk([root], MapSet.new([root]), 0)
    end
  end

  defp walk([], _seen, _depth), do: nil
  defp walk(_frontier, _seen, depth) when depth > 6, do: nil

  defp walk(frontier, seen, depth) do
    case Enum.find(frontier, &hyparview_server?/1) do
      nil ->
        next =
          frontier
          |> Enum.flat_map(&neighbours/1)
          |> Enum.uniq()
          |> Enum.reject(&MapSet.member?(seen, &1))

        walk(next, Enum.reduce(next, seen, &MapSet.put(&2, &1)), depth + 1)

      pid ->
        pid
    end
  end

  defp neighbours(pid) do
    case Process.info(pid, :links) do
      {:links, links} -> Enum.filter(links, &is_pid/1)
      _ -> []
    end
  end

  defp hyparview_server?(pid) do
    case Process.info(pid, :dictionary) do
      {:dictionary, dict} ->
        match?({HyParView.Server, _, _}, dict[:"$initial_call"])

      _ ->
        false
    end
  end

  @doc "Snapshot map from HyParView.info/1 (counters), or nil when unavailable."
  def info do
    with s when is_pid(s) <- server(),
         true <- Code.ensure_loaded?(HyParView) and function_exported?(HyParView, :info, 1) do
      try do
        case apply(HyParView, :info, [s]) do
          {:ok, m} when is_map(m) -> m
          m when is_map(m) -> m
          _ -> nil
        end
      catch
        _, _ -> nil
      end
    else
      _ -> nil
    end
  end

  @doc """
  Diagnostics for a node that breaks the Node.list == active view property:
  the strategy's own state, the server's views and the raw connected list.
  """
  def debug_state do
    strategy =
      case Process.whereis(@sup) do
        nil ->
          nil

        sup ->
          for {_, pid, :worker, _} <- Supervisor.which_children(sup), is_pid(pid) do
            try do
              :sys.get_state(pid, 2_000)
            catch
              _, e -> {:error, e}
            end
          end
      end

    %{
      node: node(),
      connected: :erlang.nodes(:connected),
      visible: Node.list(),
      active: active_ids(),
      strategy_state: inspect(strategy, limit: 200, printable_limit: 2_000)
    }
  end

  @doc "Bytes through the Erlang distribution sockets, per connected node."
  def dist_bytes do
    for {n, ctrl} <- :erlang.system_info(:dist_ctrl), is_port(ctrl), into: %{} do
      case :inet.getstat(ctrl, [:send_oct, :recv_oct]) do
        {:ok, st} -> {n, {st[:send_oct], st[:recv_oct]}}
        _ -> {n, {0, 0}}
      end
    end
  end

  @doc "Everything the idle-cost window samples at its two ends."
  def sample(mode) do
    info = if mode == :hyparview, do: info()

    %{
      t_us: System.os_time(:microsecond),
      nodes: Node.list(),
      dist: dist_bytes(),
      counters: info && Map.get(info, :counters),
      memory_total: :erlang.memory(:total)
    }
  end

  # ------------------------------------------------------------------- probe

  @probe :bench_agent_probe

  @doc """
  Starts the probe (once per node, at boot, in every mode): it is this
  node's system monitor for `busy_dist_port` (a process suspended because a
  distribution port's output buffer was full) and counts those events; while
  a phase is open (`probe_open/1`) it also samples `net_kernel`'s message
  queue length every `interval` ms and keeps the maximum. Closed, it only
  waits for monitor messages, so it costs nothing in the idle window.
  """
  def start_probe do
    parent = self()
    ref = make_ref()

    spawn(fn ->
      Process.register(self(), @probe)
      :erlang.system_monitor(self(), [:busy_dist_port])
      send(parent, {ref, :ok})
      probe(%{interval: nil, tick: nil, busy: 0, qmax: 0, samples: 0})
    end)

    receive do
      {^ref, :ok} -> :ok
    after
      10_000 -> {:error, :timeout}
    end
  end

  @doc "Opens a phase: counters to zero, net_kernel sampled every `interval` ms."
  def probe_open(interval), do: probe_call({:open, interval})

  @doc "Closes the phase: `%{busy_dist_port: n, net_kernel_qmax: n, samples: n}`."
  def probe_close, do: probe_call(:close)

  defp probe_call(msg) do
    case Process.whereis(@probe) do
      nil ->
        {:error, :no_probe}

      pid ->
        ref = make_ref()
        send(pid, {msg, self(), ref})

        receive do
          {^ref, r} -> r
        after
          5_000 -> {:error, :timeout}
        end
    end
  end

  # The sampling tick is a timer, not a receive timeout, so a flood of
  # monitor messages cannot starve it; a tick of a closed phase is dropped.
  defp probe(st) do
    current = st.tick

    receive do
      {:monitor, _pid, :busy_dist_port, _port} ->
        probe(%{st | busy: st.busy + 1})

      {:tick, ^current} when current != nil ->
        Process.send_after(self(), {:tick, current}, st.interval)
        probe(%{st | qmax: max(st.qmax, net_kernel_qlen()), samples: st.samples + 1})

      {{:open, interval}, from, ref} ->
        tick = make_ref()
        Process.send_after(self(), {:tick, tick}, interval)
        send(from, {ref, :ok})
        probe(%{st | interval: interval, tick: tick, busy: 0, qmax: 0, samples: 0})

      {:close, from, ref} ->
        send(
          from,
          {ref, %{busy_dist_port: st.busy, net_kernel_qmax: st.qmax, samples: st.samples}}
        )

        probe(%{st | interval: nil, tick: nil, busy: 0, qmax: 0, samples: 0})

      _ ->
        probe(st)
    end
  end

  defp net_kernel_qlen do
    with pid when is_pid(pid) <- Process.whereis(:net_kernel),
         {:message_queue_len, n} <- Process.info(pid, :message_queue_len) do
      n
    else
      _ -> 0
    end
  end

  # ---------------------------------------------------------- failure events

  @doc """
  Starts the event recorder: HyParView peer_up/peer_down (via
  HyParView.subscribe) and distribution nodeup/nodedown, each stamped with
  System.os_time(:microsecond) — the same wall clock as the controller's
  kill timestamp (all nodes run on one machine).
  """
  def start_recorder(mode) do
    parent = self()
    ref = make_ref()

    pid =
      spawn(fn ->
        Process.register(self(), @recorder)
        :ok = :net_kernel.monitor_nodes(true)

        sub =
          if mode == :hyparview do
            try do
              case HyParView.subscribe(server(), self()) do
                :ok -> :ok
                {:ok, _} -> :ok
                other -> {:error, other}
              end
            catch
              k, e -> {:error, {k, e}}
            end
          else
            :ok
          end

        send(parent, {ref, sub})
        record([])
      end)

    receive do
      {^ref, res} -> {res, pid}
    after
      10_000 -> {:error, :timeout}
    end
  end

  defp record(acc) do
    receive do
      {:hyparview, {kind, peer}} when kind in [:peer_up, :peer_down] ->
        record([{kind, peer_id(peer), System.os_time(:microsecond)} | acc])

      {:nodedown, n} ->
        record([{:nodedown, n, System.os_time(:microsecond)} | acc])

      {:nodeup, n} ->
        record([{:nodeup, n, System.os_time(:microsecond)} | acc])

      {:get, from, ref} ->
        send(from, {ref, Enum.reverse(acc)})
        record(acc)

      _ ->
        record(acc)
    end
  end

  defp peer_id(%{id: id}), do: id
  defp peer_id(other), do: other

  @doc "Events recorded so far: [{kind, node, os_time_us}]."
  def events do
    case Process.whereis(@recorder) do
      nil ->
        []

      pid ->
        ref = make_ref()
        send(pid, {:get, self(), ref})

        receive do
          {^ref, evs} -> evs
        after
          5_000 -> []
        end
    end
  end

  # ------------------------------------------------------------------ helpers

  # Every node starts at the same OS time `at` (ms; one clock on one
  # machine), as a fleet that starts at once: a start dispatched on arrival
  # would wait behind the work of the nodes started before it on the shared
  # cores. Returns {:ok, %{started: os_ms, took_ms: ms}}.
  defp at_start(at, fun) do
    Process.sleep(max(0, at - System.os_time(:millisecond)))
    started = System.os_time(:millisecond)

    case run_holder(fun) do
      :ok -> {:ok, %{started: started, took_ms: System.os_time(:millisecond) - started}}
      error -> error
    end
  end

  defp run_holder(fun) do
    parent = self()
    ref = make_ref()

    spawn(fn ->
      result =
        try do
          fun.()
        catch
          k, e -> {:error, {k, e, __STACKTRACE__}}
        end

      send(parent, {ref, result})

      # Keeps whatever fun linked to itself alive until the node stops.
      receive do
        :never -> :ok
      end
    end)

    receive do
      {^ref, {:ok, _}} -> :ok
      {^ref, other} -> {:error, other}
    after
      30_000 -> {:error, :start_timeout}
    end
  end
end
