defmodule Phoenix.PubSub.PG2 do
  @moduledoc """
  The default adapter: over Distributed Erlang, through a `:pg` group per
  PubSub that holds one worker per node. Broadcasts are sent to the workers
  of the other nodes, which deliver them locally.

  Stand-in: one worker per node whatever `:pool_size` says.
  """

  @behaviour Phoenix.PubSub.Adapter
  use GenServer

  @scope Phoenix.PubSub

  @impl Phoenix.PubSub.Adapter
  def node_name(_adapter_name), do: node()

  @impl Phoenix.PubSub.Adapter
  def broadcast(adapter_name, topic, message, dispatcher) do
    case :pg.get_members(@scope, adapter_name) do
      [] ->
        {:error, :no_such_group}

      members ->
        forward = {:forward_to_local, topic, message, dispatcher}
        me = node()
        Enum.each(members, fn pid -> if node(pid) != me, do: send(pid, forward) end)
        :ok
    end
  end

  @impl Phoenix.PubSub.Adapter
  def direct_broadcast(adapter_name, node_name, topic, message, dispatcher) do
    send({adapter_name, node_name}, {:forward_to_local, topic, message, dispatcher})
    :ok
  end

  @impl Phoenix.PubSub.Adapter
  def child_spec(opts) do
    %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, type: :worker}
  end

  @doc false
  def start_link(opts) do
    pubsub = Keyword.fetch!(opts, :name)
    adapter_name = Keyword.fetch!(opts, :adapter_name)
    GenServer.start_link(__MODULE__, {pubsub, adapter_name}, name: adapter_name)
  end

  @impl GenServer
  def init({pubsub, adapter_name}) do
    :ok = :pg.join(@scope, adapter_name, self())
    {:ok, pubsub}
  end

  @impl GenServer
  def handle_info({:forward_to_local, topic, message, dispatcher}, pubsub) do
    Phoenix.PubSub.local_broadcast(pubsub, topic, message, dispatcher)
    {:noreply, pubsub}
  end

  def handle_info(_other, pubsub), do: {:noreply, pubsub}
end
