defmodule HyParView.TestSupport do
  @moduledoc false
  # Shared helpers for the single-VM HyParView tests (loopback, ephemeral ports).

  import ExUnit.Assertions

  alias HyParView.Peer

  @secret "test-secret"

  # Small timings so failure detection and repair happen within a second or two.
  def fast_config(extra \\ []) do
    Keyword.merge(
      [
        shuffle_interval: 200,
        heartbeat_interval: 100,
        failure_timeout: 1_000,
        neighbor_timeout: 500,
        connect_timeout: 500,
        handshake_timeout: 500,
        rejoin_backoff_min: 100,
        rejoin_backoff_max: 1_000,
        promotion_interval: 1_000
      ],
      extra
    )
  end

  def secret, do: @secret

  def node_id(prefix, i), do: :"#{prefix}#{i}@127.0.0.1"

  @doc "Starts a server on an ephemeral loopback port (not linked to the test process)."
  def start_server(id, opts \\ []) do
    opts =
      Keyword.merge(
        [
          peer: Peer.new(id, {{127, 0, 0, 1}, 0}),
          secret: @secret,
          config: fast_config()
        ],
        opts
      )

    {:ok, pid} = HyParView.start_link(opts)
    # The test process must not die with the server, nor the server with a test.
    Process.unlink(pid)
    ExUnit.Callbacks.on_exit(fn -> safe_stop(pid) end)
    pid
  end

  def safe_stop(pid) do
    if Process.alive?(pid), do: HyParView.stop(pid)
    :ok
  catch
    :exit, _ -> :ok
  end

  def ids(peers), do: peers |> Enum.map(& &1.id) |> Enum.sort()

  @doc """
  Polls `fun` every `interval` ms until it returns a truthy value (returned)
  or `timeout` ms pass (the test fails with `message`, a string or a 0-arity
  function building one, and the last value).
  """
  def eventually(fun, timeout \\ 5_000, message \\ "condition not met", interval \\ 25) do
    truthy = fn ->
      case fun.() do
        value when value in [nil, false] -> {:not_yet, value}
        value -> {:ok, value}
      end
    end

    case HyParView.Dev.LocalCluster.wait_until(truthy, timeout, interval) do
      {:ok, value, _ms} ->
        value

      {:error, {:timeout, {:not_yet, value}}} ->
        message = if is_function(message, 0), do: message.(), else: message
        flunk("#{message} (last value: #{inspect(value, limit: 20)})")
    end
  end

  def os_threads, do: length(File.ls!("/proc/self/task"))
  def open_fds, do: length(File.ls!("/proc/self/fd"))
end

defmodule HyParView.TestSupport.Overlay do
  @moduledoc false
  # Checks on a set of servers, keyed by peer id.

  @doc """
  Returns `{:ok, views}` when every active view has 1..max peers, contains
  only known live ids, is symmetric, and the overlay graph is connected;
  otherwise `{:error, problem}`.
  """
  def check(servers, max) do
    views =
      Map.new(servers, fn {id, pid} ->
        {id, pid |> HyParView.active_view() |> Enum.map(& &1.id)}
      end)

    ids = Map.keys(views)

    with :ok <- each(views, fn {id, v} -> length(v) in 1..max or {:size, id, v} end),
         :ok <- each(views, fn {id, v} -> Enum.all?(v, &(&1 in ids)) or {:unknown, id, v} end),
         :ok <- problem(HyParView.Dev.Overlay.asymmetric(views), :asymmetric),
         :ok <- problem(HyParView.Dev.Overlay.unreachable(views), :partitioned) do
      {:ok, views}
    end
  end

  defp problem([], _kind), do: :ok
  defp problem(found, kind), do: {:error, {kind, found}}

  defp each(views, fun) do
    Enum.find_value(views, :ok, fn entry ->
      case fun.(entry) do
        true -> nil
        problem -> {:error, problem}
      end
    end)
  end
end
