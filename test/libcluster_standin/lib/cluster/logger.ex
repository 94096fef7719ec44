defmodule Cluster.Logger do
  @moduledoc false
  # Every line is prefixed with "[libcluster:<topology>]". Debug output is
  # opt-in through `config :libcluster, debug: true`.
  require Logger

  def debug(topology, msg) do
    if Application.get_env(:libcluster, :debug, false) not in [nil, false, "false"] do
      Logger.debug(prefix(topology, msg))
    end

    :ok
  end

  def info(topology, msg), do: Logger.info(prefix(topology, msg))
  def warning(topology, msg), do: Logger.warning(prefix(topology, msg))
  # Older libcluster releases called it warn/2; kept for strategies using it.
  def warn(topology, msg), do: warning(topology, msg)
  def error(topology, msg), do: Logger.error(prefix(topology, msg))

  defp prefix(topology, msg), do: "[libcluster:#{topology}] #{msg}"
end
