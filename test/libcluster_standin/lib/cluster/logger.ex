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
  # libcluster 3.5 has warn/2 only (it calls Logger.warning); no warning/2,
  # so a strategy that works with the stand-in works with the real package.
  def warn(topology, msg), do: Logger.warning(prefix(topology, msg))
  def error(topology, msg), do: Logger.error(prefix(topology, msg))

  defp prefix(topology, msg), do: "[libcluster:#{topology}] #{msg}"
end
