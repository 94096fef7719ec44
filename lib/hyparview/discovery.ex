defmodule HyParView.Discovery do
  @moduledoc """
  Keeps a `HyParView.Server`'s contacts fresh from discovery sources (see
  `HyParView.Discovery.Source`): DNS, another libcluster strategy, or a
  function. `Cluster.Strategy.HyParView` starts one next to its server when
  the topology's `contacts:` holds a source.

  It subscribes to the server's membership events and resolves every
  source (see `HyParView.Discovery.Schedule` for when): at start, while the
  node is isolated or short of peers, and at a low steady rate. The plain
  peers of `contacts:` and everything the sources returned (de-duplicated
  by id, without this node) replace the server's contacts through
  `HyParView.set_contacts/2` whenever they change.

  Sources run in tasks with a timeout; a source that fails, raises or
  hangs keeps its last good answer and is logged once per change of
  outcome. Nothing here can crash because of a source.
  """

  use GenServer
  require Logger

  alias HyParView.Discovery.{Schedule, Source, Strategy}
  alias HyParView.Peer

  @max_contacts 1024

  @typedoc "Options of `start_link/1`; see there."
  @type option ::
          {:server, GenServer.server()}
          | {:sources, [Source.t()]}
          | {:contacts, [Peer.t()]}
          | {:active_view_size, pos_integer}
          | {:interval, pos_integer}
          | {:refresh, pos_integer}
          | {:timeout, pos_integer}
          | {:topology, atom}

  # Config keys of the topology (Cluster.Strategy.HyParView), with defaults.
  @config_defaults [
    discovery_interval: 5_000,
    discovery_refresh: 60_000,
    discovery_timeout: 5_000
  ]

  defstruct [
    :parent,
    :server,
    :local,
    :topology,
    :size,
    :timeout,
    :schedule,
    :timer,
    :run,
    sources: [],
    static: [],
    results: %{},
    outcomes: %{},
    known: MapSet.new(),
    contacts: nil,
    active: MapSet.new(),
    rerun: false
  ]

  @doc "The topology config keys of discovery and their defaults."
  @spec config_defaults() :: keyword
  def config_defaults, do: @config_defaults

  @doc """
  Validates the discovery part of a topology config: `contacts` (peers
  and sources) and `discovery_interval`, `discovery_refresh`,
  `discovery_timeout` (ms). Returns `{peers, sources}`; raises
  `ArgumentError` naming the key.
  """
  @spec validate_config!(keyword) :: {[Peer.t()], [Source.t()]}
  def validate_config!(config) do
    for {key, _default} <- @config_defaults, Keyword.has_key?(config, key) do
      case Keyword.fetch!(config, key) do
        ms when is_integer(ms) and ms in 1..86_400_000 ->
          :ok

        other ->
          raise ArgumentError,
                "invalid HyParView config #{key}: #{inspect(other)} (expected ms in 1..86400000)"
      end
    end

    Source.parse!(Keyword.get(config, :contacts, []))
  end

  @doc """
  Starts discovery for `server`, linked to the caller.

  Options: `:server` (required), `:sources` (validated, see
  `HyParView.Discovery.Source.parse!/1`), `:contacts` (plain peers kept in
  every contact list), `:active_view_size` (default 5), `:interval`,
  `:refresh`, `:timeout` (ms, defaults as the `discovery_*` config keys)
  and `:topology` (for log lines).
  """
  @spec start_link([option]) :: GenServer.on_start()
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  @doc "The contacts last handed to the server (`nil` before the first run)."
  @spec contacts(GenServer.server()) :: [Peer.t()] | nil
  def contacts(discovery), do: GenServer.call(discovery, :contacts)

  ## GenServer

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    server = Keyword.fetch!(opts, :server)
    topology = Keyword.get(opts, :topology, :hyparview)
    :ok = HyParView.subscribe(server, self(), replay: true)
    local = HyParView.local_peer(server)

    sources =
      Enum.map(Keyword.get(opts, :sources, []), fn
        {:strategy, module, config, source_opts} = source ->
          {:ok, pid} = Strategy.start_link(source: source, topology: topology, notify: self())

          {:strategy, module, config, Keyword.put(source_opts, :table, Strategy.table(pid))}

        source ->
          source
      end)

    state = %__MODULE__{
      parent: hd(Process.get(:"$ancestors")),
      server: server,
      local: local,
      topology: topology,
      size: Keyword.get(opts, :active_view_size, 5),
      timeout: Keyword.get(opts, :timeout, @config_defaults[:discovery_timeout]),
      schedule:
        Schedule.new(
          Keyword.get(opts, :interval, @config_defaults[:discovery_interval]),
          Keyword.get(opts, :refresh, @config_defaults[:discovery_refresh])
        ),
      sources: Enum.with_index(sources),
      static: Keyword.get(opts, :contacts, [])
    }

    {:ok, reschedule(view(state))}
  end

  @impl true
  def handle_call(:contacts, _from, state), do: {:reply, state.contacts, state}

  @impl true
  def handle_info({:hyparview, {:peer_up, %Peer{id: id}}}, state) do
    {:noreply, reschedule(view(%{state | active: MapSet.put(state.active, id)}))}
  end

  def handle_info({:hyparview, {:peer_down, %Peer{id: id}}}, state) do
    {:noreply, reschedule(view(%{state | active: MapSet.delete(state.active, id)}))}
  end

  def handle_info({:run, token}, %{timer: {token, _}} = state) do
    {:noreply, start_run(%{state | timer: nil})}
  end

  # A strategy source recorded a new or lost node: look again now.
  def handle_info({:hyparview_discovery, :changed, _table}, state) do
    {:noreply, if(state.run, do: %{state | rerun: true}, else: start_run(cancel_timer(state)))}
  end

  def handle_info({ref, results}, %{run: %Task{ref: ref}} = state) do
    Process.demonitor(ref, [:flush])
    {:noreply, finish_run(%{state | run: nil}, results)}
  end

  def handle_info({:EXIT, pid, _reason}, %{run: %Task{pid: pid}} = state) do
    # The runner itself failed (it should not): count every source as failed.
    results = Enum.map(state.sources, fn _ -> {:error, :runner_failed} end)
    {:noreply, finish_run(%{state | run: nil}, results)}
  end

  def handle_info({:EXIT, pid, reason}, %{parent: pid} = state), do: {:stop, reason, state}
  def handle_info({:EXIT, _pid, :normal}, state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}
  def handle_info(_msg, state), do: {:noreply, state}

  ## Runs

  defp start_run(%{run: %Task{}} = state), do: state

  defp start_run(state) do
    sources = Enum.map(state.sources, &elem(&1, 0))
    timeout = state.timeout
    %{state | run: Task.async(fn -> resolve_all(sources, timeout) end), rerun: false}
  end

  @doc false
  # Every source at once, each in its own task with `timeout`; a hung one is
  # killed. Returns one `{:ok, peers} | {:error, reason}` per source, in order.
  @spec resolve_all([Source.t()], pos_integer) :: [{:ok, [Peer.t()]} | {:error, term}]
  def resolve_all([], _timeout), do: []

  def resolve_all(sources, timeout) do
    sources
    |> Task.async_stream(&safe_resolve/1,
      timeout: timeout,
      on_timeout: :kill_task,
      max_concurrency: length(sources)
    )
    |> Enum.map(fn
      {:ok, result} -> result
      {:exit, :timeout} -> {:error, :timeout}
      {:exit, reason} -> {:error, {:exit, reason}}
    end)
  end

  defp safe_resolve(source) do
    case Source.resolve(source) do
      {:ok, peers} when is_list(peers) -> {:ok, Enum.take(peers, @max_contacts)}
      {:error, reason} -> {:error, reason}
    end
  catch
    kind, reason -> {:error, {kind, reason}}
  end

  defp finish_run(state, results) do
    now = now()

    state =
      state.sources
      |> Enum.zip(results)
      |> Enum.reduce(state, fn {{source, i}, result}, acc ->
        acc = log_outcome(acc, source, i, result)

        case result do
          {:ok, peers} -> %{acc | results: Map.put(acc.results, i, peers)}
          # Keep the last good answer: stale contacts cost a failed dial.
          {:error, _} -> acc
        end
      end)

    found = state.results |> Map.values() |> List.flatten() |> clean(state.local)
    ids = MapSet.new(found, &to_string(&1.id))
    # "New" is relative to the previous run (a set that stays bounded).
    learned? = not MapSet.subset?(ids, state.known)
    contacts = clean(state.static ++ found, state.local) |> Enum.take(@max_contacts)

    state =
      if contacts != state.contacts do
        set_contacts(state, contacts)
      else
        state
      end

    state = %{
      state
      | known: ids,
        schedule: Schedule.ran(state.schedule, now, learned?)
    }

    if state.rerun, do: start_run(state), else: reschedule(state)
  end

  defp set_contacts(state, contacts) do
    HyParView.set_contacts(state.server, contacts)
    %{state | contacts: contacts}
  catch
    # The server is going away; the strategy follows. Try again next run.
    :exit, _ -> state
  end

  # De-duplicated by id (first wins), without this node (by id or address).
  defp clean(peers, %Peer{id: id, address: address}) do
    me = to_string(id)

    peers
    |> Enum.reject(&(to_string(&1.id) == me or &1.address == address))
    |> Enum.uniq_by(&to_string(&1.id))
  end

  defp log_outcome(state, source, i, result) do
    outcome =
      case result do
        {:ok, []} -> :empty
        {:ok, _} -> :ok
        {:error, reason} -> {:error, reason}
      end

    previous = Map.get(state.outcomes, i)

    if outcome != previous do
      name = Source.describe(source)

      case outcome do
        :ok when previous == nil ->
          :ok

        :ok ->
          log(state, :info, "discovery source #{name} answers again")

        :empty ->
          log(state, :warning, "discovery source #{name} found no contacts")

        {:error, reason} ->
          log(state, :warning, "discovery source #{name} failed: #{inspect(reason, limit: 20)}")
      end
    end

    %{state | outcomes: Map.put(state.outcomes, i, outcome)}
  end

  defp log(state, level, message) do
    Logger.log(level, "[libcluster:#{state.topology}] HyParView.Discovery #{message}")
  end

  ## Timing

  defp view(state) do
    %{
      state
      | schedule: Schedule.view(state.schedule, MapSet.size(state.active), state.size, now())
    }
  end

  # One timer, for the next due run; none while a run is in flight.
  defp reschedule(%{run: %Task{}} = state), do: state

  defp reschedule(state) do
    state = cancel_timer(state)
    token = make_ref()
    ref = Process.send_after(self(), {:run, token}, Schedule.delay(state.schedule, now()))
    %{state | timer: {token, ref}}
  end

  defp cancel_timer(%{timer: {_token, ref}} = state) do
    Process.cancel_timer(ref)
    %{state | timer: nil}
  end

  defp cancel_timer(state), do: state

  defp now, do: System.monotonic_time(:millisecond)
end
