defmodule HyParView.MultinodeCase do
  @moduledoc """
  ExUnit case template for tests that boot real BEAM nodes through
  `HyParView.Dev.LocalCluster`.

  Adds `:multinode` to the module's tags, runs the module synchronously (a
  16-node cluster already keeps two cores busy) and imports the assertions
  below. The cluster is started with `start_cluster/1`, which registers it
  with ExUnit so every node is killed when the test ends, pass or fail.
  """

  use ExUnit.CaseTemplate

  alias HyParView.Dev.LocalCluster

  using do
    quote do
      @moduletag :multinode
      @moduletag timeout: 240_000
      import HyParView.MultinodeCase
      alias HyParView.Dev.LocalCluster
    end
  end

  @doc "Starts a `LocalCluster` owned by the current test (see `LocalCluster.start_link/1`)."
  @spec start_cluster(keyword()) :: pid()
  def start_cluster(opts \\ []) do
    # HPV_NODE_LOG_LEVEL=info shows every connect/disconnect inside the nodes.
    opts = Keyword.put_new(opts, :log_level, node_log_level())

    # A unique child id, so a test may run more than one cluster.
    start_supervised!(%{
      id: make_ref(),
      start: {LocalCluster, :start_link, [opts]},
      shutdown: 60_000
    })
  end

  @doc """
  Boots `indexes` and fails the test with the reason if any node did not come up.
  """
  @spec boot!(pid(), Enumerable.t(), keyword()) :: [node()]
  def boot!(cluster, indexes, opts \\ []) do
    case LocalCluster.boot(cluster, indexes, opts) do
      {:ok, nodes} ->
        nodes

      {:error, reason} ->
        flunk("booting #{inspect(indexes)} failed: #{inspect(reason, pretty: true)}")
    end
  end

  @doc """
  Waits (polling, at most `timeout_ms`) until `LocalCluster.check/1` passes
  on the running nodes: `Node.list/0` equals the active view everywhere,
  at most `active_view_size` links each, the link graph is connected and no
  node links to a dead one. Returns `{snapshots, elapsed_ms}`; on timeout
  fails with the problems of the last attempt.
  """
  @spec assert_partial_mesh(pid(), non_neg_integer()) :: {[map()], non_neg_integer()}
  def assert_partial_mesh(cluster, timeout_ms) do
    case LocalCluster.wait_until(fn -> LocalCluster.check(cluster) end, timeout_ms, 200) do
      {:ok, snaps, ms} ->
        {snaps, ms}

      {:error, {:timeout, last}} ->
        flunk("""
        partial-mesh properties did not hold within #{timeout_ms} ms; last check:
        #{format_problems(last)}
        views now:
        #{LocalCluster.describe(LocalCluster.snapshot(cluster))}
        """)
    end
  end

  defp format_problems({:error, problems}) when is_list(problems),
    do: Enum.map_join(problems, "\n", &("  - " <> &1))

  defp format_problems(other), do: inspect(other, pretty: true)

  defp node_log_level do
    case System.get_env("HPV_NODE_LOG_LEVEL") do
      level when level in ~w(debug info notice warning error) -> String.to_atom(level)
      _ -> :error
    end
  end

  @doc "Prints one line to stdout when `HPV_TEST_VERBOSE` is set (timings of the scenario)."
  @spec note(String.t()) :: :ok
  def note(line) do
    if System.get_env("HPV_TEST_VERBOSE"), do: IO.puts("[multinode] " <> line)
    :ok
  end
end
