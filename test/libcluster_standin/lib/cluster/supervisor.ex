defmodule Cluster.Supervisor do
  @moduledoc """
  Supervises one strategy process per configured topology.

      children = [
        {Cluster.Supervisor, [topologies, [name: MyApp.ClusterSupervisor]]}
      ]

  `topologies` is a keyword list `[name: spec]`; each spec takes `:strategy`
  (required), `:config` (default `[]`), `:connect` (default
  `{:net_kernel, :connect_node, []}`), `:disconnect` (default
  `{:erlang, :disconnect_node, []}`) and `:list_nodes` (default
  `{:erlang, :nodes, [:connected]}`).

  Each topology's child is `%{id: topology, start: {strategy, :start_link,
  [[state]]}}` (the strategy's own `child_spec/1` is not consulted, as in
  libcluster 3.x), so several topologies may use the same strategy.
  """
  use Supervisor

  @doc """
  Starts the supervisor. Takes `[topologies, supervisor_opts]` or
  `[topologies]`; `supervisor_opts` are passed to `Supervisor.start_link/3`.
  """
  @spec start_link([term]) :: Supervisor.on_start()
  def start_link([_topologies, opts] = args) do
    Supervisor.start_link(__MODULE__, args, opts)
  end

  def start_link([topologies]), do: start_link([topologies, []])

  @doc false
  @impl Supervisor
  def init([topologies, opts]) do
    children = Enum.map(topologies, &topology_child/1)
    Supervisor.init(children, Keyword.put(opts, :strategy, :one_for_one))
  end

  defp topology_child({topology, spec}) do
    strategy = Keyword.fetch!(spec, :strategy)

    state = %Cluster.Strategy.State{
      topology: topology,
      connect: Keyword.get(spec, :connect, {:net_kernel, :connect_node, []}),
      disconnect: Keyword.get(spec, :disconnect, {:erlang, :disconnect_node, []}),
      list_nodes: Keyword.get(spec, :list_nodes, {:erlang, :nodes, [:connected]}),
      config: Keyword.get(spec, :config, []),
      meta: nil
    }

    %{id: topology, start: {strategy, :start_link, [[state]]}}
  end
end
