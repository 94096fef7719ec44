# Longer than the ~600-line guideline (about 740) on purpose: the controller
# (boot, kill, restart over :peer, network-namespace placement) and the code
# it runs inside the booted nodes form one protocol and read best together;
# the pure overlay checks are in overlay.ex.
defmodule HyParView.Dev.LocalCluster do
  @moduledoc """
  Demo, test and bench tooling — compiled from `dev/` for `MIX_ENV=dev` and
  `test` only; not part of the library or its published package.

  Boots real BEAM nodes on this machine with OTP's `:peer`, each running
  `Cluster.Supervisor` with one `Cluster.Strategy.HyParView` topology on
  `127.0.0.1`, and inspects, kills and restarts them. `mix hyparview.demo`
  the multi-node ExUnit suite (`test/cluster/`) and `bench/cluster_bench.exs`
  (through `start_node/3`, `free_ports/2` and `wait_until/3`) all drive it;
  the overlay checks are `HyParView.Dev.Overlay`'s.

  Nodes are controlled over `connection: :standard_io`, so the controlling
  VM never joins their distribution mesh (it does not even need to be
  distributed) and every node's `Node.list/0` shows only the links the
  strategy made. Each node is started with `-connect_all false`, a shared
  random cookie and `-pa` for every code path of the controlling VM, so it
  runs exactly the code of this build.

  The cluster is a process (`start_link/1`); stopping it stops every node.
  Node `i` (1-based) is `:"<prefix>n<i>@127.0.0.1"` and keeps the same
  HyParView port across restarts. By default nodes `1` and `2` are every
  node's contacts.

      {:ok, c} = HyParView.Dev.LocalCluster.start_link([])
      {:ok, _nodes} = HyParView.Dev.LocalCluster.boot(c, 1..8)
      {:ok, _snaps, ms} =
        HyParView.Dev.LocalCluster.wait_until(
          fn -> HyParView.Dev.LocalCluster.check(c) end,
          30_000
        )
  """

  use GenServer

  alias HyParView.Dev.Overlay

  @ip {127, 0, 0, 1}
  @topology :hyparview_local_cluster
  @root_sup HyParView.Dev.LocalCluster.Root
  @cluster_sup HyParView.Dev.LocalCluster.ClusterSupervisor

  # Fast timings so that convergence and repair take seconds, not minutes.
  @default_hyparview_config [
    active_view_size: 5,
    passive_view_size: 30,
    shuffle_interval: 500,
    # > connect + handshake + a round trip, as HyParView.Config asks.
    neighbor_timeout: 1_500,
    rejoin_backoff_min: 200,
    rejoin_backoff_max: 2_000,
    promotion_interval: 2_000,
    heartbeat_interval: 200,
    failure_timeout: 1_500,
    connect_timeout: 500,
    handshake_timeout: 500
  ]

  @typedoc "A running cluster (the controlling process)."
  @type cluster :: GenServer.server()

  @typedoc "What one node reports about itself; see `snapshot/1`."
  @type node_state :: %{
          index: pos_integer(),
          node: node(),
          node_list: [node()],
          active_view: [node()],
          passive_view: [node() | String.t()]
        }

  # ---------------------------------------------------------------------------
  # Public API (controlling VM)

  @doc """
  Starts the cluster controller (no nodes yet).

  Options:
    * `:prefix` — node name prefix (default unique per OS process and call)
    * `:hyparview_config` — merged over fast test timings, passed as the
      topology's `hyparview_config`
    * `:contacts` — default contact indexes of every node (default `[1, 2]`)
    * `:log_level` — Logger level inside the nodes (default `:error`)
    * `:extra_config` — extra keys for the topology's `config` (they replace
      the built ones, e.g. `contacts:`)
    * `:basename` — every node is `:"<basename>@<ip>"` instead (needs a
      distinct ip per node, see `:placement`)
    * `:port` — the HyParView port of every node (default: one free port
      per index)
    * `:dist_port` — distribution listens on this port of each node's own
      address, without epmd (`-start_epmd false -erl_epmd_port`): one epmd
      holds a node name once, so nodes sharing a basename need this
    * `:placement` — `fn index -> {netns, ip} end` puts node `index` in the
      network namespace `netns` (`nil` = this one; started via
      `ip netns exec`, so it needs root) with node-name host, HyParView
      listen address and distribution address `ip` (default
      `{nil, {127, 0, 0, 1}}` for every node)
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts)

  @doc "Stops every node and the controller."
  @spec stop(cluster()) :: :ok
  def stop(cluster), do: GenServer.stop(cluster, :normal, 60_000)

  @doc """
  Boots the nodes with the given indexes in parallel and starts the strategy
  on each. Per-call option `:contacts` overrides the contact indexes;
  `defer_start: true` boots the VMs but leaves the strategy to
  `start_strategies/1` (every node at once, as a fleet starts).
  Returns the node names, or `{:error, failures}` listing every node that
  did not come up (the others stay up).
  """
  @spec boot(cluster(), Enumerable.t(), keyword()) :: {:ok, [node()]} | {:error, term()}
  def boot(cluster, indexes, opts \\ []),
    do: GenServer.call(cluster, {:boot, Enum.to_list(indexes), opts}, :infinity)

  @doc """
  Starts the strategy on every node booted with `defer_start: true`, all
  at the same OS time (every node shares this machine's clock). Returns the
  spread of the actual start times in ms.
  """
  @spec start_strategies(cluster()) :: {:ok, non_neg_integer()} | {:error, term()}
  def start_strategies(cluster), do: GenServer.call(cluster, :start_strategies, :infinity)

  @doc """
  Kills the OS processes of the given nodes with `kill -9` (no goodbye to
  anyone) and waits until they are gone.
  """
  @spec kill(cluster(), Enumerable.t()) :: :ok | {:error, term()}
  def kill(cluster, indexes),
    do: GenServer.call(cluster, {:kill, Enum.to_list(indexes)}, :infinity)

  @doc "Name node `index` has (or would have) in this cluster."
  @spec node_name(cluster(), pos_integer()) :: node()
  def node_name(cluster, index), do: GenServer.call(cluster, {:node_name, index})

  @doc """
  Runs `apply(mod, fun, args)` on node `index` (over its control channel,
  not distribution) and returns the result.
  """
  @spec call(cluster(), pos_integer(), module(), atom(), list()) :: term()
  def call(cluster, index, mod, fun, args) do
    {^index, peer} = List.keyfind(GenServer.call(cluster, :members), index, 0)
    :peer.call(peer, mod, fun, args, 10_000)
  end

  @doc "Indexes of nodes currently running, ascending."
  @spec running(cluster()) :: [pos_integer()]
  def running(cluster), do: GenServer.call(cluster, :running)

  @doc "The `active_view_size` the nodes run with."
  @spec active_view_size(cluster()) :: pos_integer()
  def active_view_size(cluster), do: GenServer.call(cluster, :active_view_size)

  @doc "The nodes that are known to this cluster but not running (killed)."
  @spec dead_nodes(cluster()) :: [node()]
  def dead_nodes(cluster), do: GenServer.call(cluster, :dead_nodes)

  @doc """
  Asks every running node (in parallel) for its `Node.list/0`, active view
  and passive view (as node atoms). A node that cannot answer yields
  `{:error, index, reason}` in place of its map.
  """
  @spec snapshot(cluster()) :: [node_state() | {:error, pos_integer(), term()}]
  def snapshot(cluster) do
    members = GenServer.call(cluster, :members)

    members
    |> Task.async_stream(
      fn {index, peer} ->
        try do
          :peer.call(peer, __MODULE__, :remote_state, [@topology], 5_000)
          |> case do
            {:ok, state} ->
              state |> Map.put(:index, index) |> Map.update!(:passive_view, &names/1)

            {:error, reason} ->
              {:error, index, reason}
          end
        catch
          kind, reason -> {:error, index, {kind, reason}}
        end
      end,
      timeout: 10_000,
      on_timeout: :kill_task,
      max_concurrency: 8
    )
    |> Enum.zip(members)
    |> Enum.map(fn
      {{:ok, result}, _} -> result
      {{:exit, reason}, {index, _}} -> {:error, index, reason}
    end)
  end

  @doc """
  Takes a snapshot and checks the partial-mesh properties:

    1. every node's `Node.list/0` equals its active view;
    2. no node has more than `active_view_size` links;
    3. the undirected graph of all `Node.list/0` links is connected;
    4. no node links to a node that is not running (killed or foreign).

  Returns `{:ok, snapshots}` or `{:error, problems}` (human-readable).
  """
  @spec check(cluster()) :: {:ok, [node_state()]} | {:error, [String.t()]}
  def check(cluster) do
    snaps = snapshot(cluster)
    check_snapshots(snaps, active_view_size(cluster), dead_nodes(cluster))
  end

  @doc """
  Like `check/1`, but only for the running nodes in `indexes`, as if every
  other node were dead: the group must form a partial mesh of its own with
  no link leaving it (what each side of a partition should converge to).
  """
  @spec check(cluster(), Enumerable.t()) :: {:ok, [node_state()]} | {:error, [String.t()]}
  def check(cluster, indexes) do
    indexes = MapSet.new(indexes)
    snaps = Enum.filter(snapshot(cluster), &MapSet.member?(indexes, index_of(&1)))
    members = MapSet.new(snaps, &if(is_map(&1), do: &1.node))

    outsiders =
      GenServer.call(cluster, :all_nodes)
      |> Enum.reject(&MapSet.member?(members, &1))

    check_snapshots(snaps, active_view_size(cluster), outsiders)
  end

  # A node's passive view names peers it never linked to as strings (nothing
  # from the network mints an atom there); this VM named every node, so the
  # names are atoms here.
  defp names(ids) do
    Enum.map(ids, fn
      id when is_binary(id) ->
        try do
          String.to_existing_atom(id)
        rescue
          ArgumentError -> id
        end

      id ->
        id
    end)
  end

  defp index_of(%{index: i}), do: i
  defp index_of({:error, i, _}), do: i

  @doc """
  Takes a snapshot and checks that every running node knows at least `k`
  other nodes in its active and passive views together.

  Failure repair draws on the passive view, which Shuffles fill over the
  first seconds of an overlay's life; a node that loses its whole active
  view before that may have nobody left to ask (see the README's known
  limits). Tests and the demo wait for this before they kill nodes.
  """
  @spec check_known(cluster(), non_neg_integer()) ::
          {:ok, [node_state()]} | {:error, [String.t()]}
  def check_known(cluster, k) do
    snaps = snapshot(cluster)

    problems =
      Enum.flat_map(snaps, fn
        %{} = s ->
          known = MapSet.new(s.active_view ++ s.passive_view) |> MapSet.delete(s.node)

          if MapSet.size(known) >= k,
            do: [],
            else: ["#{s.node}: knows #{MapSet.size(known)} nodes < #{k}"]

        {:error, i, reason} ->
          ["node #{i} did not answer: #{inspect(reason)}"]
      end)

    if problems == [], do: {:ok, snaps}, else: {:error, problems}
  end

  # The pure checks on snapshots live in HyParView.Dev.Overlay (the one
  # overlay checker); these names are kept for the tests and the demo.
  @doc "See `HyParView.Dev.Overlay.check_snapshots/3`."
  defdelegate check_snapshots(snaps, active_view_size, dead), to: Overlay
  @doc "See `HyParView.Dev.Overlay.describe/1`."
  defdelegate describe(snaps), to: Overlay
  @doc "See `HyParView.Dev.Overlay.link_count/1`."
  defdelegate link_count(snaps), to: Overlay
  @doc "See `HyParView.Dev.Overlay.to_dot/1`."
  defdelegate to_dot(snaps), to: Overlay
  @doc "See `HyParView.Dev.Overlay.short/1`."
  defdelegate short(node), to: Overlay

  @doc """
  Polls `fun` every `interval_ms` until it returns `:ok`, `true` or
  `{:ok, value}`, or until `timeout_ms` have passed.

  Returns `{:ok, value, elapsed_ms}` or `{:error, {:timeout, last_result}}`.
  The deadline bounds the whole wait, including the time `fun` itself takes.
  """
  @spec wait_until((() -> term()), non_neg_integer(), pos_integer()) ::
          {:ok, term(), non_neg_integer()} | {:error, {:timeout, term()}}
  def wait_until(fun, timeout_ms, interval_ms \\ 100) do
    start = System.monotonic_time(:millisecond)
    do_wait(fun, start, start + timeout_ms, interval_ms)
  end

  defp do_wait(fun, start, deadline, interval) do
    result = fun.()
    now = System.monotonic_time(:millisecond)

    case result do
      :ok ->
        {:ok, :ok, now - start}

      true ->
        {:ok, true, now - start}

      {:ok, value} ->
        {:ok, value, now - start}

      _ when now >= deadline ->
        {:error, {:timeout, result}}

      _ ->
        # Polling pause between two evaluations of the condition.
        Process.sleep(min(interval, max(deadline - now, 1)))
        do_wait(fun, start, deadline, interval)
    end
  end

  # ---------------------------------------------------------------------------
  # Remote side: runs inside the booted nodes via :peer.call.

  @doc false
  # With `at` (OS time, ms): start then, and return {:ok, OS time started}.
  def remote_start(topologies, log_level, at \\ nil) do
    {:ok, _} = Application.ensure_all_started(:logger)
    Logger.configure(level: log_level)
    # Many nodes share one console: say which one is talking.
    Logger.configure_backend(:console, format: "$time #{node()} [$level] $message\n")
    caller = self()
    if at, do: Process.sleep(max(0, at - System.os_time(:millisecond)))
    started = System.os_time(:millisecond)

    # :peer.call runs us in a short-lived process; a supervisor linked to it
    # would shut down when it exits. A holder process owns the tree instead.
    holder =
      :erlang.spawn(fn ->
        result =
          Supervisor.start_link(
            [{Cluster.Supervisor, [topologies, [name: @cluster_sup]]}],
            strategy: :one_for_one,
            name: @root_sup
          )

        send(caller, {:local_cluster_started, self(), result})
        Process.sleep(:infinity)
      end)

    receive do
      {:local_cluster_started, ^holder, {:ok, _}} -> if(at, do: {:ok, started}, else: :ok)
      {:local_cluster_started, ^holder, error} -> error
    after
      15_000 -> {:error, :strategy_start_timeout}
    end
  end

  @doc false
  def remote_state(topology) do
    case find_server(topology) do
      nil ->
        {:error, :server_not_found}

      server ->
        {:ok,
         %{
           node: node(),
           node_list: Node.list(),
           active_view: Enum.map(HyParView.active_view(server), & &1.id),
           passive_view: Enum.map(HyParView.passive_view(server), & &1.id)
         }}
    end
  catch
    kind, reason -> {:error, {kind, reason}}
  end

  defp find_server(topology) do
    Cluster.Strategy.HyParView.server(topology)
  end

  # ---------------------------------------------------------------------------
  # Controller

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    unique = System.unique_integer([:positive])

    hp_config = Keyword.merge(@default_hyparview_config, Keyword.get(opts, :hyparview_config, []))

    {:ok,
     %{
       prefix: Keyword.get(opts, :prefix, "hpv#{:os.getpid()}x#{unique}"),
       cookie: Keyword.get(opts, :cookie, :"hpv_#{unique}_#{:rand.uniform(1_000_000_000_000)}"),
       hyparview_config: hp_config,
       contacts: Keyword.get(opts, :contacts, [1, 2]),
       log_level: Keyword.get(opts, :log_level, :error),
       extra_config: Keyword.get(opts, :extra_config, []),
       basename: Keyword.get(opts, :basename),
       port: Keyword.get(opts, :port),
       dist_port: Keyword.get(opts, :dist_port),
       placement: Keyword.get(opts, :placement, fn _ -> {nil, @ip} end),
       ports: %{},
       # index => %{peer: pid, ref: monitor ref, os_pid: charlist}
       members: %{},
       # every index ever booted
       known: MapSet.new()
     }}
  end

  @impl true
  def handle_call({:boot, indexes, opts}, _from, state) do
    contacts = Keyword.get(opts, :contacts, state.contacts)
    state = Enum.reduce(indexes ++ contacts, state, &ensure_port(&2, &1))

    results =
      indexes
      |> Task.async_stream(&boot_one(state, &1, contacts, opts),
        timeout: 60_000,
        max_concurrency: 8
      )
      |> Enum.zip(indexes)
      |> Enum.map(fn
        {{:ok, result}, _i} -> result
        {{:exit, reason}, i} -> {:error, i, reason}
      end)

    state =
      Enum.reduce(results, state, fn
        {:ok, i, member}, st ->
          # Monitored here, not in the boot task: the monitor must outlive it.
          member = Map.put(member, :ref, Process.monitor(member.peer))
          %{st | members: Map.put(st.members, i, member), known: MapSet.put(st.known, i)}

        _, st ->
          st
      end)

    case Enum.filter(results, &(elem(&1, 0) == :error)) do
      [] -> {:reply, {:ok, Enum.map(indexes, &name(state, &1))}, state}
      errors -> {:reply, {:error, errors}, state}
    end
  end

  def handle_call(:start_strategies, _from, state) do
    deferred = for {i, %{topologies: t} = m} <- state.members, do: {i, m, t}
    level = state.log_level
    # Time for every call to reach its node first.
    at = System.os_time(:millisecond) + 2_000 + 50 * length(deferred)

    results =
      deferred
      |> Task.async_stream(
        fn {i, m, t} ->
          case :peer.call(m.peer, __MODULE__, :remote_start, [t, level, at], 60_000) do
            {:ok, started} -> {i, :ok, started}
            error -> {i, error, nil}
          end
        end,
        timeout: 60_000,
        max_concurrency: max(1, length(deferred))
      )
      |> Enum.map(fn {:ok, r} -> r end)

    members =
      Enum.reduce(deferred, state.members, fn {i, m, _}, acc ->
        Map.put(acc, i, Map.delete(m, :topologies))
      end)

    reply =
      case Enum.reject(results, fn {_, r, _} -> r == :ok end) do
        [] ->
          stamps = Enum.map(results, fn {_, _, t} -> t end)
          {:ok, if(stamps == [], do: 0, else: Enum.max(stamps) - Enum.min(stamps))}

        errors ->
          {:error, errors}
      end

    {:reply, reply, %{state | members: members}}
  end

  def handle_call({:kill, indexes}, _from, state) do
    {victims, members} = Map.split(state.members, indexes)
    # One `kill -9` for all of them: a shell per node would spread the
    # failure over tens of ms per node, and repair is timed from the kill.
    kill9_all(Enum.map(Map.values(victims), & &1.os_pid))

    reply =
      victims
      |> Map.values()
      |> Enum.map(&await_down(&1, 10_000))
      |> Enum.find(:ok, &(&1 != :ok))

    {:reply, reply, %{state | members: members}}
  end

  def handle_call({:node_name, i}, _from, state), do: {:reply, name(state, i), state}

  def handle_call(:all_nodes, _from, state),
    do: {:reply, Enum.map(state.known, &name(state, &1)), state}

  def handle_call(:running, _from, state),
    do: {:reply, state.members |> Map.keys() |> Enum.sort(), state}

  def handle_call(:members, _from, state),
    do: {:reply, state.members |> Enum.sort() |> Enum.map(fn {i, m} -> {i, m.peer} end), state}

  def handle_call(:active_view_size, _from, state),
    do: {:reply, Keyword.fetch!(state.hyparview_config, :active_view_size), state}

  def handle_call(:dead_nodes, _from, state) do
    dead =
      state.known |> Enum.reject(&Map.has_key?(state.members, &1)) |> Enum.map(&name(state, &1))

    {:reply, dead, state}
  end

  @impl true
  def handle_info({:DOWN, ref, :process, _pid, _reason}, state) do
    # A node died behind our back (crash, halt): it is no longer running.
    members = state.members |> Enum.reject(fn {_i, m} -> m.ref == ref end) |> Map.new()
    {:noreply, %{state | members: members}}
  end

  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    state.members
    |> Map.values()
    |> Enum.each(fn m ->
      # A graceful stop can hang on a wedged node; kill -9 cannot.
      kill9(m.os_pid)
      await_down(m, 5_000)
    end)
  end

  # The shell's builtin kill: no dependency on procps being installed.
  defp kill9(os_pid) when is_list(os_pid), do: :os.cmd('kill -9 ' ++ os_pid)

  defp kill9_all([]), do: :ok
  defp kill9_all(os_pids), do: kill9(Enum.intersperse(os_pids, ' ') |> List.flatten())

  defp await_down(member, timeout) do
    receive do
      {:DOWN, ref, :process, _, _} when ref == member.ref -> :ok
    after
      timeout -> {:error, {:still_running, member.os_pid}}
    end
  end

  defp name(%{basename: nil} = state, i),
    do: :"#{state.prefix}n#{i}@#{:inet.ntoa(ip(state, i))}"

  defp name(state, i), do: :"#{state.basename}@#{:inet.ntoa(ip(state, i))}"

  defp ip(state, i), do: state.placement.(i) |> elem(1)
  defp netns(state, i), do: state.placement.(i) |> elem(0)

  defp ensure_port(state, i) do
    cond do
      state.port != nil -> %{state | ports: Map.put(state.ports, i, state.port)}
      Map.has_key?(state.ports, i) -> state
      true -> %{state | ports: Map.put(state.ports, i, free_port(Map.values(state.ports)))}
    end
  end

  defp free_port(taken) do
    Stream.repeatedly(fn -> 20_000 + :rand.uniform(12_000) end)
    |> Stream.reject(&(&1 in taken))
    |> Enum.find(fn port ->
      case :gen_tcp.listen(port, ip: @ip, reuseaddr: true) do
        {:ok, sock} ->
          :gen_tcp.close(sock)
          true

        {:error, _} ->
          false
      end
    end)
  end

  defp boot_one(state, i, contacts, opts) do
    node = name(state, i)

    # Distribution listens on the node's own address only (loopback by default).
    dist_ip = ip(state, i) |> Tuple.to_list() |> Enum.join(",")

    args =
      ['-connect_all', 'false', '-setcookie', Atom.to_charlist(state.cookie)] ++
        ['-kernel', 'prevent_overlapping_partitions', 'false'] ++
        ['-kernel', 'inet_dist_use_interface', String.to_charlist("{#{dist_ip}}")] ++
        dist_port_args(state) ++ code_path_args()

    case start_node(node, args, netns: netns(state, i)) do
      {:ok, peer} ->
        os_pid = :peer.call(peer, :os, :getpid, [])

        topologies = [
          {@topology,
           [
             strategy: Cluster.Strategy.HyParView,
             config:
               Keyword.merge(
                 [
                   local_peer: HyParView.Peer.new(node, {ip(state, i), state.ports[i]}),
                   contacts:
                     for(
                       c <- contacts,
                       c != i,
                       do: HyParView.Peer.new(name(state, c), {ip(state, c), state.ports[c]})
                     ),
                   hyparview_config: state.hyparview_config
                 ],
                 state.extra_config
               )
           ]}
        ]

        member = %{peer: peer, os_pid: os_pid}

        if Keyword.get(opts, :defer_start, false) do
          {:ok, i, Map.put(member, :topologies, topologies)}
        else
          start_strategy(member, i, topologies, state.log_level)
        end

      {:error, reason} ->
        {:error, i, {:peer_start_failed, reason}}
    end
  end

  defp start_strategy(%{peer: peer, os_pid: os_pid} = member, i, topologies, log_level) do
    case :peer.call(peer, __MODULE__, :remote_start, [topologies, log_level], 30_000) do
      :ok ->
        {:ok, i, member}

      error ->
        kill9(os_pid)
        {:error, i, {:strategy_start_failed, error}}
    end
  end

  defp dist_port_args(%{dist_port: nil}), do: []

  defp dist_port_args(%{dist_port: port}),
    do: ['-start_epmd', 'false', '-erl_epmd_port', Integer.to_charlist(port)]

  @doc """
  `-pa` arguments for every code path of this VM outside OTP, so a booted
  node runs exactly the code of this build.
  """
  @spec code_path_args() :: [charlist()]
  def code_path_args do
    root = List.to_string(:code.root_dir())

    :code.get_path()
    |> Enum.map(&List.to_string/1)
    |> Enum.reject(&(String.starts_with?(&1, root) or &1 == "."))
    |> Enum.uniq()
    |> Enum.flat_map(&['-pa', String.to_charlist(&1)])
  end

  @doc """
  Boots one BEAM node named `node` (longnames) with OTP's `:peer`, controlled
  over standard I/O (so this VM never joins its mesh), with VM arguments
  `args`. The one node boot of the harness; `bench/cluster_bench.exs` uses it
  too.

  Options: `:netns` (run it in that network namespace, needs root),
  `:wait_boot` (ms, default 30_000), `:attempts` (default 3: a restarted
  node can briefly find its name still registered in epmd).
  """
  @spec start_node(node(), [charlist()], keyword()) :: {:ok, pid()} | {:error, term()}
  def start_node(node, args, opts \\ []) do
    [sname, host] = node |> Atom.to_string() |> String.split("@")

    exec =
      case Keyword.get(opts, :netns) do
        nil ->
          %{}

        netns ->
          erl = Path.join([:code.root_dir(), "bin", "erl"])

          %{
            exec:
              {:os.find_executable('ip'), ['netns', 'exec', to_charlist(netns), to_charlist(erl)]}
          }
      end

    spec =
      Map.merge(
        %{
          name: String.to_atom(sname),
          host: String.to_charlist(host),
          longnames: true,
          connection: :standard_io,
          args: args,
          wait_boot: Keyword.get(opts, :wait_boot, 30_000)
        },
        exec
      )

    start_peer(node, spec, Keyword.get(opts, :attempts, 3))
  end

  defp start_peer(node, spec, attempts) do
    case :peer.start(spec) do
      {:ok, peer, ^node} ->
        {:ok, peer}

      {:ok, peer} ->
        {:ok, peer}

      {:error, _} = error when attempts <= 1 ->
        error

      {:error, _} ->
        # Polling pause: epmd forgets a dead node's name within a moment.
        Process.sleep(500)
        start_peer(node, spec, attempts - 1)
    end
  end

  @doc """
  `n` distinct free TCP ports on 127.0.0.1, below the kernel's ephemeral
  range (32768+), so no outgoing connection can take one between this probe
  and a node binding it.
  """
  @spec free_ports(non_neg_integer(), [non_neg_integer()]) :: [:inet.port_number()]
  def free_ports(n, taken \\ []) do
    Enum.reduce(1..n//1, [], fn _, acc -> [free_port(acc ++ taken) | acc] end) |> Enum.reverse()
  end
end
