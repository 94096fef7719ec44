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
  `server_name(topology)`, see `server/1`) and subscribes with replay. The
  server announces a peer (`{:peer_up, peer}`) only once both ends of the
  overlay link hold it (see `HyParView.Server`), and of every pair
  only one end connects: the one that announces the peer last
  (`HyParView.Server.connects?/2`), when both ends hold the link and have
  made room for it (handled the `peer_down` of the peer they evicted). So
  on `{:peer_up, peer}` that end calls `Cluster.Strategy.connect_nodes/4`
  with `[peer.id]` (in a process of its own, so new peers connect in
  parallel and events are handled meanwhile) and the other waits for that
  link (for a second, then it connects too); on `{:peer_down, peer}` either end calls
  `Cluster.Strategy.disconnect_nodes/4`, using the topology's
  `connect`/`disconnect`/`list_nodes` MFAs. If the server dies the
  strategy exits with the same reason (and vice versa).

  Everything is driven by events (peer_up/peer_down, `:nodeup`/`:nodedown`,
  claims); behind them, an audit every 5 s handles (and logs a warning for)
  any link of ours outside the announced active view that they missed. A
  strategy restarted by its supervisor waits for the previous run's server
  to stop before it starts its own. A connect that fails for a peer still in the
  active view, and a `:nodedown` of an active peer whose overlay link is
  still up, are retried by the connecting end with exponential backoff
  (200 ms doubling to 15 s) for as long as the peer stays in the active
  view.

  ## Strategy links and strays

  A link is *ours* (made by a strategy of this topology) when its node was
  announced active here, when this node connected it, or when the node at
  the other end said so: after every
  successful connect the strategy sends a one-word claim to the other end's
  strategy (with `:noconnect`, so the claim itself never opens a link).
  Links to nodes that are neither active nor ours are left alone (some other
  code connected them on purpose: a remote shell, `:rpc`, observer, ...).

  Since the connecting end waits for the overlay's confirmation, a link
  reaches the other end when that end's overlay already holds the peer;
  only its announcement may still be on the way (the confirmation travels
  next to the connect). An ours link to a node outside the announced
  active view is a *stray*: it is kept while the overlay holds the peer
  (checked every 150 ms, for at most 1 s) and the node's strategy links stay within
  `active_view_size`, and disconnected at once otherwise (the overlay
  dropped the peer; its DISCONNECT is on the way to the other end). A
  disconnect that misses (a connection net_kernel has not marked up yet
  answers "already disconnected") is tried again 50 ms later. So
  `Node.list/0` follows the active view within a round trip and a
  connect, and holds more than `active_view_size` strategy links only if
  the connect reaches the other end before that end's strategy handled
  the `peer_down` of the peer it evicted for the link.
  """
  use GenServer
  use Cluster.Strategy

  alias Cluster.Strategy.HyParView.Setup
  alias Cluster.Strategy.State
  alias HyParView.Peer

  @backoff_min 200
  @backoff_max 15_000
  # How often a link from a peer that the overlay holds but has not
  # announced yet is checked again (the announcement is normally a round
  # trip away; the overlay drops a link it cannot confirm within seconds).
  @confirm_window 150
  # Longest such a link waits: the announcement is a round trip away (the
  # echo of a new link, or the PING the transport sends right behind it).
  @hold_max 1_000
  # A safety net behind the events: how often the strategy's links are
  # checked against the announced active view.
  @audit_interval 5_000
  # How long the end that announced a peer first waits for the other end's
  # connect before it connects itself.
  @await_link 1_000
  # When a link that a disconnect missed is checked again (see drop/2).
  @recheck_after 50
  defstruct [
    :topology,
    :connect,
    :disconnect,
    :list_nodes,
    :server,
    :parent,
    active_view_size: 5,
    active: %{},
    # Active peers whose link this end makes (HyParView.Server.connects?/2).
    dials: MapSet.new(),
    ours: MapSet.new(),
    retries: %{},
    # Connects in flight: node => {pid, monitor ref}.
    connecting: %{},
    pending: %{}
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
    Setup.validate_config!(state.config || [])

    case GenServer.start(__MODULE__, {self(), state}) do
      # Bad configuration is a programming error: raise it in the caller (the
      # supervisor's report then shows the ArgumentError naming the key).
      {:error, {:shutdown, {:invalid_config, message}}} -> raise ArgumentError, message
      {:error, {:shutdown, reason}} -> {:error, reason}
      other -> other
    end
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

    case Setup.preflight(cluster_state) do
      {:ok, server_opts} ->
        Process.flag(:trap_exit, true)
        Setup.warn_connect_all(topology)
        :ok = :net_kernel.monitor_nodes(true, node_type: :all)

        server_opts =
          [name: server_name(topology), log_prefix: "[libcluster:#{topology}]"] ++ server_opts

        Setup.await_previous_server(server(topology))

        case HyParView.Server.start_link(server_opts) do
          {:ok, server} ->
            Process.link(caller)
            # Claims from the other ends of our links are sent to this name.
            Process.register(self(), claim_name(topology))
            :ok = HyParView.subscribe(server, self(), replay: true)
            :ok = Setup.start_discovery(cluster_state, server)
            schedule_audit()

            {:ok,
             %__MODULE__{
               topology: topology,
               connect: cluster_state.connect,
               disconnect: cluster_state.disconnect,
               list_nodes: cluster_state.list_nodes,
               server: server,
               parent: caller,
               active_view_size: Setup.active_view_size(cluster_state.config || [])
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
  # See Cluster.Strategy.HyParView.Setup.preflight/1.
  defdelegate preflight(state), to: Setup

  @impl true
  def handle_info({:hyparview, {:peer_up, %Peer{id: id} = peer}}, state) do
    dials = if connects?(state, id), do: MapSet.put(state.dials, id), else: state.dials
    # An active peer's link is a strategy's, whichever end makes it.
    state = %{
      state
      | active: Map.put(state.active, id, peer),
        dials: dials,
        ours: MapSet.put(state.ours, id)
    }

    state = cancel_pending(state, id)

    state =
      cond do
        connected?(state, id) -> cancel_retry(state, id)
        dials?(state, id) -> connect(state, id, 0)
        # The other end connects: it announced the peer after we did.
        true -> await_link(state, id)
      end

    # A new active peer may leave no room for an unconfirmed stray.
    {:noreply, enforce_bound(state)}
  end

  def handle_info({:hyparview, {:peer_down, %Peer{id: id}}}, state) do
    state = %{state | active: Map.delete(state.active, id), dials: MapSet.delete(state.dials, id)}
    state = cancel_retry(state, id)

    # `ours` is kept: a later stray link to this node is ours to remove.
    {:noreply, drop(state, id)}
  end

  def handle_info({:connect_result, pid, id, attempt, result}, state) do
    case Map.get(state.connecting, id) do
      {^pid, ref} ->
        Process.demonitor(ref, [:flush])
        state = %{state | connecting: Map.delete(state.connecting, id)}
        {:noreply, connect_done(state, id, attempt, result)}

      _ ->
        {:noreply, state}
    end
  end

  # A connect process that died without a result (the connect MFA raised).
  def handle_info({:DOWN, ref, :process, pid, reason}, state) do
    case Enum.find(state.connecting, fn {_id, entry} -> entry == {pid, ref} end) do
      {id, _} ->
        state = %{state | connecting: Map.delete(state.connecting, id)}
        {:noreply, connect_done(state, id, 0, {:error, reason})}

      nil ->
        {:noreply, state}
    end
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
        {:noreply, state |> cancel_retry(node) |> enforce_bound()}

      MapSet.member?(state.ours, node) ->
        {:noreply, stray(state, node)}

      true ->
        # Not ours (yet): a claim from its strategy makes it ours; without
        # one, someone else connected it on purpose and it is left alone.
        {:noreply, state}
    end
  end

  # The other end's strategy made the link to us. Only a connected node can
  # have sent it, so the set of ours grows only with nodes we linked to.
  def handle_info({:hyparview_claim, node}, state) when is_atom(node) do
    if node in Node.list(:connected) do
      state = %{state | ours: MapSet.put(state.ours, node)}

      if Map.has_key?(state.active, node),
        do: {:noreply, state},
        else: {:noreply, stray(state, node)}
    else
      {:noreply, state}
    end
  end

  def handle_info({:confirm_window, node, since}, state) do
    state = %{state | pending: Map.delete(state.pending, node)}

    if stray?(state, node) and connected?(state, node) do
      {:noreply, stray(state, node, since)}
    else
      {:noreply, state}
    end
  end

  # Every link of ours outside the announced active view is normally
  # handled by the event that made it a stray; one found here was missed by
  # them, so it is logged (and handled as any stray).
  def handle_info(:audit, state) do
    state =
      links(state)
      |> Enum.filter(&(stray?(state, &1) and not Map.has_key?(state.pending, &1)))
      |> Enum.reduce(state, fn node, acc ->
        Cluster.Logger.warn(
          acc.topology,
          "Cluster.Strategy.HyParView: link to #{inspect(node)} outside the active view " <>
            "found by the audit"
        )

        stray(acc, node)
      end)

    schedule_audit()
    {:noreply, state}
  end

  def handle_info({:recheck, node}, state) do
    if stray?(state, node) and connected?(state, node),
      do: {:noreply, stray(state, node)},
      else: {:noreply, state}
  end

  def handle_info({:nodedown, node, _info}, state) do
    cond do
      not Map.has_key?(state.active, node) ->
        {:noreply, state}

      not dials?(state, node) ->
        # The other end reconnects; should it not, this end will.
        {:noreply, await_link(state, node)}

      Map.has_key?(state.retries, node) or Map.has_key?(state.connecting, node) ->
        {:noreply, state}

      true ->
        # Distribution dropped but the overlay still has the peer: reconnect.
        {:noreply, schedule_retry(state, node, 0)}
    end
  end

  # The end that should connect did not within @await_link (both ends may
  # have announced the peer first): this end connects instead.
  def handle_info({:await_link, id}, state) do
    if Map.has_key?(state.active, id) and not dials?(state, id) and not connected?(state, id) do
      Cluster.Logger.debug(state.topology, "no link from #{inspect(id)} yet; connecting to it")
      state = %{state | dials: MapSet.put(state.dials, id)}
      {:noreply, connect(state, id, 0)}
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
  def terminate(_reason, %__MODULE__{server: server} = state) when is_pid(server) do
    Enum.each(state.connecting, fn {_id, {pid, _ref}} -> Process.exit(pid, :kill) end)

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

  ## Helpers

  # A connect runs in a process of its own: several new peers connect in
  # parallel, and the strategy goes on handling events (a peer_down must
  # not wait behind a distribution handshake).
  defp connect(state, id, attempt) do
    if Map.has_key?(state.connecting, id) do
      state
    else
      strategy = self()
      %{topology: topology, connect: mfa, list_nodes: list} = state

      {pid, ref} =
        spawn_monitor(fn ->
          result = Cluster.Strategy.connect_nodes(topology, mfa, list, [id])
          send(strategy, {:connect_result, self(), id, attempt, result})
        end)

      %{state | connecting: Map.put(state.connecting, id, {pid, ref})}
    end
  end

  defp connect_done(state, id, attempt, result) do
    case result do
      :ok ->
        # :noconnect: if the link is already gone, the claim must not reopen it.
        _ =
          :erlang.send({claim_name(state.topology), id}, {:hyparview_claim, node()}, [:noconnect])

        state = %{cancel_retry(state, id) | ours: MapSet.put(state.ours, id)}
        # The peer may have left the active view while the connect ran; if
        # not, the new link may leave no room for an unconfirmed stray.
        if Map.has_key?(state.active, id), do: enforce_bound(state), else: stray(state, id)

      _error ->
        if Map.has_key?(state.active, id) and not connected?(state, id),
          do: schedule_retry(state, id, attempt + 1),
          else: state
    end
  end

  # The topology's `list_nodes` MFA: the nodes this one is linked to.
  defp links(%{list_nodes: {m, f, a}}), do: apply(m, f, a)

  defp connected?(state, id), do: id in links(state)

  # A node of ours outside the announced active view: a link to it is a stray.
  defp stray?(state, node),
    do: MapSet.member?(state.ours, node) and not Map.has_key?(state.active, node)

  # Of each pair, the end that announced the peer last connects: by then
  # both ends hold the link and have made room for it.
  defp dials?(state, id), do: MapSet.member?(state.dials, id)

  defp connects?(%{server: server}, id) when is_pid(server) do
    HyParView.Server.connects?(server, id)
  catch
    :exit, _ -> false
  end

  defp connects?(_state, _id), do: false

  # An ours link to `node`, which is not in the announced active view
  # (since `since`, ms): keep it while the overlay holds the peer (its
  # announcement is on the way), for at most @hold_max, and while there is
  # room for it; drop it otherwise. A link dropped too early costs a
  # reconnect from the end that announces the peer last.
  defp stray(state, node, since \\ System.monotonic_time(:millisecond)) do
    if Map.has_key?(state.pending, node) do
      state
    else
      # The server answers after forwarding every event it had queued: those
      # are handled first (the eviction that made room for this link, or the
      # peer's own announcement, may be among them).
      holds? = overlay_holds?(state, node)
      state = take_events(state)
      held_for = System.monotonic_time(:millisecond) - since

      cond do
        Map.has_key?(state.active, node) ->
          state

        strategy_links(state) + map_size(state.pending) >= state.active_view_size ->
          drop(state, node)

        held_for < @hold_max and holds? ->
          ref = Process.send_after(self(), {:confirm_window, node, since}, @confirm_window)
          %{state | pending: Map.put(state.pending, node, ref)}

        true ->
          drop(state, node)
      end
    end
  end

  # Handles the server's events already in the mailbox, in order.
  defp take_events(state) do
    receive do
      {:hyparview, _event} = message ->
        {:noreply, state} = handle_info(message, state)
        take_events(state)
    after
      0 -> state
    end
  end

  defp overlay_holds?(%{server: server}, node) when is_pid(server) do
    HyParView.Server.holds?(server, node)
  catch
    :exit, _ -> false
  end

  defp overlay_holds?(_state, _node), do: false

  # Drops unconfirmed strays until the strategy links fit the bound again.
  defp enforce_bound(state) do
    excess = strategy_links(state) + map_size(state.pending) - state.active_view_size

    state.pending
    |> Map.keys()
    |> Enum.take(max(excess, 0))
    |> Enum.reduce(state, fn node, acc -> drop(cancel_pending(acc, node), node) end)
  end

  # Connected active peers (an active peer not yet connected is not a link).
  defp strategy_links(state), do: Enum.count(links(state), &Map.has_key?(state.active, &1))

  # A disconnect can miss: a connection whose handshake the runtime has
  # finished but net_kernel has not yet marked up is listed, yet
  # `disconnect_node/1` answers false ("already disconnected"). A link
  # still listed after the call is checked again a moment later.
  defp drop(state, node) do
    Cluster.Strategy.disconnect_nodes(state.topology, state.disconnect, state.list_nodes, [node])
    if connected?(state, node), do: Process.send_after(self(), {:recheck, node}, @recheck_after)
    state
  end

  defp cancel_pending(state, node) do
    case Map.pop(state.pending, node) do
      {nil, _} ->
        state

      {ref, pending} ->
        Process.cancel_timer(ref)
        %{state | pending: pending}
    end
  end

  defp await_link(state, id) do
    Process.send_after(self(), {:await_link, id}, @await_link)
    state
  end

  defp schedule_audit, do: Process.send_after(self(), :audit, @audit_interval)

  defp claim_name(topology), do: Module.concat(__MODULE__, topology)

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

  defp log_error(topology, message) do
    Cluster.Logger.error(topology, "Cluster.Strategy.HyParView #{message}")
  end
end
