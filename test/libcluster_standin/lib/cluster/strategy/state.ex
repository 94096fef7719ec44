defmodule Cluster.Strategy.State do
  @moduledoc """
  The state handed to a strategy's `start_link/1` (as `[%State{}]`).

  `connect`, `disconnect` and `list_nodes` are `{module, function, args}`
  tuples; the node name is appended to `args` for connect/disconnect.
  `meta` is free for the strategy's own runtime state.
  """

  @type t :: %__MODULE__{
          topology: atom,
          connect: {module, atom, [term]},
          disconnect: {module, atom, [term]},
          list_nodes: {module, atom, [:connected] | [:connected | [any]]},
          meta: term,
          config: [{atom, term}]
        }

  defstruct topology: nil,
            connect: nil,
            disconnect: nil,
            list_nodes: nil,
            meta: nil,
            config: []
end
