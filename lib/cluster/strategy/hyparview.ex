defmodule Cluster.Strategy.HyParView do
  @moduledoc """
  libcluster strategy: Erlang-distribution links follow the HyParView active
  view, a bounded partial mesh (about log N + c links per node).

      config :libcluster,
        topologies: [
          hp_example: [
            strategy: Cluster.Strategy.HyParView,
            config: [
              local_peer: HyParView.Peer.new(node(), {{0, 0, 0, 0}, 4500}),
              contacts: [HyParView.Peer.new(:"app@10.0.0.1", {{10, 0, 0, 1}, 4500})],
              transport: HyParView.Transport.TCP,
              hyparview_config: [active_view_size: 5, shuffle_interval: 30_000]
            ]
          ]
        ]

  Every log line of the strategy and of the server it starts begins with
  `[libcluster:<topology>]` (through libcluster's `Cluster.Logger`).

  Config keys: `local_peer` (required, its id must be `node()`), `contacts`,
  `transport`, `hyparview_config` (passed to `HyParView.Config.new/1`),
  `secret` and `advertise_address` (see `HyParView.start_link/1`).

  `contacts` may also hold discovery sources (`{:dns, opts}`,
  `{:strategy, module, config, opts}`, `{module, function, args}`; see
  `HyParView.Discovery.Source`), resolved by a `HyParView.Discovery` started
  next to the server, timed by `discovery_interval` (5_000 ms),
  `discovery_refresh` (60_000 ms) and `discovery_timeout` (5_000 ms).

  Boot every node with `-connect_all false`, otherwise the VM itself turns
  every connection into a full mesh (a warning is logged once if it is not).

  ## Behaviour

  The strategy starts a linked `HyParView.Server` (registered as
  `server_name(topology)`, see `server/1`) and subscribes with replay. On
  `{:peer_up, peer}` it calls `Cluster.Strategy.connect_nodes/4` with
  `[peer.id]`, on `{:peer_down, peer}` `Cluster.Strategy.disconnect_nodes/4`,
  using the topology's `connect`/`disconnect`/`list_nodes` MFAs. If the server
  dies the strategy exits with the same reason (and vice versa).

  To keep `Node.list/0` equal to the active view over time it monitors
  nodes: a connect that fails for a peer still in the active view, and a
  `:nodedown` of an active peer whose overlay link is still up, are retried
  with exponential backoff (200 ms doubling to 15 s) for as long as
  the peer stays in the active view.

  A node that is *not* in the active view but shows up connected is left
  alone (some other code connected it on purpose: a remote shell, `:rpc`,
  observer, ...) *unless it is ours*, i.e. this strategy connected it at some
  point. Such a stray link (left over from connect/disconnect races between
  the two ends, or re-established by a message sent to it) is disconnected
  once it has been outside the active view for 2 s; the delay lets
  the other end's peer_up, which may be a moment ahead of ours, arrive
  first. Every 3 s the strategy also reconciles `list_nodes` with the
  active view (stray links of ours, active peers that lost their link).
  """
  use GenServer
  use Cluster.Strategy

  alias Cluster.Strategy.State
  alias HyParView.Peer

  @backoff_min 200
  @backoff_max 15_000
  @stray_grace 2_000
  @reconcile_interval 3_000
  @config_keys [
    :local_peer,
    :contacts,
    :transport,
    :hyparview_config,
    :secret,
    :advertise_address,
    # Discovery (HyParView.Discovery):
    :discovery_interval,
    :discovery_refresh,
    :discovery_timeout
  ]

  defstruct [
    :topology,
    :connect,
    :disconnect,
    :list_nodes,
    :server,
    :parent,
    active: %{},
    ours: MapSet.new(),
    retries: %{},
    stray_checks: MapSet.new()
  ]

  @doc """
  Starts the strategy for one topology (called by `Cluster.Supervisor`).

  Returns `{:error, reason}` (logging why) when the node is not distributed,
  `local_peer` is missing or its id is not `node()`, or the HyParView server
  cannot start (for example `{:listen_failed, :eaddrinuse}`). An invalid
  `hyparview_config`, `contacts`, `transport`, `secret` or
  `advertise_address` raises `ArgumentError` naming the key. Like
  `HyParView.start_link/1`, a failed start sends no exit signal to the caller.
  """
  @impl Cluster.Strategy
  @spec start_link([State.t()]) :: GenServer.on_start()
  def start_link([%State{} = state]) do
    validate_config!(state.config || [])

    case GenServer.start(__MODULE__, {self(), state}) do
      # Bad configuration is a programming error: raise it in the caller (the
      # supervisor's report then shows the ArgumentError naming the key).
      {:error, {:shutdown, {:invalid_config, message}}} -> raise ArgumentError, message
      {:error, {:shutdown, reason}} -> {:error, reason}
      other -> other
    end
  end

  # Checked in the caller, before anything starts, so a typo fails loudly even
  # on a node that would otherwise be refused for another reason.
  defp validate_config!(config) when is_list(config) do
    _ = HyParView.Config.new(Keyword.get(config, :hyparview_config, []))

    _ = HyParView.Discovery.validate_config!(config)

    case Keyword.get(config, :transport, HyParView.Transport.TCP) do
      HyParView.Transport.TCP ->
        :ok

      other ->
        raise ArgumentError,
              "invalid HyParView config transport: #{inspect(other)} " <>
                "(the only transport is HyParView.Transport.TCP)"
    end
  end

  defp validate_config!(other) do
    raise ArgumentError,
          "invalid HyParView config: expected a keyword list, got #{inspect(other)}"
  end

  @doc """
  The pid of the `HyParView.Server` running for `topology`, or `nil`.
  """
  @spec server(atom) :: pid | nil
  def server(topology) when is_atom(topology), do: Process.whereis(server_name(topology))

  @doc """
  The registered name of the `HyParView.Server` of `topology`
  (`HyParView.Server.<topology>`).
  """
  @spec server_name(atom) :: atom
  def server_name(topology) when is_atom(topology), do: Module.concat(HyParView.Server, topology)

  ## GenServer

  @impl true
  def init({caller, %State{} = cluster_state}) do
    topology = cluster_state.topology

    case preflight(cluster_state) do
      {:ok, server_opts} ->
        Process.flag(:trap_exit, true)
        warn_connect_all(topology)
        :ok = :net_kernel.monitor_nodes(true, node_type: :all)

        server_opts =
          [name: server_name(topology), log_prefix: "[libcluster:#{topology}]"] ++ server_opts

        case HyParView.Server.start_link(server_opts) do
          {:ok, server} ->
            Process.link(caller)
            :ok = HyParView.subscribe(server, self(), replay: true)
            :ok = start_discovery(cluster_state, server)
            Process.send_after(self(), :reconcile, @reconcile_interval)

            {:ok,
             %__MODULE__{
               topology: topology,
               connect: cluster_state.connect,
               disconnect: cluster_state.disconnect,
               list_nodes: cluster_state.list_nodes,
               server: server,
               parent: caller
             }}

          {:error, reason} ->
            log_error(topology, "cannot start the HyParView server: #{inspect(reason)}")
            {:stop, {:shutdown, reason}}
        end

      {:error, reason, message} ->
        log_error(topology, message)
        {:stop, {:shutdown, reason}}
    end
  rescue
    e in ArgumentError ->
      log_error(cluster_state.topology, Exception.message(e))
      {:stop, {:shutdown, {:invalid_config, Exception.message(e)}}}
  end

  @doc false
  # Checks the topology config and the node; returns HyParView.Server options.
  @spec preflight(State.t()) :: {:ok, keyword} | {:error, term, String.t()}
  def preflight(%State{config: config, topology: topology}) do
    config = config || []

    Enum.each(config, fn {key, _} ->
      unless key in @config_keys do
        Cluster.Logger.warn(
          topology,
          "Cluster.Strategy.HyParView: ignoring unknown config key #{inspect(key)}"
        )
      end
    end)

    case Keyword.get(config, :local_peer) do
      %Peer{id: id} = local when id == node() ->
        if Node.alive?() do
          opts =
            [
              peer: local,
              contacts: static_contacts(config),
              transport: Keyword.get(config, :transport, HyParView.Transport.TCP),
              config: Keyword.get(config, :hyparview_config, [])
            ] ++ Keyword.take(config, [:secret, :advertise_address])

          {:ok, opts}
        else
          {:error, :not_distributed,
           "refusing to start: this node is not distributed (start it with -name/-sname); " <>
             "HyParView peers are BEAM nodes"}
        end

      %Peer{id: id} ->
        {:error, {:local_peer_mismatch, id, node()},
         "refusing to start: local_peer id #{inspect(id)} must equal node() " <>
           "(#{inspect(node())})"}

      nil ->
        {:error, :missing_local_peer,
         "refusing to start: config local_peer is required (HyParView.Peer.new(node(), {ip, port}))"}

      other ->
        {:error, :invalid_local_peer,
         "refusing to start: config local_peer must be a %HyParView.Peer{}, got #{inspect(other)}"}
    end
  end

  @impl true
  def handle_info({:hyparview, {:peer_up, %Peer{id: id} = peer}}, state) do
    state = %{state | active: Map.put(state.active, id, peer)}
    {:noreply, connect(state, id, 0)}
  end

  def handle_info({:hyparview, {:peer_down, %Peer{id: id}}}, state) do
    state = cancel_retry(%{state | active: Map.delete(state.active, id)}, id)

    # `ours` is kept: a later stray link to this node is ours to remove.
    Cluster.Strategy.disconnect_nodes(state.topology, state.disconnect, state.list_nodes, [id])
    {:noreply, state}
  end

  def handle_info({:retry_connect, id, attempt}, state) do
    state = %{state | retries: Map.delete(state.retries, id)}

    if Map.has_key?(state.active, id) and not connected?(state, id) do
      {:noreply, connect(state, id, attempt)}
    else
      {:noreply, state}
    end
  end

  def handle_info({:nodeup, node, _info}, state) do
    cond do
      Map.has_key?(state.active, node) ->
        {:noreply, cancel_retry(state, node)}

      MapSet.member?(state.ours, node) ->
        {:noreply, schedule_stray_check(state, node)}

      true ->
        # Not ours: someone else connected it on purpose; leave it alone.
        {:noreply, state}
    end
  end

  def handle_info({:check_stray, node}, state) do
    state = %{state | stray_checks: MapSet.delete(state.stray_checks, node)}

    if not Map.has_key?(state.active, node) and MapSet.member?(state.ours, node) and
         connected?(state, node) do
      Cluster.Strategy.disconnect_nodes(state.topology, state.disconnect, state.list_nodes, [
        node
      ])
    end

    {:noreply, state}
  end

  def handle_info(:reconcile, state) do
    Process.send_after(self(), :reconcile, @reconcile_interval)
    {m, f, a} = state.list_nodes
    connected = MapSet.new(apply(m, f, a))

    state =
      Enum.reduce(connected, state, fn node, acc ->
        if MapSet.member?(acc.ours, node) and not Map.has_key?(acc.active, node),
          do: schedule_stray_check(acc, node),
          else: acc
      end)

    state =
      Enum.reduce(Map.keys(state.active), state, fn node, acc ->
        if MapSet.member?(connected, node) or Map.has_key?(acc.retries, node),
          do: acc,
          else: schedule_retry(acc, node, 0)
      end)

    {:noreply, state}
  end

  def handle_info({:nodedown, node, _info}, state) do
    if Map.has_key?(state.active, node) and not Map.has_key?(state.retries, node) do
      # Distribution dropped but the overlay still has the peer: reconnect.
      {:noreply, schedule_retry(state, node, 0)}
    else
      {:noreply, state}
    end
  end

  def handle_info({:EXIT, pid, reason}, %{server: pid} = state) do
    {:stop, reason, state}
  end

  def handle_info({:EXIT, pid, reason}, %{parent: pid} = state), do: {:stop, reason, state}
  def handle_info({:EXIT, _pid, :normal}, state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}

  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %__MODULE__{server: server}) when is_pid(server) do
    if Process.alive?(server) do
      try do
        HyParView.stop(server)
      catch
        :exit, _ -> :ok
      end
    end

    :ok
  end

  def terminate(_reason, _state), do: :ok

  ## Discovery (contacts: sources, see HyParView.Discovery)

  defp static_contacts(config) do
    {peers, _sources} = HyParView.Discovery.validate_config!(config)
    peers
  end

  # Linked: if discovery dies the strategy stops (and is restarted) with it.
  defp start_discovery(%State{topology: topology, config: config}, server) do
    config = config || []

    case HyParView.Discovery.validate_config!(config) do
      {_peers, []} ->
        :ok

      {peers, sources} ->
        hp_config = HyParView.Config.new(Keyword.get(config, :hyparview_config, []))
        defaults = HyParView.Discovery.config_defaults()
        setting = &Keyword.get(config, &1, defaults[&1])

        {:ok, _pid} =
          HyParView.Discovery.start_link(
            server: server,
            sources: sources,
            contacts: peers,
            active_view_size: hp_config.active_view_size,
            interval: setting.(:discovery_interval),
            refresh: setting.(:discovery_refresh),
            timeout: setting.(:discovery_timeout),
            topology: topology
          )

        :ok
    end
  end

  ## Helpers

  defp connect(state, id, attempt) do
    case Cluster.Strategy.connect_nodes(state.topology, state.connect, state.list_nodes, [id]) do
      :ok ->
        state = cancel_retry(state, id)
        %{state | ours: MapSet.put(state.ours, id)}

      {:error, _bad} ->
        schedule_retry(state, id, attempt + 1)
    end
  end

  defp connected?(state, id) do
    {m, f, a} = state.list_nodes
    id in apply(m, f, a)
  end

  defp schedule_stray_check(state, node) do
    if MapSet.member?(state.stray_checks, node) do
      state
    else
      Process.send_after(self(), {:check_stray, node}, @stray_grace)
      %{state | stray_checks: MapSet.put(state.stray_checks, node)}
    end
  end

  defp schedule_retry(state, id, attempt) do
    state = cancel_retry(state, id)
    delay = backoff(attempt)
    ref = Process.send_after(self(), {:retry_connect, id, attempt}, delay)
    %{state | retries: Map.put(state.retries, id, ref)}
  end

  defp cancel_retry(state, id) do
    case Map.pop(state.retries, id) do
      {nil, _} ->
        state

      {ref, retries} ->
        Process.cancel_timer(ref)
        %{state | retries: retries}
    end
  end

  @doc false
  # Exponential backoff with up to 25% jitter, capped.
  @spec backoff(non_neg_integer) :: pos_integer
  def backoff(attempt) do
    base = min(@backoff_max, @backoff_min * Bitwise.bsl(1, min(attempt, 16)))
    base + :rand.uniform(max(div(base, 4), 1))
  end

  defp warn_connect_all(topology) do
    if :init.get_argument(:connect_all) != {:ok, [['false']]} and
         not :persistent_term.get({__MODULE__, :connect_all_warned}, false) do
      :persistent_term.put({__MODULE__, :connect_all_warned}, true)

      Cluster.Logger.warn(
        topology,
        "Cluster.Strategy.HyParView: the VM was not started with `-connect_all false`; " <>
          "transitive connections will turn the partial mesh into a full mesh"
      )
    end
  end

  defp log_error(topology, message) do
    Cluster.Logger.error(topology, "Cluster.Strategy.HyParView #{message}")
  end
end
