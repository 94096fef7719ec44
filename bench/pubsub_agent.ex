# Code that runs INSIDE each peer of the PubSub benchmark
# (bench/pubsub_bench.exs compiles it in memory and loads the binary into
# every peer with :code.load_binary/3, as bench/cluster_bench.exs does with
# bench/agent.ex).
#
# Every public function is called through :peer.call/5, which runs it in a
# short-lived process; whatever must outlive the call (cluster supervisor,
# PubSub, recorder) is owned by a spawned process.
defmodule PubSubBenchAgent do
  @moduledoc false

  @topology :bench
  @pubsub PubSubBench.PubSub
  @adapter_name PubSubBench.PubSub.Adapter
  @topic "bench"
  @recorder :pubsub_bench_recorder

  @doc """
  Common setup: Logger quiet (its output crosses the control pipe), the
  applications started and every module loaded now, as a release in embedded
  mode would, so lazy code loading is not timed.
  """
  def boot(mode, log_level) do
    {:ok, _} = Application.ensure_all_started(:logger)
    Logger.configure(level: log_level)
    # Starts the :pg scope Phoenix.PubSub.PG2 joins (both modes run it).
    {:ok, _} = Application.ensure_all_started(:phoenix_pubsub)
    apps = [:phoenix_pubsub]

    apps =
      if mode == :hyparview do
        {:ok, _} = Application.ensure_all_started(:libcluster_hyparview)
        apps ++ [:libcluster, :libcluster_hyparview]
      else
        apps
      end

    for app <- apps, {:ok, mods} = :application.get_key(app, :modules), mod <- mods do
      Code.ensure_loaded(mod)
    end

    %{os_pid: List.to_integer(:os.getpid()), node: node()}
  end

  # ------------------------------------------------------------------ modes

  @doc """
  Cluster.Strategy.HyParView and `{Phoenix.PubSub, adapter: HyParView.PubSub}`
  on the strategy's topology, as a user would write them.
  """
  def start_hyparview(config) do
    run_holder(fn ->
      topologies = [{@topology, [strategy: Cluster.Strategy.HyParView, config: config]}]

      Supervisor.start_link(
        [
          {Cluster.Supervisor, [topologies, [name: PubSubBenchAgent.ClusterSupervisor]]},
          {Phoenix.PubSub, name: @pubsub, adapter: HyParView.PubSub, topology: @topology}
        ],
        strategy: :one_for_one
      )
    end)
  end

  @doc """
  Full mesh plus `{Phoenix.PubSub, name: ...}` with its default adapter,
  `Phoenix.PubSub.PG2`: a broadcast `send`s the message over distribution
  to the adapter process of every other node in the `:pg` group, which
  dispatches it to the local subscribers through the Registry.
  """
  def start_pg2(nodes) do
    connect(nodes)

    run_holder(fn ->
      Supervisor.start_link([{Phoenix.PubSub, name: @pubsub}], strategy: :one_for_one)
    end)
  end

  @doc "Connects to every node of `nodes` not connected yet."
  def connect(nodes) do
    connected = MapSet.new([node() | Node.list()])
    for n <- nodes, not MapSet.member?(connected, n), do: Node.connect(n)
    :ok
  end

  # ---------------------------------------------------------------- queries

  @doc "What the controller waits on before measuring."
  def state(mode) do
    base = %{node: node(), nodes: Node.list()}

    case mode do
      :hyparview ->
        case server() do
          nil ->
            Map.merge(base, %{active: nil, subscribers: 0})

          s ->
            info = HyParView.info(s)

            Map.merge(base, %{
              active: Enum.map(info.active_view, & &1.id),
              passive: length(info.passive_view),
              subscribers: info.subscribers
            })
        end

      :pg2 ->
        Map.put(base, :pg_members, length(:pg.get_members(Phoenix.PubSub, @adapter_name)))
    end
  catch
    _, _ -> %{node: node(), nodes: Node.list(), active: nil, subscribers: 0, pg_members: 0}
  end

  defp server, do: Cluster.Strategy.HyParView.server(@topology)

  @doc "The HyParView server's counters and the adapter's (hyparview only)."
  def counters(:hyparview) do
    case server() do
      nil ->
        nil

      s ->
        changes = if Process.whereis(@recorder), do: count(:view_changes), else: 0

        %{
          hyparview: Map.put(HyParView.info(s).counters, :active_view_changes, changes),
          adapter: HyParView.PubSub.stats(@pubsub)
        }
    end
  catch
    _, _ -> nil
  end

  def counters(_mode), do: nil

  @doc "Bytes through the Erlang distribution sockets, summed over all links."
  def dist_bytes do
    for {_n, ctrl} <- :erlang.system_info(:dist_ctrl), is_port(ctrl), reduce: {0, 0} do
      {o, i} ->
        case :inet.getstat(ctrl, [:send_oct, :recv_oct]) do
          {:ok, st} -> {o + st[:send_oct], i + st[:recv_oct]}
          _ -> {o, i}
        end
    end
  end

  # --------------------------------------------------------------- recorder

  @doc """
  Starts the recorder: a process subscribed to the topic that stamps every
  bench message on arrival with System.os_time(:microsecond) (one machine,
  one clock for every node) and keeps {seq, latency_us} per phase. With
  HyParView it also counts the server's peer_up/peer_down events (active
  view changes).
  """
  def start_recorder(mode) do
    parent = self()
    ref = make_ref()

    spawn(fn ->
      Process.register(self(), @recorder)
      sub = Phoenix.PubSub.subscribe(@pubsub, @topic)

      sub =
        if sub == :ok and mode == :hyparview, do: HyParView.subscribe(server(), self()), else: sub

      send(parent, {ref, sub})
      record(%{view_changes: 0})
    end)

    receive do
      {^ref, res} -> res
    after
      10_000 -> {:error, :timeout}
    end
  end

  defp record(phases) do
    receive do
      {:pbench, phase, seq, stamp, _payload} ->
        now = System.os_time(:microsecond)

        phases =
          case phases do
            %{^phase => {n, _last, acc}} ->
              %{phases | phase => {n + 1, now, [{seq, now - stamp} | acc]}}

            _ ->
              Map.put(phases, phase, {1, now, [{seq, now - stamp}]})
          end

        record(phases)

      {:hyparview, {kind, _peer}} when kind in [:peer_up, :peer_down] ->
        record(%{phases | view_changes: phases.view_changes + 1})

      {:count, from, ref, :view_changes} ->
        send(from, {ref, phases.view_changes})
        record(phases)

      {:count, from, ref, phase} ->
        n =
          case phases do
            %{^phase => {n, _, _}} -> n
            _ -> 0
          end

        send(from, {ref, n})
        record(phases)

      {:report, from, ref, phase} ->
        send(from, {ref, report(Map.get(phases, phase))})
        record(Map.delete(phases, phase))

      _ ->
        record(phases)
    end
  end

  # Arrival-order analysis on the node; the latencies go back raw (as
  # {seq, us}) so the controller can take percentiles over all receivers.
  defp report(nil),
    do: %{count: 0, unique: 0, duplicates: 0, order_violations: 0, last_us: nil, samples: []}

  defp report({n, last_us, acc}) do
    samples = Enum.reverse(acc)
    seqs = Enum.map(samples, &elem(&1, 0))
    unique = seqs |> MapSet.new() |> MapSet.size()

    # A message that arrives after one its origin sent later.
    {violations, _} =
      Enum.reduce(seqs, {0, 0}, fn s, {v, max} ->
        if s < max, do: {v + 1, max}, else: {v, s}
      end)

    %{
      count: n,
      unique: unique,
      duplicates: n - unique,
      order_violations: violations,
      last_us: last_us,
      samples: samples
    }
  end

  @doc "Bench messages of `phase` the recorder has received so far."
  def count(phase), do: ask(:count, phase)

  @doc "The recorder's analysis of `phase` (and forgets it)."
  def report_phase(phase), do: ask(:report, phase)

  defp ask(what, phase) do
    ref = make_ref()
    send(@recorder, {what, self(), ref, phase})

    receive do
      {^ref, r} -> r
    after
      10_000 -> {:error, :timeout}
    end
  end

  # ----------------------------------------------------------------- origin

  @doc "One warm-up message (seq `k`): not counted in the phases."
  def warm(k), do: publish(:warm, k, <<>>)

  @doc """
  Throughput phase: broadcasts `n` messages of a `size`-byte payload as fast
  as Phoenix.PubSub.broadcast/3 returns. An `{:error, :overloaded}` (the
  HyParView server's local queue is full, `broadcast_queue_bytes`) is the
  API's backpressure: the same message is retried after 1 ms and counted.
  Returns the OS time of the first call and after the last, in µs.
  """
  def throughput(n, size) do
    payload = :crypto.strong_rand_bytes(size)
    t0 = System.os_time(:microsecond)

    {retries, errors} =
      Enum.reduce(1..n, {0, []}, fn seq, acc -> publish_retry(seq, payload, acc) end)

    %{t0_us: t0, t_end_us: System.os_time(:microsecond), retries: retries, errors: errors}
  end

  defp publish_retry(seq, payload, {retries, errors}) do
    case publish(:throughput, seq, payload) do
      :ok ->
        {retries, errors}

      {:error, :overloaded} ->
        Process.sleep(1)
        publish_retry(seq, payload, {retries + 1, errors})

      {:error, reason} ->
        {retries, Enum.take([{seq, reason} | errors], 20)}
    end
  end

  @doc """
  Latency phase (`:latency`, or `:latency_early` while the overlay still
  reshapes itself): `n` messages of `size` bytes at `rate` per second, each on
  its own schedule slot (t0 + k/rate, so a late send does not shift the
  rest), stamped with System.os_time(:microsecond) when sent.
  """
  def latency(phase, n, rate, size) when phase in [:latency, :latency_early] do
    payload = :crypto.strong_rand_bytes(size)
    t0 = System.monotonic_time(:microsecond)
    step = 1_000_000 / rate

    errors =
      Enum.reduce(1..n, 0, fn seq, errors ->
        wait_until(t0 + round((seq - 1) * step))
        if publish(phase, seq, payload) == :ok, do: errors, else: errors + 1
      end)

    %{errors: errors, duration_us: System.monotonic_time(:microsecond) - t0}
  end

  defp wait_until(t) do
    case t - System.monotonic_time(:microsecond) do
      d when d >= 1_000 -> Process.sleep(div(d, 1_000))
      _ -> :ok
    end
  end

  # The message term names only atoms of this module, loaded on every node:
  # HyParView.PubSub decodes with [:safe].
  defp publish(phase, seq, payload) do
    msg = {:pbench, phase, seq, System.os_time(:microsecond), payload}
    Phoenix.PubSub.broadcast(@pubsub, @topic, msg)
  end

  # ----------------------------------------------------------------- helper

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
