defmodule HyParView.Discovery.Strategy do
  @moduledoc """
  The `{:strategy, module, strategy_config, port: port}` discovery source:
  runs another libcluster strategy (`Cluster.Strategy.DNSPoll`,
  `Cluster.Strategy.Epmd`, `Cluster.Strategy.Kubernetes`, ...) as a source of
  contacts only.

  The strategy is started with a `%Cluster.Strategy.State{}` whose
  `connect`, `disconnect` and `list_nodes` MFAs point here instead of at
  `:net_kernel`/`:erlang`: a node it "connects" (libcluster appends the node
  to the MFA's args) is recorded, one it "disconnects" is forgotten, and
  `list_nodes` returns the recorded nodes, so the strategy sees the world it
  asked for and never connects or disconnects anything itself. (A strategy
  that calls `Node.connect/1` directly instead of going through
  `Cluster.Strategy.connect_nodes/4` would still connect; libcluster's own
  strategies do not.)

  Each recorded node becomes a contact at `{host_ip, port}`, where
  `host_ip` is the host part of its name when that is an IP, else what
  `:inet.getaddr/2` resolves it to (IPv4 first).

  This process owns a public ETS table the MFAs write to (so a strategy
  that connects from its `init/1` cannot deadlock against it), starts the
  strategy linked and restarts it, with backoff, when it fails to start or
  exits; each change of outcome is logged once.
  """

  use GenServer
  require Logger

  alias HyParView.Discovery.Source
  alias HyParView.Peer

  @max_nodes 1024
  @restart_min 1_000
  @restart_max 60_000

  defstruct [:module, :config, :topology, :table, :notify, :parent, :pid, :outcome, attempt: 0]

  @doc "Validates a `{:strategy, module, config, opts}` source; raises `ArgumentError` naming `contacts`."
  @spec validate!(term, term, term) :: {:strategy, module, keyword, keyword}
  def validate!(module, config, opts) do
    unless is_atom(module) and Code.ensure_loaded?(module) and
             function_exported?(module, :start_link, 1) do
      Source.invalid!(
        "{:strategy, module, config, opts}: #{inspect(module)} is not a loaded " <>
          "libcluster strategy (no start_link/1)"
      )
    end

    unless Keyword.keyword?(config) do
      Source.invalid!(
        "{:strategy, #{inspect(module)}, config, opts}: config must be a keyword list, " <>
          "got #{inspect(config)}"
      )
    end

    unless Keyword.keyword?(opts) and Keyword.keys(opts) -- [:port] == [] do
      Source.invalid!(
        "{:strategy, #{inspect(module)}, config, opts}: opts must be [port: port], " <>
          "got #{inspect(opts)}"
      )
    end

    case Keyword.get(opts, :port) do
      port when is_integer(port) and port in 1..65_535 ->
        {:strategy, module, config, opts}

      other ->
        Source.invalid!(
          "{:strategy, #{inspect(module)}, config, opts}: port must be in 1..65535, " <>
            "got #{inspect(other)}"
        )
    end
  end

  @doc """
  Starts the collector and, right after, the strategy. Options: `:source`
  (validated), `:topology` (the strategy runs as topology
  `:"<topology>.discovery"`, which prefixes its log lines), `:notify` (a
  pid told `{:hyparview_discovery, :changed, table}` when the recorded
  nodes change).
  """
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  @doc "The ETS table holding the recorded nodes (the handle `resolve/1` needs)."
  @spec table(GenServer.server()) :: :ets.tid()
  def table(collector), do: GenServer.call(collector, :table)

  @doc """
  Contacts from the recorded nodes of `{:strategy, module, config, opts}`
  whose collector table is `opts[:table]` (set by `HyParView.Discovery`).
  Nodes whose host resolves to no address are left out; if that is every
  node, the result is `{:error, {:unresolved, nodes}}`.
  """
  @spec resolve(Source.t()) :: {:ok, [Peer.t()]} | {:error, term}
  def resolve({:strategy, _module, _config, opts}) do
    port = Keyword.fetch!(opts, :port)
    nodes = opts |> Keyword.fetch!(:table) |> list_nodes()

    {peers, unresolved} =
      Enum.reduce(nodes, {[], []}, fn node, {peers, bad} ->
        case host_ip(node) do
          {:ok, ip} -> {[Peer.new(node, {ip, port}) | peers], bad}
          :error -> {peers, [node | bad]}
        end
      end)

    if peers == [] and unresolved != [] do
      {:error, {:unresolved, Enum.sort(unresolved)}}
    else
      {:ok, Enum.sort_by(peers, & &1.id)}
    end
  end

  defp host_ip(node) do
    with [_name, host] <- node |> Atom.to_string() |> String.split("@", parts: 2),
         host = host |> String.trim_leading("[") |> String.trim_trailing("]") |> to_charlist(),
         {:error, _} <- :inet.parse_strict_address(host),
         {:error, _} <- :inet.getaddr(host, :inet),
         {:error, _} <- :inet.getaddr(host, :inet6) do
      :error
    else
      {:ok, ip} -> if Peer.valid_ip?(ip), do: {:ok, ip}, else: :error
      _ -> :error
    end
  end

  ## The MFAs handed to the strategy

  @doc false
  # connect MFA: `{__MODULE__, :connect, [table, notify]}`, node appended.
  @spec connect(:ets.tid(), pid | nil, node) :: true
  def connect(table, notify, node) when is_atom(node) do
    if :ets.info(table, :size) < @max_nodes and :ets.insert_new(table, {node}) do
      changed(notify, table)
    end

    true
  end

  @doc false
  # disconnect MFA: forgets the node.
  @spec disconnect(:ets.tid(), pid | nil, node) :: true
  def disconnect(table, notify, node) do
    if :ets.member(table, node) do
      :ets.delete(table, node)
      changed(notify, table)
    end

    true
  end

  @doc false
  # list_nodes MFA: what the strategy believes is connected.
  @spec list_nodes(:ets.tid()) :: [node]
  def list_nodes(table) do
    :ets.select(table, [{{:"$1"}, [], [:"$1"]}]) |> Enum.sort()
  rescue
    ArgumentError -> []
  end

  defp changed(nil, _table), do: :ok
  defp changed(pid, table), do: send(pid, {:hyparview_discovery, :changed, table})

  ## GenServer

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    {:strategy, module, config, _} = Keyword.fetch!(opts, :source)
    table = :ets.new(__MODULE__, [:set, :public, read_concurrency: true])

    state = %__MODULE__{
      module: module,
      config: config,
      topology: :"#{Keyword.get(opts, :topology, :hyparview)}.discovery",
      table: table,
      notify: Keyword.get(opts, :notify),
      parent: hd(Process.get(:"$ancestors"))
    }

    {:ok, state, {:continue, :start}}
  end

  @impl true
  def handle_continue(:start, state), do: {:noreply, start_strategy(state)}

  @impl true
  def handle_call(:table, _from, state), do: {:reply, state.table, state}

  @impl true
  def handle_info(:restart, state), do: {:noreply, start_strategy(state)}

  def handle_info({:EXIT, pid, reason}, %{pid: pid} = state) do
    state = outcome(%{state | pid: nil}, {:exited, reason})
    {:noreply, schedule_restart(state)}
  end

  def handle_info({:EXIT, pid, reason}, %{parent: pid} = state), do: {:stop, reason, state}
  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  # A strategy that does not trap exits ignores a :normal exit signal: stop it.
  def terminate(_reason, %{pid: pid}) when is_pid(pid), do: Process.exit(pid, :shutdown)
  def terminate(_reason, _state), do: :ok

  defp start_strategy(state) do
    cluster_state = %Cluster.Strategy.State{
      topology: state.topology,
      connect: {__MODULE__, :connect, [state.table, state.notify]},
      disconnect: {__MODULE__, :disconnect, [state.table, state.notify]},
      list_nodes: {__MODULE__, :list_nodes, [state.table]},
      config: state.config,
      meta: nil
    }

    result =
      try do
        state.module.start_link([cluster_state])
      catch
        kind, reason -> {:error, {kind, reason}}
      end

    case result do
      {:ok, pid} -> outcome(%{state | pid: pid, attempt: 0}, :running)
      :ignore -> outcome(state, :ignored)
      {:error, reason} -> state |> outcome({:start_failed, reason}) |> schedule_restart()
      other -> state |> outcome({:start_failed, other}) |> schedule_restart()
    end
  end

  defp schedule_restart(state) do
    delay = min(@restart_max, @restart_min * Bitwise.bsl(1, min(state.attempt, 16)))
    Process.send_after(self(), :restart, delay)
    %{state | attempt: state.attempt + 1}
  end

  # Logged once per change of outcome.
  defp outcome(%{outcome: same} = state, same), do: state

  defp outcome(state, new) do
    name = inspect(state.module)

    case new do
      :running ->
        if state.outcome != nil, do: log(:info, state, "discovery strategy #{name} running again")

      :ignored ->
        log(:warning, state, "discovery strategy #{name} returned :ignore (nothing to discover)")

      {what, reason} ->
        log(:warning, state, "discovery strategy #{name} #{what}: #{inspect(reason)}")
    end

    %{state | outcome: new}
  end

  defp log(level, state, message) do
    Logger.log(level, "[libcluster:#{state.topology}] #{message}")
  end
end
