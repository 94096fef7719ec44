# Past ~600 lines because the start options are validated here, next to the
# GenServer that uses them (each bad key raises an ArgumentError naming it).
defmodule HyParView.Server do
  @moduledoc """
  A HyParView node: a GenServer that owns the NIF resource (listener, TCP
  connections and protocol state machine running on a Rust runtime) and turns
  its membership reports into messages for subscribers:

      {:hyparview, {:peer_up, %HyParView.Peer{}}}
      {:hyparview, {:peer_down, %HyParView.Peer{}}}

  A peer is announced (`peer_up`) once both ends of the overlay link hold
  it: the end that accepts a JOIN or NEIGHBOR takes the link a round trip
  before the end that asked, which may still refuse it, so the accepting
  end waits for the asking end's confirmation (its acceptance, or a
  keepalive). A peer that leaves the active view before that is never
  announced, and no `peer_down` follows for it. `HyParView.info/1` shows
  the overlay's active view as it is, confirmed or not. Of the two ends,
  the one that announces the peer last knows that both hold the link:
  `connects?/2` says whether that is this end (the libcluster strategy
  connects Erlang distribution from there).

  Use it through `HyParView`; see `HyParView.start_link/1` for the options.

  ## Startup failures

  `start_link/1` raises `ArgumentError` (in the caller) for malformed options.
  Runtime failures such as `{:listen_failed, :eaddrinuse}` are returned as
  `{:error, reason}`; the server is only linked to the caller once the NIF is
  running, so a failed start never sends an exit signal to the caller, which
  therefore does not need to trap exits.

  ## Advertised address

  Other peers dial the advertised address. It is the listen IP unless that
  is a wildcard (`{0, 0, 0, 0}` or `{0, 0, 0, 0, 0, 0, 0, 0}`), in which case
  it is the `advertise_address:` option if given, else the host part of the
  peer id when it is an IP literal or resolves with `:inet.getaddr/2`.

  ## Secret

  Every overlay connection is a Noise channel (`NNpsk0`: an X25519 handshake
  keyed by `secret:`, then ChaCha20-Poly1305 on every frame; see `SECURITY.md`
  for the threat model). Without `secret:`, a distributed node derives the key
  from its Erlang cookie (so nodes
  that may connect via distribution may also join the overlay); a
  non-distributed node falls back to a fixed, public default and logs a
  warning.

  ## Telemetry

  When `:telemetry` is available: `[:hyparview, :peer, :added]`,
  `[:hyparview, :peer, :removed]` (metadata `%{peer: peer, local: id}`) and
  `[:hyparview, :handshake, :rejected]` (metadata `%{address: {ip, port},
  reason: atom, local: id}`), each with measurement `%{count: 1}`.

  Broadcasts (see `HyParView.broadcast/2`): `[:hyparview, :broadcast, :sent]`
  (measurements `%{count: 1, size: bytes}`, metadata `%{local: id}`),
  `[:hyparview, :broadcast, :delivered]` (`%{count: 1, size: bytes}`,
  `%{origin: id, local: id}`), `[:hyparview, :broadcast, :gap_skipped]`
  (`%{count: n}`: broadcasts of `origin` that will never be delivered here,
  `%{origin: id, local: id}`) and `[:hyparview, :broadcast, :dropped]`
  (`%{count: n}`, `%{reason: atom, local: id}`; `:queue_full` is a
  broadcast frame not queued to a slow peer, which the receiver repairs by
  grafting; the others are Plumtree refusals of a peer's message).
  """
  use GenServer
  require Logger

  alias HyParView.{Config, Native, Peer}

  @stop_timeout 5_000
  @default_secret "libcluster_hyparview insecure default secret"
  @option_keys [
    :peer,
    :contacts,
    :transport,
    :config,
    :name,
    :secret,
    :advertise_address,
    :log_prefix
  ]

  defstruct [
    :resource,
    :parent,
    :peer,
    :advertise_ip,
    :advertise_port,
    log_prefix: "HyParView",
    subscribers: %{},
    active: %{},
    # Active peers announced last by this end (see connects?/2), and the
    # one the next peer_up is for.
    connects: MapSet.new(),
    connect_next: nil
  ]

  @doc """
  Starts a server; see `HyParView.start_link/1`.
  """
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts) do
    {gen_opts, nif_opts, state} = prepare!(opts)

    case Native.loaded() do
      :ok -> :ok
      {:error, message} -> raise RuntimeError, message
    end

    case GenServer.start(__MODULE__, {self(), nif_opts, state}, gen_opts) do
      {:ok, pid} ->
        {:ok, pid}

      # The NIF re-validates; a key Elixir let through is still a bad argument.
      {:error, {:shutdown, {:invalid_config, key, message}}} ->
        raise ArgumentError, "invalid HyParView config #{key}: #{message}"

      {:error, {:shutdown, reason}} ->
        {:error, reason}

      other ->
        other
    end
  catch
    # Address resolution failures are runtime conditions, not bad arguments.
    :throw, {:start_error, reason} -> {:error, reason}
  end

  # The client API is also reachable here (as in the `hyparview` package,
  # where code calls `HyParView.Server.subscribe/3` and friends).

  @doc "See `HyParView.subscribe/3`."
  @spec subscribe(GenServer.server(), pid | keyword, keyword) :: :ok
  defdelegate subscribe(server, pid_or_opts \\ self(), opts \\ []), to: HyParView

  @doc "See `HyParView.unsubscribe/2`."
  @spec unsubscribe(GenServer.server(), pid) :: :ok
  defdelegate unsubscribe(server, pid \\ self()), to: HyParView

  @doc "See `HyParView.active_view/1`."
  @spec active_view(GenServer.server()) :: [Peer.t()]
  defdelegate active_view(server), to: HyParView

  @doc "See `HyParView.passive_view/1`."
  @spec passive_view(GenServer.server()) :: [Peer.t()]
  defdelegate passive_view(server), to: HyParView

  @doc "See `HyParView.local_peer/1`."
  @spec local_peer(GenServer.server()) :: Peer.t()
  defdelegate local_peer(server), to: HyParView

  @doc """
  Whether the overlay holds `id` in its active view now, announced or not
  (a peer is announced with `peer_up` once both ends hold the link).
  """
  @spec holds?(GenServer.server(), node) :: boolean
  def holds?(server, id) when is_atom(id), do: GenServer.call(server, {:holds?, id})

  @doc """
  Whether this end announced the active peer `id` last (the other end had
  announced this node before): the end to open a per-link connection from.
  `false` for a peer not announced.
  """
  @spec connects?(GenServer.server(), node) :: boolean
  def connects?(server, id) when is_atom(id), do: GenServer.call(server, {:connects?, id})

  @doc "See `HyParView.info/1`."
  @spec info(GenServer.server()) :: map
  defdelegate info(server), to: HyParView

  @doc "See `HyParView.broadcast/2`."
  @spec broadcast(GenServer.server(), binary) :: :ok | {:error, HyParView.broadcast_error()}
  defdelegate broadcast(server, payload), to: HyParView

  @doc "See `HyParView.leave/1`."
  @spec leave(GenServer.server()) :: :ok
  defdelegate leave(server), to: HyParView

  @doc "See `HyParView.stop/1`."
  @spec stop(GenServer.server()) :: :ok
  defdelegate stop(server), to: HyParView

  @doc """
  Child specification; the id is the `:name` option when given.
  """
  @spec child_spec(keyword) :: Supervisor.child_spec()
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      type: :worker,
      shutdown: @stop_timeout + 1_000
    }
  end

  ## Option handling (runs in the caller, so errors raise there)

  defp prepare!(opts) do
    unless Keyword.keyword?(opts) do
      raise ArgumentError, "HyParView options must be a keyword list, got: #{inspect(opts)}"
    end

    Enum.each(opts, fn {key, _} ->
      unless key in @option_keys do
        raise ArgumentError,
              "unknown HyParView option #{inspect(key)} (known: #{inspect(@option_keys)})"
      end
    end)

    peer = validate_peer!(Keyword.get(opts, :peer), "peer")
    contacts = validate_contacts!(Keyword.get(opts, :contacts, []))

    transport = Keyword.get(opts, :transport, HyParView.Transport.TCP)

    unless transport == HyParView.Transport.TCP do
      raise ArgumentError,
            "invalid HyParView option transport: #{inspect(transport)} " <>
              "(the only transport is HyParView.Transport.TCP)"
    end

    config = Config.new(Keyword.get(opts, :config, []))
    prefix = log_prefix!(Keyword.get(opts, :log_prefix, "HyParView"))
    secret = secret!(Keyword.get(opts, :secret), prefix)
    {advertise_ip, advertise_port} = advertise!(peer, Keyword.get(opts, :advertise_address))
    threads = runtime_threads!()

    {listen_ip, listen_port} = peer.address

    nif_opts = %{
      id: Atom.to_string(peer.id),
      listen_ip: listen_ip,
      listen_port: listen_port,
      advertise_ip: advertise_ip,
      advertise_port: advertise_port,
      incarnation: System.os_time(:microsecond),
      seed: :rand.uniform(Bitwise.bsl(1, 62)),
      secret: secret,
      contacts:
        Enum.map(contacts, fn %Peer{id: id, address: {ip, port}} ->
          {Atom.to_string(id), ip, port}
        end),
      runtime_threads: threads,
      config: Config.to_map(config)
    }

    gen_opts = Keyword.take(opts, [:name])

    state = %__MODULE__{
      peer: peer,
      advertise_ip: advertise_ip,
      advertise_port: advertise_port,
      log_prefix: "#{prefix} #{peer.id}:"
    }

    {gen_opts, nif_opts, state}
  end

  defp validate_peer!(%Peer{id: id, address: address}, _what), do: Peer.new(id, address)

  defp validate_peer!(nil, "peer"),
    do: raise(ArgumentError, "missing required HyParView option peer (a %HyParView.Peer{})")

  defp validate_peer!(other, what) do
    raise ArgumentError,
          "invalid HyParView option #{what}: expected a %HyParView.Peer{}, got: #{inspect(other)}"
  end

  defp validate_contacts!(contacts) when is_list(contacts) do
    Enum.map(contacts, fn contact ->
      %Peer{address: {_ip, port}} = peer = validate_peer!(contact, "contacts")

      if port == 0 do
        raise ArgumentError,
              "invalid HyParView option contacts: #{inspect(contact)} has port 0"
      end

      peer
    end)
  end

  defp validate_contacts!(other) do
    raise ArgumentError,
          "invalid HyParView option contacts: expected a list of %HyParView.Peer{}, " <>
            "got: #{inspect(other)}"
  end

  defp log_prefix!(prefix) when is_binary(prefix) and byte_size(prefix) <= 256, do: prefix

  defp log_prefix!(other) do
    raise ArgumentError,
          "invalid HyParView option log_prefix: expected a string, got: #{inspect(other)}"
  end

  defp secret!(secret, _prefix) when is_binary(secret) and byte_size(secret) in 1..1024,
    do: secret

  defp secret!(nil, prefix) do
    if Node.alive?() do
      {:ok, secret} = Native.cookie_secret(Atom.to_string(Node.get_cookie()))
      secret
    else
      unless :persistent_term.get({__MODULE__, :default_secret_warned}, false) do
        :persistent_term.put({__MODULE__, :default_secret_warned}, true)

        Logger.warning(
          "#{prefix} no secret: option and the node is not distributed (no cookie); " <>
            "using the built-in default secret, which authenticates nothing"
        )
      end

      @default_secret
    end
  end

  defp secret!(other, _prefix) do
    raise ArgumentError,
          "invalid HyParView option secret: expected a binary of 1..1024 bytes, got: " <>
            inspect(other, limit: 5)
  end

  defp advertise!(%Peer{id: id, address: {listen_ip, _}}, advertise) do
    case advertise do
      nil ->
        if wildcard?(listen_ip), do: {host_ip!(id, listen_ip), nil}, else: {listen_ip, nil}

      {ip, port} when is_integer(port) and port in 1..65_535 ->
        {advertise_ip!(ip), port}

      ip ->
        {advertise_ip!(ip), nil}
    end
  end

  defp advertise_ip!(ip) do
    unless Peer.valid_ip?(ip) and not wildcard?(ip) do
      raise ArgumentError,
            "invalid HyParView option advertise_address: #{inspect(ip)} (expected a " <>
              "non-wildcard IP tuple or {ip_tuple, port})"
    end

    ip
  end

  defp host_ip!(id, listen_ip) do
    [_name, host] = id |> Atom.to_string() |> String.split("@", parts: 2)
    host = host |> String.trim_leading("[") |> String.trim_trailing("]")
    family = if tuple_size(listen_ip) == 4, do: :inet, else: :inet6

    with {:error, _} <- :inet.parse_strict_address(String.to_charlist(host)),
         {:error, _} <- :inet.getaddr(String.to_charlist(host), family) do
      throw(
        {:start_error,
         {:no_advertise_address,
          "listening on the wildcard address #{:inet.ntoa(listen_ip)}, so peers need " <>
            "an address to dial: pass advertise_address: ip, or use a node name whose host " <>
            "part (#{inspect(host)}) is an IP or resolves via :inet.getaddr/2"}}
      )
    else
      {:ok, ip} -> ip
    end
  end

  defp wildcard?({0, 0, 0, 0}), do: true
  defp wildcard?({0, 0, 0, 0, 0, 0, 0, 0}), do: true
  defp wildcard?(_), do: false

  defp runtime_threads! do
    case Application.get_env(:libcluster_hyparview, :runtime_threads, 1) do
      n when is_integer(n) and n in 1..64 ->
        n

      other ->
        raise ArgumentError,
              "invalid :libcluster_hyparview, :runtime_threads: #{inspect(other)} " <>
                "(expected an integer in 1..64)"
    end
  end

  ## GenServer

  @impl true
  def init({caller, nif_opts, state}) do
    # Trap exits so a supervisor's shutdown runs terminate/2 (which frees the port).
    Process.flag(:trap_exit, true)
    # Load :telemetry now (if present) so telemetry/2 can use the cheap check.
    _ = Code.ensure_loaded?(:telemetry)

    case Native.start(self(), nif_opts) do
      {:ok, resource} ->
        # Linked only now: a failed start must not send an exit signal to the caller.
        Process.link(caller)
        {:ok, %{state | resource: resource, parent: caller}}

      {:error, reason} ->
        # {:shutdown, _} avoids a crash report; start_link/1 unwraps it.
        {:stop, {:shutdown, reason}}
    end
  end

  @impl true
  def handle_call({:subscribe, pid, replay?}, from, state),
    do: handle_call({:subscribe, pid, replay?, false}, from, state)

  def handle_call({:subscribe, pid, replay?, broadcasts?}, _from, state) do
    subscribers =
      case Map.fetch(state.subscribers, pid) do
        # Subscribing again can only add broadcasts.
        {:ok, {ref, had?}} -> Map.put(state.subscribers, pid, {ref, had? or broadcasts?})
        :error -> Map.put(state.subscribers, pid, {Process.monitor(pid), broadcasts?})
      end

    state = %{state | subscribers: subscribers}

    # Sent from this process before any later event, so the replay is atomic
    # with respect to subsequent peer_up/peer_down messages.
    if replay? do
      Enum.each(sorted_active(state), &send(pid, {:hyparview, {:peer_up, &1}}))
    end

    {:reply, :ok, state}
  end

  def handle_call({:unsubscribe, pid}, _from, state) do
    {entry, subscribers} = Map.pop(state.subscribers, pid)
    with {ref, _} <- entry, do: Process.demonitor(ref, [:flush])
    {:reply, :ok, %{state | subscribers: subscribers}}
  end

  def handle_call(:active_view, _from, state), do: {:reply, sorted_active(state), state}

  def handle_call(:passive_view, _from, state) do
    snapshot = Native.snapshot(state.resource)
    {:reply, to_known_peers(Map.get(snapshot, :passive_view, [])), state}
  end

  def handle_call({:holds?, id}, _from, state) do
    id = Atom.to_string(id)
    active = Map.get(Native.snapshot(state.resource), :active_view, [])
    {:reply, Enum.any?(active, &match?({^id, _, _}, &1)), state}
  end

  def handle_call({:connects?, id}, _from, state) do
    {:reply, MapSet.member?(state.connects, Atom.to_string(id)), state}
  end

  def handle_call(:local_peer, _from, state) do
    {:reply, local_peer(state, Native.snapshot(state.resource)), state}
  end

  def handle_call(:info, _from, state) do
    snapshot = Native.snapshot(state.resource)

    info =
      snapshot
      |> Map.put(:local, local_peer(state, snapshot))
      |> Map.put(:active_view, to_known_peers(Map.get(snapshot, :active_view, [])))
      |> Map.put(:passive_view, to_known_peers(Map.get(snapshot, :passive_view, [])))
      |> Map.put(:subscribers, map_size(state.subscribers))

    {:reply, info, state}
  end

  def handle_call({:set_contacts, contacts}, _from, state) do
    native =
      Enum.map(contacts, fn %Peer{id: id, address: {ip, port}} -> {to_string(id), ip, port} end)

    {:reply, Native.set_contacts(state.resource, native), state}
  end

  def handle_call({:broadcast, payload}, _from, state) do
    case Native.broadcast(state.resource, payload) do
      :ok ->
        telemetry([:hyparview, :broadcast, :sent], %{count: 1, size: byte_size(payload)}, %{
          local: state.peer.id
        })

        {:reply, :ok, state}

      {:error, _} = error ->
        {:reply, error, state}
    end
  end

  def handle_call(:leave, _from, state) do
    {:reply, Native.leave(state.resource), state}
  end

  @impl true
  # Comes right before the peer_up it is about.
  def handle_info({:hyparview_nif, :connect, id}, state) when is_binary(id) do
    {:noreply, %{state | connect_next: id}}
  end

  def handle_info({:hyparview_nif, :peer_up, remote}, state) do
    state = note_connect(state, remote)

    case to_active_peer(remote) do
      {:ok, peer} ->
        if Map.get(state.active, peer.id) == peer do
          {:noreply, state}
        else
          notify(state, {:peer_up, peer})
          telemetry([:hyparview, :peer, :added], %{peer: peer, local: state.peer.id})
          {:noreply, %{state | active: Map.put(state.active, peer.id, peer)}}
        end

      :error ->
        Logger.warning(
          "#{state.log_prefix} ignoring peer_up with a malformed peer: #{inspect(remote)}"
        )

        {:noreply, state}
    end
  end

  def handle_info({:hyparview_nif, :peer_down, {id, _ip, _port}}, state) do
    # Only ids we announced as up can go down; never mint an atom here.
    active = state.active

    case existing_atom(id) do
      {:ok, atom} when is_map_key(active, atom) ->
        {peer, active} = Map.pop(state.active, atom)
        state = %{state | connects: MapSet.delete(state.connects, id)}
        notify(state, {:peer_down, peer})
        telemetry([:hyparview, :peer, :removed], %{peer: peer, local: state.peer.id})
        {:noreply, %{state | active: active}}

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:hyparview_nif, :handshake_rejected, address, reason}, state) do
    Logger.warning(
      "#{state.log_prefix} rejected handshake from #{format_address(address)}: " <>
        inspect(reason)
    )

    telemetry([:hyparview, :handshake, :rejected], %{
      address: address,
      reason: reason,
      local: state.peer.id
    })

    {:noreply, state}
  end

  def handle_info({:hyparview_nif, :log, level, message}, state) do
    level = if level in [:debug, :info, :warning, :error], do: level, else: :info
    Logger.log(level, fn -> "#{state.log_prefix} #{message}" end)
    {:noreply, state}
  end

  def handle_info({:hyparview_nif, :broadcast, origin, payload}, state)
      when is_binary(origin) and is_binary(payload) do
    # The origin stays a string unless its atom already exists (no atoms
    # from the network); the transport never delivers our own broadcasts.
    origin = known_id(origin)
    message = {:hyparview, {:broadcast, origin, payload}}

    Enum.each(state.subscribers, fn
      {pid, {_ref, true}} -> send(pid, message)
      _ -> :ok
    end)

    telemetry([:hyparview, :broadcast, :delivered], %{count: 1, size: byte_size(payload)}, %{
      origin: origin,
      local: state.peer.id
    })

    {:noreply, state}
  end

  def handle_info({:hyparview_nif, :gap_skipped, origin, count}, state)
      when is_binary(origin) and is_integer(count) do
    telemetry([:hyparview, :broadcast, :gap_skipped], %{count: count}, %{
      origin: known_id(origin),
      local: state.peer.id
    })

    {:noreply, state}
  end

  def handle_info({:hyparview_nif, :dropped, reason, count}, state)
      when is_atom(reason) and is_integer(count) do
    telemetry([:hyparview, :broadcast, :dropped], %{count: count}, %{
      reason: reason,
      local: state.peer.id
    })

    {:noreply, state}
  end

  def handle_info({:hyparview_nif, :stopped}, state), do: {:noreply, state}

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case Map.get(state.subscribers, pid) do
      {^ref, _} -> {:noreply, %{state | subscribers: Map.delete(state.subscribers, pid)}}
      _ -> {:noreply, state}
    end
  end

  # The starter (parent or supervisor) exiting stops us, whatever the reason;
  # other linked processes only when they fail (as without trap_exit).
  def handle_info({:EXIT, pid, reason}, %{parent: pid} = state), do: {:stop, reason, state}
  def handle_info({:EXIT, _pid, :normal}, state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}

  def handle_info(msg, state) do
    Logger.debug("#{state.log_prefix} unexpected message #{inspect(msg, limit: 10)}")
    {:noreply, state}
  end

  @impl true
  def terminate(_reason, %{resource: resource} = state) when resource != nil do
    # Wait for the actor to close its listener so the port is free on return.
    :ok = Native.stop(resource)

    receive do
      {:hyparview_nif, :stopped} -> :ok
    after
      @stop_timeout ->
        Logger.warning(
          "#{state.log_prefix} NIF did not confirm shutdown within #{@stop_timeout} ms"
        )
    end
  end

  def terminate(_reason, _state), do: :ok

  ## Helpers

  defp notify(state, event) do
    Enum.each(state.subscribers, fn {pid, _ref} -> send(pid, {:hyparview, event}) end)
  end

  defp note_connect(state, {id, _ip, _port}) when is_binary(id) do
    connects =
      if state.connect_next == id,
        do: MapSet.put(state.connects, id),
        else: MapSet.delete(state.connects, id)

    %{state | connects: connects, connect_next: nil}
  end

  defp note_connect(state, _remote), do: %{state | connect_next: nil}

  defp sorted_active(state), do: state.active |> Map.values() |> Enum.sort_by(& &1.id)

  defp local_peer(state, snapshot) do
    port =
      state.advertise_port || Map.get(snapshot, :listen_port) ||
        elem(state.peer.address, 1)

    %Peer{id: state.peer.id, address: {state.advertise_ip, port}}
  end

  # Peers that are not (yet) distribution links: an id that is not an
  # existing atom stays a string, so reading a view never mints an atom.
  defp to_known_peers(list) do
    for {id, ip, port} <- list,
        is_binary(id) and is_integer(port) and port in 1..65_535,
        Peer.valid_id?(id) and Peer.valid_ip?(ip) do
      %Peer{id: known_id(id), address: {ip, port}}
    end
  end

  # The only place a remote id becomes an atom: a peer entering the active
  # view (it becomes a distribution link, whose node name is an atom anyway),
  # after the same well-formedness check as HyParView.Peer.new/2.
  defp to_active_peer({id, ip, port})
       when is_binary(id) and is_integer(port) and port in 1..65_535 do
    if Peer.valid_id?(id) and Peer.valid_ip?(ip) do
      {:ok, %Peer{id: String.to_atom(id), address: {ip, port}}}
    else
      :error
    end
  end

  defp to_active_peer(_), do: :error

  defp known_id(id) do
    case existing_atom(id) do
      {:ok, atom} -> atom
      :error -> id
    end
  end

  defp existing_atom(id) when is_binary(id) and byte_size(id) <= 255 do
    {:ok, String.to_existing_atom(id)}
  rescue
    ArgumentError -> :error
  end

  defp existing_atom(_), do: :error

  defp format_address({ip, port}) when is_tuple(ip), do: "#{:inet.ntoa(ip)}:#{port}"
  defp format_address(other), do: inspect(other)

  # `function_exported?/3` is a cheap BIF; `Code.ensure_loaded?/1` goes through
  # the code server, which searches the whole code path when :telemetry is
  # absent and stalled this process for seconds on a busy VM. init/1 loads
  # :telemetry once if it is there.
  defp telemetry(event, measurements \\ %{count: 1}, metadata) do
    if function_exported?(:telemetry, :execute, 3) do
      apply(:telemetry, :execute, [event, measurements, metadata])
    end

    :ok
  end
end
