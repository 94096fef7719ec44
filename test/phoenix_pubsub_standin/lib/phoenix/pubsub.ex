defmodule Phoenix.PubSub do
  @moduledoc """
  Publish/subscribe on topics, within a node and across a cluster
  (stand-in for phoenix_pubsub 2.1's public API).

  Start one in a supervision tree with `{Phoenix.PubSub, name: MyApp.PubSub}`
  (options: `:name` (required), `:adapter` (default `Phoenix.PubSub.PG2`),
  `:pool_size` (Registry partitions, default one per four schedulers); every
  option is handed to the adapter along with `:adapter_name`).

  Subscriptions live in a `Registry` of duplicate keys named after the PubSub:
  a process may subscribe to a topic more than once and then receives each
  message once per subscription; `unsubscribe/2` drops all of them.

  The broadcast functions deliver to local subscribers themselves and ask the
  adapter to carry the message to the other nodes. Local delivery goes through
  a dispatcher, a module with `dispatch(entries, from, message)` where
  `entries` are `{pid, metadata}` pairs (metadata from `subscribe/3`) and
  `from` is a pid or `:none`. The default dispatcher is this module: it sends
  `message` to every entry's pid except `from`.
  """

  @type node_name :: atom | binary
  @type t :: atom
  @type topic :: binary
  @type message :: term
  @type dispatcher :: module

  defmodule BroadcastError do
    @moduledoc "Raised by the bang variants when the adapter returns an error."
    defexception [:message]

    @impl true
    def exception(msg), do: %__MODULE__{message: "broadcast failed with #{inspect(msg)}"}
  end

  @doc "Child spec of a PubSub system; `:name` is required (see the moduledoc)."
  @spec child_spec(keyword) :: Supervisor.child_spec()
  defdelegate child_spec(opts), to: Phoenix.PubSub.Supervisor

  @doc """
  Subscribes the caller to `topic`. `opts[:metadata]` is attached to the
  subscription and handed to dispatchers.
  """
  @spec subscribe(t, topic, keyword) :: :ok | {:error, term}
  def subscribe(pubsub, topic, opts \\ [])
      when is_atom(pubsub) and is_binary(topic) and is_list(opts) do
    case Registry.register(pubsub, topic, Keyword.get(opts, :metadata)) do
      {:ok, _owner} -> :ok
      {:error, _} = error -> error
    end
  end

  @doc "Removes every subscription of the caller to `topic`."
  @spec unsubscribe(t, topic) :: :ok
  def unsubscribe(pubsub, topic) when is_atom(pubsub) and is_binary(topic) do
    Registry.unregister(pubsub, topic)
  end

  @doc """
  Delivers `message` to the subscribers of `topic` on every node. When the
  adapter fails, its error is returned and nothing is delivered locally.
  """
  @spec broadcast(t, topic, message, dispatcher) :: :ok | {:error, term}
  def broadcast(pubsub, topic, message, dispatcher \\ __MODULE__)
      when is_atom(pubsub) and is_binary(topic) and is_atom(dispatcher) do
    {adapter, adapter_name} = adapter!(pubsub)

    case adapter.broadcast(adapter_name, topic, message, dispatcher) do
      :ok -> dispatch(pubsub, :none, topic, message, dispatcher)
      {:error, _} = error -> error
    end
  end

  @doc """
  Like `broadcast/4`, but the default dispatcher skips `from` on this node.
  """
  @spec broadcast_from(t, pid, topic, message, dispatcher) :: :ok | {:error, term}
  def broadcast_from(pubsub, from, topic, message, dispatcher \\ __MODULE__)
      when is_atom(pubsub) and is_pid(from) and is_binary(topic) and is_atom(dispatcher) do
    {adapter, adapter_name} = adapter!(pubsub)

    case adapter.broadcast(adapter_name, topic, message, dispatcher) do
      :ok -> dispatch(pubsub, from, topic, message, dispatcher)
      {:error, _} = error -> error
    end
  end

  @doc "Delivers `message` to the subscribers of `topic` on this node only."
  @spec local_broadcast(t, topic, message, dispatcher) :: :ok
  def local_broadcast(pubsub, topic, message, dispatcher \\ __MODULE__)
      when is_atom(pubsub) and is_binary(topic) and is_atom(dispatcher) do
    dispatch(pubsub, :none, topic, message, dispatcher)
  end

  @doc "Like `local_broadcast/4`, but the default dispatcher skips `from`."
  @spec local_broadcast_from(t, pid, topic, message, dispatcher) :: :ok
  def local_broadcast_from(pubsub, from, topic, message, dispatcher \\ __MODULE__)
      when is_atom(pubsub) and is_pid(from) and is_binary(topic) and is_atom(dispatcher) do
    dispatch(pubsub, from, topic, message, dispatcher)
  end

  @doc """
  Delivers `message` to the subscribers of `topic` on the node `node_name`
  only, through the adapter (also when that node is this one; prefer
  `local_broadcast/4` for that).
  """
  @spec direct_broadcast(node_name, t, topic, message, dispatcher) :: :ok | {:error, term}
  def direct_broadcast(node_name, pubsub, topic, message, dispatcher \\ __MODULE__)
      when is_atom(pubsub) and is_binary(topic) and is_atom(dispatcher) do
    {adapter, adapter_name} = adapter!(pubsub)
    adapter.direct_broadcast(adapter_name, node_name, topic, message, dispatcher)
  end

  @doc "`broadcast/4`, raising `Phoenix.PubSub.BroadcastError` on error."
  @spec broadcast!(t, topic, message, dispatcher) :: :ok
  def broadcast!(pubsub, topic, message, dispatcher \\ __MODULE__) do
    ok!(broadcast(pubsub, topic, message, dispatcher))
  end

  @doc "`broadcast_from/5`, raising `Phoenix.PubSub.BroadcastError` on error."
  @spec broadcast_from!(t, pid, topic, message, dispatcher) :: :ok
  def broadcast_from!(pubsub, from, topic, message, dispatcher \\ __MODULE__) do
    ok!(broadcast_from(pubsub, from, topic, message, dispatcher))
  end

  @doc "`direct_broadcast/5`, raising `Phoenix.PubSub.BroadcastError` on error."
  @spec direct_broadcast!(node_name, t, topic, message, dispatcher) :: :ok
  def direct_broadcast!(node_name, pubsub, topic, message, dispatcher \\ __MODULE__) do
    ok!(direct_broadcast(node_name, pubsub, topic, message, dispatcher))
  end

  @doc "The node name the PubSub's adapter reports."
  @spec node_name(t) :: node_name
  def node_name(pubsub) do
    {adapter, adapter_name} = adapter!(pubsub)
    adapter.node_name(adapter_name)
  end

  @doc false
  # The default dispatcher.
  def dispatch(entries, from, message) do
    Enum.each(entries, fn {pid, _metadata} -> if pid != from, do: send(pid, message) end)
    :ok
  end

  defp dispatch(pubsub, from, topic, message, dispatcher) do
    Registry.dispatch(pubsub, topic, {dispatcher, :dispatch, [from, message]})
    :ok
  end

  defp adapter!(pubsub) do
    {:ok, {_adapter, _adapter_name} = adapter} = Registry.meta(pubsub, :pubsub)
    adapter
  end

  defp ok!(:ok), do: :ok
  defp ok!({:error, error}), do: raise(BroadcastError, "broadcast failed: #{inspect(error)}")
end
