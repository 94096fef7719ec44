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
  or `timeout` ms pass (the test fails with `message` and the last value).
  """
  def eventually(fun, timeout \\ 5_000, message \\ "condition not met", interval \\ 25) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll(fun, deadline, message, interval)
  end

  defp poll(fun, deadline, message, interval) do
    value = fun.()

    cond do
      value not in [nil, false] ->
        value

      System.monotonic_time(:millisecond) > deadline ->
        flunk("#{message} (last value: #{inspect(value, limit: 20)})")

      true ->
        Process.sleep(interval)
        poll(fun, deadline, message, interval)
    end
  end

  def os_threads, do: length(File.ls!("/proc/self/task"))
  def open_fds, do: length(File.ls!("/proc/self/fd"))
end
