defmodule Cluster.Strategy.HyParView.Setup do
  @moduledoc """
  What `Cluster.Strategy.HyParView` checks and starts before it follows the
  overlay: the topology config (validated in the caller), the node
  (distributed, `local_peer` is `node()`), the server options, discovery,
  and the wait for a previous run's server.
  """

  alias Cluster.Strategy.State
  alias HyParView.Peer

  # Longest wait for a previous run's server to stop (its own stop takes
  # at most 5 s, the NIF's shutdown confirmation).
  @previous_server_wait 6_000
  @config_keys [
    :local_peer,
    :contacts,
    :transport,
    :hyparview_config,
    :secret,
    :advertise_address,
    # Discovery (HyParView.Discovery):
    :discovery_interval,
    :discovery_refresh,
    :discovery_timeout
  ]

  @doc """
  Raises `ArgumentError` naming the key for an invalid topology config.
  Checked in the caller, before anything starts, so a typo fails loudly
  even on a node that would otherwise be refused for another reason.
  """
  @spec validate_config!(term) :: :ok
  def validate_config!(config) when is_list(config) do
    _ = HyParView.Config.new(Keyword.get(config, :hyparview_config, []))

    _ = HyParView.Discovery.validate_config!(config)

    case Keyword.get(config, :transport, HyParView.Transport.TCP) do
      HyParView.Transport.TCP ->
        :ok

      other ->
        raise ArgumentError,
              "invalid HyParView config transport: #{inspect(other)} " <>
                "(the only transport is HyParView.Transport.TCP)"
    end
  end

  def validate_config!(other) do
    raise ArgumentError,
          "invalid HyParView config: expected a keyword list, got #{inspect(other)}"
  end

  @doc """
  Checks the topology config and the node; returns `HyParView.Server`
  options, or `{:error, reason, message}`.
  """
  @spec preflight(State.t()) :: {:ok, keyword} | {:error, term, String.t()}
  def preflight(%State{config: config, topology: topology}) do
    config = config || []

    Enum.each(config, fn {key, _} ->
      unless key in @config_keys do
        Cluster.Logger.warn(
          topology,
          "Cluster.Strategy.HyParView: ignoring unknown config key #{inspect(key)}"
        )
      end
    end)

    case Keyword.get(config, :local_peer) do
      %Peer{id: id} = local when id == node() ->
        if Node.alive?() do
          opts =
            [
              peer: local,
              contacts: static_contacts(config),
              transport: Keyword.get(config, :transport, HyParView.Transport.TCP),
              config: Keyword.get(config, :hyparview_config, [])
            ] ++ Keyword.take(config, [:secret, :advertise_address])

          {:ok, opts}
        else
          {:error, :not_distributed,
           "refusing to start: this node is not distributed (start it with -name/-sname); " <>
             "HyParView peers are BEAM nodes"}
        end

      %Peer{id: id} ->
        {:error, {:local_peer_mismatch, id, node()},
         "refusing to start: local_peer id #{inspect(id)} must equal node() " <>
           "(#{inspect(node())})"}

      nil ->
        {:error, :missing_local_peer,
         "refusing to start: config local_peer is required (HyParView.Peer.new(node(), {ip, port}))"}

      other ->
        {:error, :invalid_local_peer,
         "refusing to start: config local_peer must be a %HyParView.Peer{}, got #{inspect(other)}"}
    end
  end

  # A strategy restarted by its supervisor (after a crash or a kill) finds
  # the previous run's server still registered while it shuts down (it stops
  # on the strategy's exit signal, and releases its port before it exits):
  # it waits for it, or the new server would fail with :already_started.
  @doc """
  Waits (at most #{@previous_server_wait} ms) for `pid`, a previous run's
  server, to exit; `nil` returns at once.
  """
  @spec await_previous_server(pid | nil) :: :ok
  def await_previous_server(nil), do: :ok

  def await_previous_server(pid) when is_pid(pid) do
    ref = Process.monitor(pid)

    receive do
      {:DOWN, ^ref, :process, ^pid, _} -> :ok
    after
      @previous_server_wait ->
        Process.demonitor(ref, [:flush])
        :ok
    end
  end

  ## Discovery (contacts: sources, see HyParView.Discovery)

  defp static_contacts(config) do
    {peers, _sources} = HyParView.Discovery.validate_config!(config)
    peers
  end

  @doc """
  Starts a `HyParView.Discovery` when `contacts` holds sources, linked: if
  discovery dies the strategy stops (and is restarted) with it.
  """
  @spec start_discovery(State.t(), pid) :: :ok
  def start_discovery(%State{topology: topology, config: config}, server) do
    config = config || []

    case HyParView.Discovery.validate_config!(config) do
      {_peers, []} ->
        :ok

      {peers, sources} ->
        hp_config = HyParView.Config.new(Keyword.get(config, :hyparview_config, []))
        defaults = HyParView.Discovery.config_defaults()
        setting = &Keyword.get(config, &1, defaults[&1])

        {:ok, _pid} =
          HyParView.Discovery.start_link(
            server: server,
            sources: sources,
            contacts: peers,
            active_view_size: hp_config.active_view_size,
            interval: setting.(:discovery_interval),
            refresh: setting.(:discovery_refresh),
            timeout: setting.(:discovery_timeout),
            topology: topology
          )

        :ok
    end
  end

  @doc "The `active_view_size` of the topology's `hyparview_config`."
  @spec active_view_size(keyword) :: pos_integer
  def active_view_size(config) do
    HyParView.Config.new(Keyword.get(config, :hyparview_config, [])).active_view_size
  end

  @doc "Logs once per VM when it was not started with `-connect_all false`."
  @spec warn_connect_all(atom) :: :ok
  def warn_connect_all(topology) do
    if :init.get_argument(:connect_all) != {:ok, [['false']]} and
         not :persistent_term.get({__MODULE__, :connect_all_warned}, false) do
      :persistent_term.put({__MODULE__, :connect_all_warned}, true)

      Cluster.Logger.warn(
        topology,
        "Cluster.Strategy.HyParView: the VM was not started with `-connect_all false`; " <>
          "transitive connections will turn the partial mesh into a full mesh"
      )
    end

    :ok
  end
end
