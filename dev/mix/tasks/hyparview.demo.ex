defmodule Mix.Tasks.Hyparview.Demo do
  @shortdoc "Boots local nodes on the HyParView strategy, kills some, shows the repair"

  @moduledoc """
  Runs a local demonstration of `Cluster.Strategy.HyParView`.

      mix hyparview.demo [--nodes N] [--kill K] [--dot PATH] [--timeout MS]

  1. Boots `N` BEAM nodes (default 12) on `127.0.0.1` with OTP's `:peer`,
     each started with `-connect_all false` and running `Cluster.Supervisor`
     with a HyParView topology (fast demo timings: shuffle every 500 ms,
     heartbeat 200 ms, failure timeout 1.5 s). Nodes 1 and 2 are everyone's
     contacts.
  2. Waits until the overlay has converged: every node's `Node.list/0` equals
     its HyParView active view, no node has more than `active_view_size`
     links, and the graph of all distribution links is connected. Then waits
     until Shuffles have filled the passive views (every node knows at least
     `min(N - 1, 2 * active_view_size)` others), which repair draws on.
  3. Prints a table (node, active view, `Node.list/0` size, passive view
     size) and the number of distribution links against a full mesh's
     `N(N-1)/2`.
  4. Kills `K` random nodes (default `N/4`) with `kill -9`, waits for the
     survivors to satisfy the same properties without any link to a dead
     node, and prints the repaired state and how long the repair took.
  5. Writes the repaired overlay as Graphviz DOT to `PATH` (default
     `hyparview_overlay.dot`; render with `dot -Tsvg PATH -o overlay.svg`).

  Exits with status 1 if a property does not hold within `--timeout` ms
  (default 60000) at either stage. The controlling VM stays outside the
  nodes' distribution mesh, so the numbers are exactly the strategy's.

  Development tooling: compiled from `dev/` in `MIX_ENV=dev` and `test`
  only, not part of the published package.
  """

  use Mix.Task

  alias HyParView.Dev.LocalCluster

  @switches [nodes: :integer, kill: :integer, dot: :string, timeout: :integer]

  @impl Mix.Task
  def run(argv) do
    {opts, rest, invalid} = OptionParser.parse(argv, strict: @switches)

    if invalid != [] or rest != [] do
      Mix.raise(
        "unknown arguments #{inspect(Enum.map(invalid, &elem(&1, 0)) ++ rest)}; " <>
          "usage: mix hyparview.demo [--nodes N] [--kill K] [--dot PATH] [--timeout MS]"
      )
    end

    n = Keyword.get(opts, :nodes, 12)
    k = Keyword.get(opts, :kill, div(n, 4))
    dot = Keyword.get(opts, :dot, "hyparview_overlay.dot")
    timeout = Keyword.get(opts, :timeout, 60_000)

    if n < 2, do: Mix.raise("--nodes must be at least 2")
    if k < 0 or k > n - 2, do: Mix.raise("--kill must be between 0 and nodes - 2 (#{n - 2})")

    # Compiles and puts this build's code on the path; the nodes get the same paths.
    Mix.Task.run("app.config")

    {:ok, cluster} = LocalCluster.start_link([])

    try do
      demo(cluster, n, k, dot, timeout)
    after
      LocalCluster.stop(cluster)
    end
    |> case do
      :ok -> :ok
      :error -> exit({:shutdown, 1})
    end
  end

  defp demo(cluster, n, k, dot, timeout) do
    avs = LocalCluster.active_view_size(cluster)
    say("Booting #{n} nodes on 127.0.0.1 (-connect_all false, active_view_size #{avs}) ...")
    {boot_ms, boot} = timed(fn -> LocalCluster.boot(cluster, 1..n) end)

    with {:ok, _nodes} <- boot,
         say("  booted in #{boot_ms} ms; waiting for the overlay to converge ..."),
         {:ok, _snaps, ms} <- wait(cluster, timeout, "convergence"),
         say("Converged #{ms} ms after the last node booted."),
         {:ok, snaps, _} <- warm_up(cluster, min(n - 1, 2 * avs), timeout) do
      say("")
      print_state(snaps, avs)

      victims = Enum.take_random(1..n, k) |> Enum.sort()
      names = Enum.map(victims, &LocalCluster.short(LocalCluster.node_name(cluster, &1)))
      say("\nkill -9 #{k} node(s): #{Enum.join(names, ", ")}")
      t0 = System.monotonic_time(:millisecond)

      with :ok <- LocalCluster.kill(cluster, victims),
           {:ok, snaps, _} <- wait(cluster, timeout, "repair") do
        repair = System.monotonic_time(:millisecond) - t0

        say(
          "Repaired in #{repair} ms (kill to: every survivor's Node.list = active view, " <>
            "no dead links, connected).\n"
        )

        print_state(snaps, avs)
        File.write!(dot, LocalCluster.to_dot(snaps))
        say("\nOverlay written to #{dot} (render: dot -Tsvg #{dot} -o overlay.svg)")
        say("OK: all properties hold.")
        :ok
      end
    end
    |> case do
      :ok ->
        :ok

      {:error, reason} ->
        say("FAILED: #{inspect(reason, pretty: true)}")
        :error

      :error ->
        :error
    end
  end

  # Repair needs passive views; Shuffles fill them in the first seconds.
  defp warm_up(cluster, known, timeout) do
    case LocalCluster.wait_until(fn -> LocalCluster.check_known(cluster, known) end, timeout, 200) do
      {:ok, _, ms} ->
        say("Passive views filled #{ms} ms later (every node knows >= #{known} others).")
        # The views may have moved meanwhile: show a state that passes the check.
        wait(cluster, timeout, "convergence")

      {:error, {:timeout, last}} ->
        say("FAILED: passive views not filled within #{timeout} ms: #{inspect(last)}")
        :error
    end
  end

  defp wait(cluster, timeout, stage) do
    case LocalCluster.wait_until(fn -> LocalCluster.check(cluster) end, timeout, 200) do
      {:ok, _, _} = ok ->
        ok

      {:error, {:timeout, {:error, problems}}} when is_list(problems) ->
        say("FAILED: no #{stage} within #{timeout} ms; last check:")
        Enum.each(problems, &say("  - " <> &1))
        :error

      {:error, other} ->
        say("FAILED: #{stage}: #{inspect(other)}")
        :error
    end
  end

  defp print_state(snaps, avs) do
    snaps = Enum.sort_by(snaps, & &1.index)

    rows =
      Enum.map(snaps, fn s ->
        [
          LocalCluster.short(s.node),
          s.active_view
          |> Enum.map(&LocalCluster.short/1)
          |> Enum.sort_by(&node_index/1)
          |> Enum.join(" "),
          Integer.to_string(length(s.node_list)),
          Integer.to_string(length(s.passive_view))
        ]
      end)

    header = ["node", "active view", "Node.list size", "passive size"]

    widths =
      Enum.map(0..3, fn c ->
        Enum.max(Enum.map([header | rows], &String.length(Enum.at(&1, c))))
      end)

    line = fn cols ->
      cols
      |> Enum.zip(widths)
      |> Enum.map_join("  ", fn {v, w} -> String.pad_trailing(v, w) end)
      |> String.trim_trailing()
    end

    say(line.(header))
    say(line.(Enum.map(widths, &String.duplicate("-", &1))))
    Enum.each(rows, &say(line.(&1)))

    n = length(snaps)
    links = LocalCluster.link_count(snaps)
    full = div(n * (n - 1), 2)

    say(
      "\n#{n} nodes, #{links} distribution links " <>
        "(full mesh: #{full}; bound n*active_view_size/2 = #{div(n * avs, 2)})"
    )
  end

  defp node_index(short) do
    case Integer.parse(String.trim_leading(short, "n")) do
      {i, ""} -> i
      _ -> 0
    end
  end

  defp timed(fun) do
    t0 = System.monotonic_time(:millisecond)
    result = fun.()
    {System.monotonic_time(:millisecond) - t0, result}
  end

  defp say(line), do: Mix.shell().info(line)
end
