defmodule FakeHyParView do
  @moduledoc false
  # A HyParView server stand-in for single-VM tests of code built on the
  # broadcast API: `broadcast/2` and `subscribe/3` with the shapes of
  # `HyParView.broadcast/2` and `HyParView.subscribe/3`. Several fake servers
  # (fake "nodes", each with its own id) join one `FakeHyParView.Network`,
  # which relays every broadcast to every server but its origin. All relaying
  # goes through the network process and then each server process, so each
  # origin's broadcasts arrive everywhere in the order they were accepted
  # (per-origin FIFO, as the real server promises).
  #
  # A subscriber with `broadcasts: true` receives
  # `{:hyparview, {:broadcast, origin_id, payload}}`; every subscriber first
  # receives a `:peer_up` membership event, as real subscribers may.

  use GenServer

  alias HyParView.Peer

  defmodule Network do
    @moduledoc false
    use GenServer

    def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, :ok, opts)

    @doc "Adds `server` (a fake server pid) to the network."
    def join(network, server), do: GenServer.call(network, {:join, server})

    @impl true
    def init(:ok), do: {:ok, %{}}

    @impl true
    def handle_call({:join, server}, _from, servers) do
      ref = Process.monitor(server)
      {:reply, :ok, Map.put(servers, server, ref)}
    end

    @impl true
    def handle_cast({:relay, from, origin, payload}, servers) do
      for {server, _ref} <- servers, server != from, do: send(server, {:deliver, origin, payload})
      {:noreply, servers}
    end

    @impl true
    def handle_info({:DOWN, _ref, :process, server, _}, servers) do
      {:noreply, Map.delete(servers, server)}
    end
  end

  @doc """
  Starts a fake server (not linked). Options: `:id` (the node id it reports as
  broadcast origin), `:network`, `:name` (registered name, e.g.
  `Cluster.Strategy.HyParView.server_name(topology)`), `:max_broadcast_size`
  (bytes, default 1 MiB; larger payloads get `{:error, :too_large}`).
  """
  def start(opts) do
    {name, opts} = Keyword.pop(opts, :name)
    GenServer.start(__MODULE__, opts, if(name, do: [name: name], else: []))
  end

  @doc "As `HyParView.broadcast/2`."
  def broadcast(server, payload) when is_binary(payload) do
    GenServer.call(server, {:broadcast, payload})
  end

  @doc "As `HyParView.subscribe/3`."
  def subscribe(server, pid, opts) when is_pid(pid) and is_list(opts) do
    GenServer.call(server, {:subscribe, pid, Keyword.get(opts, :broadcasts, false) == true})
  end

  @doc "How many `subscribe/3` calls this server has answered."
  def subscribe_count(server), do: GenServer.call(server, :subscribe_count)

  @doc "Delivers raw `payload` to this server's subscribers as if `origin` broadcast it."
  def inject(server, origin, payload), do: send(server, {:deliver, origin, payload})

  @impl true
  def init(opts) do
    network = Keyword.fetch!(opts, :network)
    :ok = Network.join(network, self())

    {:ok,
     %{
       id: Keyword.fetch!(opts, :id),
       network: network,
       max: Keyword.get(opts, :max_broadcast_size, 1_048_576),
       subscribers: %{},
       subscribe_count: 0
     }}
  end

  @impl true
  def handle_call({:broadcast, payload}, _from, state) when byte_size(payload) > state.max do
    {:reply, {:error, :too_large}, state}
  end

  def handle_call({:broadcast, payload}, _from, state) do
    GenServer.cast(state.network, {:relay, self(), state.id, payload})
    {:reply, :ok, state}
  end

  def handle_call({:subscribe, pid, broadcasts?}, _from, state) do
    unless Map.has_key?(state.subscribers, pid), do: Process.monitor(pid)
    send(pid, {:hyparview, {:peer_up, Peer.new(:neighbour@fake, {{127, 0, 0, 1}, 1})}})
    subscribers = Map.put(state.subscribers, pid, broadcasts?)
    {:reply, :ok, %{state | subscribers: subscribers, subscribe_count: state.subscribe_count + 1}}
  end

  def handle_call(:subscribe_count, _from, state), do: {:reply, state.subscribe_count, state}

  @impl true
  def handle_info({:deliver, origin, payload}, state) do
    for {pid, true} <- state.subscribers do
      send(pid, {:hyparview, {:broadcast, origin, payload}})
    end

    {:noreply, state}
  end

  def handle_info({:DOWN, _ref, :process, pid, _}, state) do
    {:noreply, %{state | subscribers: Map.delete(state.subscribers, pid)}}
  end
end
