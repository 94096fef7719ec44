defmodule BenchHost do
  @moduledoc false
  # What the bench scripts record about the machine they ran on (shared by
  # cluster_bench.exs and pubsub_bench.exs).

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
end
