defmodule Phoenix.PubSub.Adapter do
  @moduledoc """
  The behaviour of a PubSub adapter: how messages reach other nodes.

  `Phoenix.PubSub` dispatches to local subscribers itself; an adapter only
  carries messages to the other nodes, where it delivers them with
  `Phoenix.PubSub.local_broadcast/4`.
  """

  @typedoc "The name reserved for the adapter (the `:adapter_name` option)."
  @type adapter_name :: atom

  @doc "The node name of this PubSub server, an atom or a binary."
  @callback node_name(adapter_name) :: Phoenix.PubSub.node_name()

  @doc """
  The child spec of the adapter's processes. It receives every option given to
  `Phoenix.PubSub`; `:name` is the PubSub system's name, `:adapter_name` the
  name the adapter may use for itself.
  """
  @callback child_spec(keyword) :: Supervisor.child_spec()

  @doc "Sends `message` on `topic` to every other node of the cluster (not this one)."
  @callback broadcast(
              adapter_name,
              topic :: Phoenix.PubSub.topic(),
              message :: Phoenix.PubSub.message(),
              dispatcher :: Phoenix.PubSub.dispatcher()
            ) :: :ok | {:error, term}

  @doc "Sends `message` on `topic` to the node named `node_name` (possibly this one)."
  @callback direct_broadcast(
              adapter_name,
              node_name :: Phoenix.PubSub.node_name(),
              topic :: Phoenix.PubSub.topic(),
              message :: Phoenix.PubSub.message(),
              dispatcher :: Phoenix.PubSub.dispatcher()
            ) :: :ok | {:error, term}
end
