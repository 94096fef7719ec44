defmodule HyParView do
  @moduledoc """
  HyParView membership (Leitão, Pereira, Rodrigues, DSN 2007): every node
  keeps a small *active view* of peers it holds open, heartbeated TCP links to
  and a larger *passive view* of backup candidates, refreshed by periodic
  Shuffles. Nodes join through contacts (JOIN / ForwardJoin random walks of
  length ARWL/PRWL) and repair their active view from the passive view
  (Neighbor requests) when a peer fails.

  The protocol and TCP transport run in Rust (a NIF); `HyParView.Server`
  owns the native state and forwards membership changes to subscribers as

      {:hyparview, {:peer_up, %HyParView.Peer{}}}
      {:hyparview, {:peer_down, %HyParView.Peer{}}}

  ## Example

      {:ok, a} = HyParView.start_link(peer: HyParView.Peer.new(:"a@127.0.0.1", {{127, 0, 0, 1}, 4500}), secret: "s3cret")
      {:ok, b} =
        HyParView.start_link(
          peer: HyParView.Peer.new(:"b@127.0.0.1", {{127, 0, 0, 1}, 4501}),
          contacts: [HyParView.Peer.new(:"a@127.0.0.1", {{127, 0, 0, 1}, 4500})],
          secret: "s3cret"
        )
      :ok = HyParView.subscribe(b, self(), replay: true)
      # receive {:hyparview, {:peer_up, %HyParView.Peer{id: :"a@127.0.0.1"}}}
  """

  alias HyParView.{Peer, Server}

  @type server :: GenServer.server()

  @typedoc """
  Why `broadcast/2` refused a payload: `:too_large` (over the
  `max_broadcast_size` config key), `:overloaded` (more than
  `broadcast_queue_bytes` of local broadcasts waiting for the native
  server), `:stopped`, or `:not_binary`.
  """
  @type broadcast_error :: :too_large | :overloaded | :stopped | :not_binary

  @doc """
  Starts a HyParView server linked to the caller.

  Options:

    * `:peer` (required) - the local `HyParView.Peer`; its address is the
      listen address (port 0 picks an ephemeral port).
    * `:contacts` - peers to JOIN through (default `[]`).
    * `:transport` - `HyParView.Transport.TCP` (the default and only value).
    * `:config` - keyword list (or `HyParView.Config`) for `HyParView.Config.new/1`.
    * `:name` - registers the server (any `GenServer` name).
    * `:secret` - pre-shared key of the Noise channel, 1..1024 bytes (default: derived from the
      Erlang cookie on a distributed node, else an insecure fixed default).
    * `:advertise_address` - IP tuple, or `{ip, port}`, that other peers dial;
      needed when listening on a wildcard address whose node name host part is
      neither an IP nor resolvable.
    * `:log_prefix` - string that starts every log line of this server,
      followed by the local id (default `"HyParView"`);
      `Cluster.Strategy.HyParView` passes `"[libcluster:<topology>]"`.

  Malformed options raise `ArgumentError` naming the option or config key.
  Runtime failures return `{:error, reason}` without an exit signal to the
  caller, e.g. `{:error, {:listen_failed, :eaddrinuse}}` or
  `{:error, {:no_advertise_address, message}}`.
  """
  @spec start_link(keyword) :: GenServer.on_start()
  defdelegate start_link(opts), to: Server

  @doc "Child specification for supervisors; see `start_link/1`."
  @spec child_spec(keyword) :: Supervisor.child_spec()
  defdelegate child_spec(opts), to: Server

  @doc """
  Subscribes `pid` (default: the caller) to membership events.

  With `replay: true` the current active view is first delivered as
  `{:hyparview, {:peer_up, peer}}` messages, atomically with respect to later
  events. With `broadcasts: true` the subscriber also receives every
  broadcast of the other nodes (see `broadcast/2`) as
  `{:hyparview, {:broadcast, origin_id, payload}}`, where `origin_id` is the
  origin's node name: an atom if that atom already exists, else a string
  (nothing from the network mints an atom). Subscribers without it get no
  broadcasts. Subscribing again has no further effect, except that it can
  add `broadcasts: true`. Dead subscribers are dropped automatically.
  `subscribe(server, replay: true)` is also accepted.
  """
  @spec subscribe(server, pid | keyword, keyword) :: :ok
  def subscribe(server, pid_or_opts \\ self(), opts \\ [])

  def subscribe(server, opts, []) when is_list(opts), do: subscribe(server, self(), opts)

  def subscribe(server, pid, opts) when is_pid(pid) and is_list(opts) do
    replay? = Keyword.get(opts, :replay, false) == true
    broadcasts? = Keyword.get(opts, :broadcasts, false) == true
    # Membership-only subscriptions keep the message servers have always
    # answered (test stand-ins implement it too).
    request =
      if broadcasts?, do: {:subscribe, pid, replay?, true}, else: {:subscribe, pid, replay?}

    GenServer.call(server, request)
  end

  @doc """
  Broadcasts `payload` to every node of the overlay: Plumtree (epidemic
  broadcast trees) over the active views' connections, never Erlang
  distribution. Every other node's subscribers with `broadcasts: true`
  receive `{:hyparview, {:broadcast, origin_id, payload}}`; the origin does
  not receive its own.

  Guarantees: per origin, deliveries are in the order the origin broadcast
  and each at most once. A broadcast reaches every node that stays
  connected to the overlay while it spreads (lost copies are recovered by
  GRAFT from a node that announced it). A node that cannot recover a
  missing broadcast within the `gap_timeout` config key (default 3 s)
  delivers the later ones and reports the gap
  (`[:hyparview, :broadcast, :gap_skipped]`); delivery never stalls longer.

  Returns `:ok` once the native server has queued the broadcast (also on a
  node with no peers: there is nobody to deliver to), or `{:error, reason}`
  (see `t:broadcast_error/0`). Never blocks on the network.
  """
  @spec broadcast(server, binary) :: :ok | {:error, broadcast_error}
  def broadcast(server, payload) when is_binary(payload) do
    GenServer.call(server, {:broadcast, payload})
  end

  @doc "Removes `pid` (default: the caller) from the subscribers."
  @spec unsubscribe(server, pid) :: :ok
  def unsubscribe(server, pid \\ self()) when is_pid(pid) do
    GenServer.call(server, {:unsubscribe, pid})
  end

  @doc "The active view, as announced to subscribers, sorted by id."
  @spec active_view(server) :: [Peer.t()]
  def active_view(server), do: GenServer.call(server, :active_view)

  @doc """
  The current passive view. Ids that are not already atoms are strings
  (see `HyParView.Peer`): reading the view never mints an atom.
  """
  @spec passive_view(server) :: [Peer.t()]
  def passive_view(server), do: GenServer.call(server, :passive_view)

  @doc "The local peer as advertised to others (with the actually bound port)."
  @spec local_peer(server) :: Peer.t()
  def local_peer(server), do: GenServer.call(server, :local_peer)

  @doc """
  The native snapshot: `:local` (`HyParView.Peer`), `:listen_port`,
  `:active_view` and `:passive_view` (lists of `HyParView.Peer`), `:counters`
  (message counts per kind in/out, connections, dials, failures detected,
  handshake rejections, handshakes the other side closed, pending handshakes
  evicted, ...) and `:subscribers` (count). As in
  `passive_view/1`, ids that are not already atoms are strings.
  """
  @spec info(server) :: map
  def info(server), do: GenServer.call(server, :info)

  @doc """
  Replaces the contacts the server rejoins and probes through, without a
  restart (what `HyParView.Discovery` calls with the contacts it found).
  An isolated server joins through them at once.

  Each contact is a `HyParView.Peer` with port 1..65535; its id is a node
  name atom or, for contacts learned from the network (DNS answers), a
  binary of the same form, so that no atom is minted for them. Self and
  duplicates are ignored; at most 1024 contacts are kept. Malformed
  contacts raise `ArgumentError` naming `contacts`.
  """
  @spec set_contacts(server, [Peer.t()]) :: :ok
  def set_contacts(server, contacts) when is_list(contacts) do
    Enum.each(contacts, fn contact ->
      unless HyParView.Discovery.Source.valid_peer?(contact) do
        raise ArgumentError,
              "invalid HyParView contacts: #{inspect(contact)} is not a %HyParView.Peer{} " <>
                "with a well-formed id and a port in 1..65535"
      end
    end)

    GenServer.call(server, {:set_contacts, contacts})
  end

  def set_contacts(_server, other) do
    raise ArgumentError, "invalid HyParView contacts: expected a list, got #{inspect(other)}"
  end

  @doc """
  Leaves the overlay gracefully (DISCONNECT to every active peer); the server
  keeps running with empty views until stopped.
  """
  @spec leave(server) :: :ok
  def leave(server), do: GenServer.call(server, :leave)

  @doc """
  Stops the server. When this returns, the listener and all connections are
  closed and the port can be reused.
  """
  @spec stop(server) :: :ok
  def stop(server), do: GenServer.stop(server, :normal, 15_000)
end
