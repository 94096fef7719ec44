defmodule Cluster.Strategy do
  @moduledoc """
  Behaviour for clustering strategies, plus the helpers strategies use to
  connect and disconnect nodes through the topology's MFAs.

  A strategy is started by `Cluster.Supervisor` with `start_link([state])`
  where `state` is a `Cluster.Strategy.State`. `use Cluster.Strategy` declares
  the behaviour and an overridable `child_spec/1`.
  """

  defmacro __using__(_opts) do
    quote do
      @behaviour Cluster.Strategy

      @impl true
      def child_spec(args) do
        %{id: __MODULE__, type: :worker, start: {__MODULE__, :start_link, [args]}}
      end

      defoverridable child_spec: 1
    end
  end

  @type topology :: atom
  @type bad_nodes :: [{node, reason :: term}]
  @type mfa_tuple :: {module, atom, [term]}
  @type strategy_args :: [Cluster.Strategy.State.t()]

  @callback child_spec(strategy_args) :: Supervisor.child_spec()
  @callback start_link(strategy_args) :: {:ok, pid} | :ignore | {:error, reason :: term}

  @doc """
  Connects to every node in `nodes` that `list_nodes` does not already
  report (the local node is skipped), by calling the `connect` MFA with the
  node appended to its arguments.

  Returns `:ok`, or `{:error, [{node, reason}]}` listing the nodes for which
  the MFA returned `false` or `:ignored`. Every attempt is logged.
  """
  @spec connect_nodes(topology, mfa_tuple, mfa_tuple, [atom]) :: :ok | {:error, bad_nodes}
  def connect_nodes(topology, {_, _, _} = connect, {_, _, _} = list_nodes, nodes)
      when is_list(nodes) do
    {mod, fun, args} = connect
    current = list(list_nodes)
    me = Node.self()
    todo = Enum.uniq(nodes) |> Enum.reject(&(&1 == me or &1 in current))

    todo
    |> Enum.reduce([], fn node, bad ->
      fargs = args ++ [node]
      require_exported!(mod, fun, length(fargs))
      started = System.monotonic_time()

      case apply(mod, fun, fargs) do
        true ->
          emit([:libcluster, :connect_node, :ok], started, %{node: node, topology: topology})
          Cluster.Logger.info(topology, "connected to #{inspect(node)}")
          bad

        false ->
          emit([:libcluster, :connect_node, :error], started, %{
            node: node,
            topology: topology,
            reason: :unreachable
          })

          Cluster.Logger.warn(topology, "unable to connect to #{inspect(node)}")
          [{node, false} | bad]

        :ignored ->
          emit([:libcluster, :connect_node, :error], started, %{
            node: node,
            topology: topology,
            reason: :not_part_of_network
          })

          Cluster.Logger.warn(
            topology,
            "unable to connect to #{inspect(node)}: not part of network"
          )

          [{node, :ignored} | bad]
      end
    end)
    |> result()
  end

  @doc """
  Disconnects from every node in `nodes` that `list_nodes` reports (the
  local node is skipped), by calling the `disconnect` MFA with the node
  appended to its arguments.

  `true`, `false` (already disconnected) and `:ignored` (not part of the
  network) count as success; any other return value is a failure. Returns
  `:ok` or `{:error, [{node, reason}]}`. Every attempt is logged.
  """
  @spec disconnect_nodes(topology, mfa_tuple, mfa_tuple, [atom]) :: :ok | {:error, bad_nodes}
  def disconnect_nodes(topology, {_, _, _} = disconnect, {_, _, _} = list_nodes, nodes)
      when is_list(nodes) do
    {mod, fun, args} = disconnect
    current = list(list_nodes)
    me = Node.self()
    todo = Enum.uniq(nodes) |> Enum.filter(&(&1 != me and &1 in current))

    todo
    |> Enum.reduce([], fn node, bad ->
      fargs = args ++ [node]
      require_exported!(mod, fun, length(fargs))
      started = System.monotonic_time()

      case apply(mod, fun, fargs) do
        true ->
          emit([:libcluster, :disconnect_node, :ok], started, %{node: node, topology: topology})
          Cluster.Logger.info(topology, "disconnected from #{inspect(node)}")
          bad

        false ->
          emit([:libcluster, :disconnect_node, :error], started, %{
            node: node,
            topology: topology,
            reason: :already_disconnected
          })

          Cluster.Logger.warn(
            topology,
            "disconnect from #{inspect(node)} failed because we're already disconnected"
          )

          bad

        :ignored ->
          emit([:libcluster, :disconnect_node, :error], started, %{
            node: node,
            topology: topology,
            reason: :not_part_of_network
          })

          Cluster.Logger.warn(
            topology,
            "disconnect from #{inspect(node)} failed because it is not part of the network"
          )

          bad

        reason ->
          emit([:libcluster, :disconnect_node, :error], started, %{
            node: node,
            topology: topology,
            reason: reason
          })

          Cluster.Logger.warn(
            topology,
            "disconnect from #{inspect(node)} failed with: #{inspect(reason)}"
          )

          [{node, reason} | bad]
      end
    end)
    |> result()
  end

  defp list({mod, fun, args}) do
    require_exported!(mod, fun, length(args))
    apply(mod, fun, args)
  end

  defp result([]), do: :ok
  defp result(bad), do: {:error, bad}

  defp require_exported!(mod, fun, arity) do
    # function_exported?/3 is false for modules not loaded yet.
    Code.ensure_loaded(mod)

    unless function_exported?(mod, fun, arity) do
      raise "#{inspect(mod)}.#{fun}/#{arity} is undefined!"
    end
  end

  # The real libcluster depends on :telemetry; the stand-in has no deps, so it
  # only emits when the application happens to be present.
  # Code.ensure_loaded?/1 of an absent module asks the code server, which
  # searches the whole code path: too slow for every connect, so the first
  # answer is kept.
  defp emit(event, started, metadata) do
    if telemetry?() do
      apply(:telemetry, :execute, [
        event,
        %{duration: System.monotonic_time() - started},
        metadata
      ])
    end

    :ok
  end

  defp telemetry? do
    key = {__MODULE__, :telemetry?}

    case :persistent_term.get(key, nil) do
      nil ->
        available = Code.ensure_loaded?(:telemetry)
        :persistent_term.put(key, available)
        available

      available ->
        available
    end
  end
end
