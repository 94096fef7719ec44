defmodule BenchHost do
  @moduledoc false
  # What the bench controllers share (cluster_bench.exs and
  # pubsub_bench.exs): the machine they ran on, and calls over their peers.

  @doc "Output of a command, trimmed, or nil if it failed or is missing."
  def cmd_out(c, args) do
    case System.cmd(c, args, stderr_to_stdout: true) do
      {out, 0} -> String.trim(out)
      _ -> nil
    end
  rescue
    _ -> nil
  end

  @doc "The 1, 5 and 15 minute load averages as one string, or nil."
  def load_avg do
    case File.read("/proc/loadavg") do
      {:ok, s} -> s |> String.split(" ") |> Enum.take(3) |> Enum.join(" ")
      _ -> nil
    end
  end

  @doc "The CPU's model name from /proc/cpuinfo, or \"unknown\"."
  def cpu_model do
    with {:ok, s} <- File.read("/proc/cpuinfo"),
         [_, m] <- Regex.run(~r/^model name\s*:\s*(.+)$/m, s) do
      m
    else
      _ -> "unknown"
    end
  end

  @doc """
  `fun` on every peer at once (at most `concurrency` at a time), as
  `[{node, result}]` in the peers' order; a peer that raised or exited
  gives `{:bench_error, kind, reason}`.
  """
  def pcall(peers, fun, timeout \\ 15_000, concurrency \\ 64) do
    peers
    |> Task.async_stream(
      fn p ->
        try do
          {p.node, fun.(p)}
        catch
          k, e -> {p.node, {:bench_error, k, e}}
        end
      end,
      max_concurrency: concurrency,
      timeout: timeout + 1_000,
      ordered: true
    )
    |> Enum.map(fn {:ok, r} -> r end)
  end

  @doc """
  Stops every peer (`concurrency` at a time, each given `timeout` ms), kills
  with -9 what did not halt, and waits until epmd has forgotten every name
  starting with `prefix` (the next mode reuses the names).
  """
  def stop_peers(peers, prefix, concurrency, timeout) do
    peers
    |> Task.async_stream(
      fn p ->
        try do
          :peer.stop(p.pid)
        catch
          _, _ -> :ok
        end
      end,
      max_concurrency: concurrency,
      timeout: timeout,
      on_timeout: :kill_task
    )
    |> Stream.run()

    # A VM that did not halt in time (a busy full mesh of 256) goes the hard way.
    left = for p <- peers, File.exists?("/proc/#{p.os_pid}"), do: Integer.to_string(p.os_pid)
    if left != [], do: System.cmd("kill", ["-9" | left], stderr_to_stdout: true)

    HyParView.Dev.LocalCluster.wait_until(
      fn ->
        case :erl_epmd.names(~c"127.0.0.1") do
          {:ok, names} -> not Enum.any?(names, fn {n, _} -> List.starts_with?(n, prefix) end)
          _ -> true
        end
      end,
      30_000
    )
  end
end
