if Code.ensure_loaded?(Phoenix.PubSub) do
  defmodule HyParView.PubSub do
    @moduledoc """
    A `Phoenix.PubSub` adapter that carries broadcasts over the HyParView
    overlay (Plumtree, `HyParView.broadcast/2`) instead of Erlang distribution.

    With `Cluster.Strategy.HyParView`, `Node.list/0` is the active view: a few
    neighbours, not every node. Phoenix.PubSub's default adapter
    (`Phoenix.PubSub.PG2`) sends to the nodes it is connected to, so it reaches
    neighbours only. This adapter reaches every node of the overlay.

    Compiled only when `:phoenix_pubsub` is a dependency of your application
    (`{:phoenix_pubsub, "~> 2.1"}`).

    ## Configuration

        children = [
          {Cluster.Supervisor, [topologies, [name: MyApp.ClusterSupervisor]]},
          {Phoenix.PubSub, name: MyApp.PubSub, adapter: HyParView.PubSub, topology: :hp_example}
        ]

    Options, besides those `Phoenix.PubSub` itself takes:

      * `:topology` (required) - the libcluster topology whose HyParView server
        (`Cluster.Strategy.HyParView.server/1`) carries the traffic.
      * `:node_name` - the name `Phoenix.PubSub.node_name/1` reports and
        `Phoenix.PubSub.direct_broadcast/4` addresses (an atom or a binary;
        default `node()`). Must be unique in the cluster.
      * `:shared_name` - the name by which the nodes recognise this PubSub
        (an atom; default the PubSub's `:name`): a message reaches the PubSubs
        with the same shared name on the other nodes.
      * `:server_module` - the module whose `broadcast/2` and `subscribe/3` are
        called (default `HyParView`); for tests.

    Bad values raise `ArgumentError` naming the option.

    ## What is guaranteed

      * `Phoenix.PubSub.broadcast/3` and friends reach the subscribers of the
        topic on every node of the overlay, not just the neighbours: the adapter
        hands one binary to `HyParView.broadcast/2`, which delivers it to every
        other node; there the adapter delivers it locally with
        `Phoenix.PubSub.local_broadcast/4` semantics (what the PG2 adapter does
        on the receiving side). The origin node is excluded from the overlay
        broadcast, since `Phoenix.PubSub` has already dispatched locally.
      * Per-origin FIFO: messages broadcast on one node are delivered on every
        other node in the order that node's HyParView server accepted them
        (for one broadcasting process: the order it broadcast them in), as PG2
        gives over a full mesh. A gap Plumtree cannot fill in bounded time is
        skipped (see `HyParView.broadcast/2`).
      * Node failures: every message broadcast after the surviving nodes have
        detected a failure (`failure_timeout`) reaches every survivor. A
        message in flight when nodes die (broadcast before detection) still
        reaches every survivor that has a path to it through live nodes; a
        survivor whose every path ran through the dead nodes misses it,
        delivers the origin's later messages at most `gap_timeout` later, and
        reports the skipped gap (`[:hyparview, :broadcast, :gap_skipped]`).
        No message is ever delivered twice or out of its origin's order.
      * `Phoenix.PubSub.direct_broadcast/4` reaches exactly the named node,
        neighbour or not; naming the local node delivers locally through the
        adapter process, as PG2 does. The cost: there is no point-to-point
        path in the overlay API, so a direct broadcast is an overlay broadcast
        whose envelope names its target. Every node receives it and every node
        but the target drops it after decoding only a small header (topic,
        PubSub and target names); the message itself is decoded on the target
        only. Sending it over distribution to a neighbour instead would lose
        the FIFO order with the same origin's broadcasts.

    ## What is not

      * Only Phoenix.PubSub traffic through this adapter crosses the overlay.
        `:pg`, `:global`, `Phoenix.PubSub.PG2` and anything else that relies on
        Erlang distribution still see the neighbours only.
      * No delivery while the HyParView server is not running (it may start
        after the adapter or restart; the adapter finds it by polling with
        backoff and re-subscribes, monitoring it). A message broadcast while
        there is no server cannot reach any other node, so it is dropped and
        counted (`reason: :not_ready`), and the broadcast still returns `:ok`:
        local subscribers get it, as on an isolated node, and
        `Phoenix.PubSub.broadcast!/3` does not raise during a restart. Messages
        other nodes broadcast while this node has no server are not received.
        An `{:error, reason}` from `HyParView.broadcast/2` itself (for example a
        message over `max_broadcast_size`) is returned to the caller, and
        `Phoenix.PubSub` then skips local delivery, as with any adapter error.
      * Delivery on a node is done by one adapter process per PubSub, which
        decodes and dispatches every message in turn.

    ## Encoding and trust

    Messages are encoded with `:erlang.term_to_binary/1` in an envelope naming
    the PubSub, the topic, the dispatcher and, for a direct broadcast, the
    target node; the receiver decodes them with `:erlang.binary_to_term/2`.
    That is the trust level of Erlang distribution, which the overlay channel
    matches: it is authenticated by the same cookie-derived secret (see
    `SECURITY.md`), so only nodes that could connect over distribution anyway
    can send. Decoding is `:safe` all the same, so bytes from the network never
    create atoms: a message that names an atom the receiving node does not
    know (say a struct module only newer code has, during a rolling deploy) is
    dropped there. A payload that does not decode, or that names a dispatcher
    module that does not exist on the receiving node, is dropped and counted,
    and never crashes anything; so is a dispatcher that raises.

    ## Telemetry and counters

    When `:telemetry` is loaded, every dropped message emits
    `[:hyparview, :pubsub, :dropped]` with measurements `%{count: 1}` and
    metadata `%{pubsub: name, reason: reason}`, where `reason` is one of
    `:not_ready`, `:decode`, `:unknown_dispatcher` or `:dispatch_failed`.
    `stats/1` returns the counters.
    """

    @behaviour Phoenix.PubSub.Adapter
    use GenServer

    require Logger

    alias HyParView.PubSub.Envelope

    @counters [
      :sent,
      :delivered,
      :not_for_us,
      :not_ready,
      :decode,
      :unknown_dispatcher,
      :dispatch_failed
    ]
    @counter_index @counters |> Enum.with_index(1) |> Map.new()
    @drop_reasons [:not_ready, :decode, :unknown_dispatcher, :dispatch_failed]

    # Polling for a server that is not (yet) running: start fast, since the
    # strategy usually starts right next to us, then back off.
    @backoff_min 10
    @backoff_max 1_000

    # Dispatcher modules found missing, remembered so that a peer naming one
    # repeatedly costs a code path search only once; bounded.
    @missing_dispatchers_max 64

    @typedoc """
    Counters since the adapter first started on this node (they survive its
    restarts): `:sent` messages handed to `HyParView.broadcast/2`,
    `:delivered` messages delivered locally, `:not_for_us` envelopes for
    another node or another PubSub, and the drops by reason (see the
    moduledoc).
    """
    @type stats :: %{
            sent: non_neg_integer,
            delivered: non_neg_integer,
            not_for_us: non_neg_integer,
            not_ready: non_neg_integer,
            decode: non_neg_integer,
            unknown_dispatcher: non_neg_integer,
            dispatch_failed: non_neg_integer
          }

    ## Phoenix.PubSub.Adapter

    @impl Phoenix.PubSub.Adapter
    def child_spec(opts) do
      _ = config!(opts)
      adapter_name = Keyword.fetch!(opts, :adapter_name)
      %{id: adapter_name, start: {__MODULE__, :start_link, [opts]}, type: :worker}
    end

    @impl Phoenix.PubSub.Adapter
    def node_name(adapter_name), do: conf(adapter_name).node_name

    @impl Phoenix.PubSub.Adapter
    def broadcast(adapter_name, topic, message, dispatcher) do
      conf = conf(adapter_name)
      payload = Envelope.encode(conf.pubsub_key, nil, topic, dispatcher, message)
      send_payload(conf, payload)
    end

    @impl Phoenix.PubSub.Adapter
    def direct_broadcast(adapter_name, node_name, topic, message, dispatcher)
        when is_atom(node_name) or is_binary(node_name) do
      conf = conf(adapter_name)
      target = key(node_name)

      if target == conf.node_key do
        # The overlay never delivers a broadcast to its origin; PG2 sends to
        # its own worker, so do the same.
        GenServer.cast(adapter_name, {:forward_to_local, topic, message, dispatcher})
      else
        payload = Envelope.encode(conf.pubsub_key, target, topic, dispatcher, message)
        send_payload(conf, payload)
      end
    end

    ## Public

    @doc """
    The adapter's counters for the PubSub named `pubsub` (see `t:stats/0`).
    """
    @spec stats(Phoenix.PubSub.t()) :: stats
    def stats(pubsub) when is_atom(pubsub) do
      {:ok, {__MODULE__, adapter_name}} = Registry.meta(pubsub, :pubsub)
      counters = conf(adapter_name).counters
      Map.new(@counter_index, fn {name, i} -> {name, :counters.get(counters, i)} end)
    end

    @doc false
    def start_link(opts) do
      conf = config!(opts)
      GenServer.start_link(__MODULE__, conf, name: conf.adapter_name)
    end

    ## GenServer

    @impl GenServer
    def init(conf) do
      # Load :telemetry now (if present) so drop/2 can use the cheap check.
      _ = Code.ensure_loaded?(:telemetry)
      key = {__MODULE__, conf.adapter_name}

      counters =
        case :persistent_term.get(key, nil) do
          %{counters: counters} -> counters
          nil -> :counters.new(length(@counters), [:write_concurrency])
        end

      conf = Map.put(conf, :counters, counters)
      # Callers (broadcast/4 runs in the broadcasting process) read it from here.
      if :persistent_term.get(key, nil) != conf, do: :persistent_term.put(key, conf)

      state = %{
        conf: conf,
        server: nil,
        monitor: nil,
        backoff: @backoff_min,
        missing_dispatchers: MapSet.new()
      }

      {:ok, state, {:continue, :connect}}
    end

    @impl GenServer
    def handle_continue(:connect, state), do: {:noreply, connect(state)}

    @impl GenServer
    def handle_info(:connect, %{server: nil} = state), do: {:noreply, connect(state)}
    def handle_info(:connect, state), do: {:noreply, state}

    def handle_info({:DOWN, ref, :process, _pid, _reason}, %{monitor: ref} = state) do
      {:noreply, retry(%{state | server: nil, monitor: nil, backoff: @backoff_min})}
    end

    def handle_info({:hyparview, {:broadcast, _origin, payload}}, state) do
      {:noreply, receive_payload(payload, state)}
    end

    # Membership events, and anything else.
    def handle_info(_other, state), do: {:noreply, state}

    @impl GenServer
    def handle_cast({:forward_to_local, topic, message, dispatcher}, state) do
      {:noreply, deliver(topic, dispatcher, message, state)}
    end

    ## Sending

    defp send_payload(conf, payload) do
      case Cluster.Strategy.HyParView.server(conf.topology) do
        nil ->
          drop(conf, :not_ready)

        server ->
          try do
            conf.server_module.broadcast(server, payload)
          else
            :ok ->
              count(conf, :sent)
              :ok

            {:error, _reason} = error ->
              error
          catch
            # The server stopped between the lookup and the call.
            :exit, {reason, _} when reason in [:noproc, :normal, :shutdown] ->
              drop(conf, :not_ready)

            :exit, {{:shutdown, _}, _} ->
              drop(conf, :not_ready)

            :exit, {:timeout, _} ->
              {:error, :timeout}
          end
      end
    end

    ## Receiving

    defp connect(%{conf: conf} = state) do
      with server when is_pid(server) <- Cluster.Strategy.HyParView.server(conf.topology),
           ref = Process.monitor(server),
           :ok <- subscribe(conf, server, ref) do
        %{state | server: server, monitor: ref, backoff: @backoff_min}
      else
        _ -> retry(state)
      end
    end

    defp subscribe(conf, server, ref) do
      case conf.server_module.subscribe(server, self(), broadcasts: true) do
        :ok -> :ok
        other -> subscribe_failed(conf, ref, other)
      end
    catch
      :exit, reason -> subscribe_failed(conf, ref, {:exit, reason})
    end

    defp subscribe_failed(conf, ref, reason) do
      Process.demonitor(ref, [:flush])

      Logger.debug(
        "HyParView.PubSub #{inspect(conf.pubsub)}: subscribe failed: #{inspect(reason)}"
      )

      :error
    end

    defp retry(state) do
      Process.send_after(self(), :connect, state.backoff)
      %{state | backoff: min(state.backoff * 2, @backoff_max)}
    end

    defp receive_payload(payload, %{conf: conf} = state) do
      case Envelope.decode_header(payload) do
        {:ok, pubsub_key, target, topic, body} ->
          if pubsub_key == conf.pubsub_key and (target == nil or target == conf.node_key) do
            case Envelope.decode_body(body) do
              {:ok, dispatcher, message} -> deliver(topic, dispatcher, message, state)
              :error -> dropped(state, :decode)
            end
          else
            count(conf, :not_for_us)
            state
          end

        :error ->
          dropped(state, :decode)
      end
    end

    defp deliver(topic, dispatcher, message, %{conf: conf} = state) do
      case dispatcher_loaded(dispatcher, state) do
        {:ok, state} ->
          try do
            Phoenix.PubSub.local_broadcast(conf.pubsub, topic, message, dispatcher)
            count(conf, :delivered)
            state
          catch
            kind, reason ->
              Logger.error(
                "HyParView.PubSub #{inspect(conf.pubsub)}: dispatcher #{inspect(dispatcher)} " <>
                  "failed: " <> Exception.format_banner(kind, reason, __STACKTRACE__)
              )

              dropped(state, :dispatch_failed)
          end

        {:error, state} ->
          dropped(state, :unknown_dispatcher)
      end
    end

    # `function_exported?/3` is a cheap BIF for loaded modules; only a module
    # not loaded yet costs a code path search, once if it is missing.
    defp dispatcher_loaded(dispatcher, state) do
      cond do
        function_exported?(dispatcher, :dispatch, 3) ->
          {:ok, state}

        MapSet.member?(state.missing_dispatchers, dispatcher) ->
          {:error, state}

        Code.ensure_loaded?(dispatcher) and function_exported?(dispatcher, :dispatch, 3) ->
          {:ok, state}

        MapSet.size(state.missing_dispatchers) < @missing_dispatchers_max ->
          {:error,
           %{state | missing_dispatchers: MapSet.put(state.missing_dispatchers, dispatcher)}}

        true ->
          {:error, state}
      end
    end

    defp dropped(state, reason) do
      drop(state.conf, reason)
      state
    end

    defp drop(conf, reason) when reason in @drop_reasons do
      count(conf, reason)

      if function_exported?(:telemetry, :execute, 3) do
        apply(:telemetry, :execute, [
          [:hyparview, :pubsub, :dropped],
          %{count: 1},
          %{pubsub: conf.pubsub, reason: reason}
        ])
      end

      :ok
    end

    defp count(conf, name), do: :counters.add(conf.counters, Map.fetch!(@counter_index, name), 1)

    ## Configuration

    defp conf(adapter_name), do: :persistent_term.get({__MODULE__, adapter_name})

    defp key(name) when is_atom(name), do: Atom.to_string(name)
    defp key(name) when is_binary(name), do: name

    defp config!(opts) do
      unless Keyword.keyword?(opts) do
        raise ArgumentError, "HyParView.PubSub expects a keyword list, got: #{inspect(opts)}"
      end

      pubsub = fetch!(opts, :name, &is_atom/1, "an atom (the PubSub name)")
      adapter_name = fetch!(opts, :adapter_name, &is_atom/1, "an atom")

      topology =
        fetch!(opts, :topology, &(is_atom(&1) and &1 != nil), "a libcluster topology name")

      node_name =
        get!(
          opts,
          :node_name,
          node(),
          &((is_atom(&1) and &1 != nil) or (is_binary(&1) and &1 != "")),
          "an atom or a non-empty binary"
        )

      shared_name = get!(opts, :shared_name, pubsub, &(is_atom(&1) and &1 != nil), "an atom")

      server_module =
        get!(opts, :server_module, HyParView, &(is_atom(&1) and &1 != nil), "a module")

      %{
        pubsub: pubsub,
        pubsub_key: Atom.to_string(shared_name),
        adapter_name: adapter_name,
        topology: topology,
        node_name: node_name,
        node_key: key(node_name),
        server_module: server_module
      }
    end

    defp fetch!(opts, key, valid?, expected) do
      case Keyword.fetch(opts, key) do
        {:ok, value} ->
          check!(key, value, valid?, expected)

        :error ->
          raise ArgumentError,
                "HyParView.PubSub requires the #{inspect(key)} option " <>
                  "(e.g. {Phoenix.PubSub, name: MyApp.PubSub, adapter: HyParView.PubSub, " <>
                  "topology: :hp_example})"
      end
    end

    defp get!(opts, key, default, valid?, expected),
      do: check!(key, Keyword.get(opts, key, default), valid?, expected)

    defp check!(key, value, valid?, expected) do
      if valid?.(value) do
        value
      else
        raise ArgumentError,
              "invalid HyParView.PubSub option #{inspect(key)}: #{inspect(value)} " <>
                "(expected #{expected})"
      end
    end
  end
end
