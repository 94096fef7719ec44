defmodule HyParView.Cluster.StrictLinksTest do
  # The strategy is strict: on every node, through joins, kill -9 and
  # restarts, `Node.list()` holds more than active_view_size links (the
  # controlling VM is not in the mesh, so every link is the strategy's) only
  # for moments shorter than the 50 ms sampling interval, followed exactly
  # through every :nodeup/:nodedown (see assert_within_bound/5), and,
  # sampled every 50 ms, equals the active view within 300 ms of each view
  # change.
  use HyParView.MultinodeCase, async: false

  alias HyParView.LinkSampler

  @topology :hyparview_local_cluster
  @interval 50
  @max_lag 300
  # Largest share of a node's sampled time its sampler may have stalled
  # (64 VMs on 2 cores stall it for ~10 %). Stalls are left out of the lags
  # (the strategy next to the sampler did not run either), and the bound is
  # checked through them too: the sampler follows every :nodeup/:nodedown.
  @max_stalled 0.25

  test "20 nodes: Node.list() stays within active_view_size and follows the active view" do
    cluster = start_cluster()
    avs = LocalCluster.active_view_size(cluster)

    # Joins: 12 nodes, then 8 more while the first ones are sampled.
    boot_sampled!(cluster, 1..12)
    assert_partial_mesh(cluster, 30_000)
    boot_sampled!(cluster, 13..20)
    assert_partial_mesh(cluster, 30_000)

    {:ok, _, _} =
      LocalCluster.wait_until(fn -> LocalCluster.check_known(cluster, 2 * avs) end, 30_000)

    # Kill -9 of a quarter, then restart two of them.
    killed = [2, 6, 9, 14, 17]
    dead = Enum.map(killed, &LocalCluster.node_name(cluster, &1))
    kill_t = System.os_time(:millisecond)
    assert :ok = LocalCluster.kill(cluster, killed)
    {_, ms} = assert_partial_mesh(cluster, 30_000)
    note("20 nodes: repaired after kill -9 of 5 in #{ms} ms")

    restart_t = System.os_time(:millisecond)
    boot_sampled!(cluster, [6, 14])
    assert_partial_mesh(cluster, 30_000)
    # Restarted nodes are alive again: compared normally from their restart on.
    restarted = Enum.map([6, 14], &LocalCluster.node_name(cluster, &1))

    gone_at = fn
      t when t < kill_t -> []
      t when t < restart_t -> dead
      _ -> dead -- restarted
    end

    # Let the last view changes play out under the sampler.
    Process.sleep(1_000)

    results = collect(cluster)
    assert length(results) == 17
    end_t = System.os_time(:millisecond)

    verdicts =
      for {node, {samples, count, stalls, peak}} <- results do
        {node, count, LinkSampler.stalled_share(samples, stalls, end_t),
         LinkSampler.judge(samples, end_t, gone_at, stalls), peak}
      end

    report(verdicts)

    for {node, count, stalled, v, peak} <- verdicts do
      assert count >= 10, "#{node}: only #{count} samples"
      # A sampler that hardly ran proves nothing (its stalls are left out
      # of the lags: the strategy next to it did not run either).
      assert stalled <= @max_stalled,
             "#{node}: sampler stalled #{round(stalled * 100)} % of the time"

      assert_within_bound(node, v, peak, avs, results)

      assert v.max_lag <= @max_lag,
             "#{node}: Node.list() differed from the active view for #{v.max_lag} ms " <>
               "after a view change (#{inspect(v.worst)})"
    end
  end

  @tag :heavy
  @tag timeout: 600_000
  test "64 nodes, kill -9 of 25 %: Node.list() = active view everywhere within 1 s" do
    cluster = start_cluster()
    avs = LocalCluster.active_view_size(cluster)
    boot_sampled!(cluster, 1..64)
    assert_partial_mesh(cluster, 120_000)

    {:ok, _, _} =
      LocalCluster.wait_until(fn -> LocalCluster.check_known(cluster, 2 * avs) end, 60_000)

    killed = Enum.take_every(1..64, 4)
    dead = Enum.map(killed, &LocalCluster.node_name(cluster, &1))
    kill_t = System.os_time(:millisecond)
    assert :ok = LocalCluster.kill(cluster, killed)
    {_, ms} = assert_partial_mesh(cluster, 60_000)
    Process.sleep(1_000)

    results = collect(cluster)
    end_t = System.os_time(:millisecond)

    verdicts =
      for {node, {samples, count, stalls, peak}} <- results do
        gone_at = fn t -> if t < kill_t, do: [], else: dead end

        {node, count, LinkSampler.stalled_share(samples, stalls, end_t),
         LinkSampler.judge(samples, end_t, gone_at, stalls), peak}
      end

    report(verdicts)

    repair =
      for {node, {samples, _, _, _}} <- results do
        settled = LinkSampler.settled_at(samples, dead)
        assert settled, "#{node} never settled"
        max(settled - kill_t, 0)
      end
      |> Enum.max()

    note(
      "64 nodes: kill -9 of 16: check passed after #{ms} ms, Node.list() settled in #{repair} ms"
    )

    for {node, _count, stalled, v, peak} <- verdicts do
      assert stalled <= @max_stalled,
             "#{node}: sampler stalled #{round(stalled * 100)} % of the time"

      assert_within_bound(node, v, peak, avs, results)

      assert v.max_lag <= @max_lag, "#{node}: lag #{v.max_lag} ms (#{inspect(v.worst)})"
    end

    assert repair <= 1_000,
           "Node.list() = active view everywhere only #{repair} ms after the kill"
  end

  defp boot_sampled!(cluster, indexes) do
    nodes = boot!(cluster, indexes)
    members = Map.new(GenServer.call(cluster, :members))
    avs = LocalCluster.active_view_size(cluster)

    for i <- indexes do
      :ok = :peer.call(members[i], LinkSampler, :start, [@topology, @interval, avs])
    end

    nodes
  end

  defp collect(cluster) do
    for {i, peer} <- GenServer.call(cluster, :members) do
      {LocalCluster.node_name(cluster, i), :peer.call(peer, LinkSampler, :collect, [], 10_000)}
    end
  end

  # More than `avs` links only for moments the strategy ends at once, never
  # for a sampling interval: distribution cannot refuse a connection, so a
  # link can come in before the strategy ran (a peer whose overlay has not
  # yet heard that we dropped it; a connect that arrived before our
  # eviction's peer_down was handled). The sampler followed every
  # :nodeup/:nodedown, so the longest such moment is exact (up to 28 ms
  # seen with 20 VMs and a CPU hog on 2 cores).
  defp assert_within_bound(node, verdict, {most, at, nodes, longest_us}, avs, results) do
    assert longest_us < @interval * 1_000,
           "#{node} held more than #{avs} links for #{div(longest_us, 1_000)} ms " <>
             "(at most #{most}, at #{at}: #{inspect(nodes)}; in the samples: " <>
             "#{inspect(over_bound(results, node, avs), limit: :infinity)}, " <>
             "#{verdict.max_links} links at most)"
  end

  # The first sample of `node` with more than `avs` links, with the one
  # before it: {t, Node.list(), active view}.
  defp over_bound(results, node, avs) do
    {samples, _, _, _} = Map.new(results)[node]

    samples
    |> Enum.chunk_every(2, 1, [nil])
    |> Enum.find(fn
      [_, {_, list, _} | _] -> length(list) > avs
      _ -> false
    end)
  end

  defp report(verdicts) do
    lags = Enum.map(verdicts, fn {_, _, _, v, _} -> v.max_lag end)
    links = Enum.map(verdicts, fn {_, _, _, v, _} -> v.max_links end)
    peaks = Enum.map(verdicts, fn {_, _, _, _, {most, _, _, _}} -> most end)
    overs = Enum.map(verdicts, fn {_, _, _, _, {_, _, _, us}} -> us end)
    stalled = Enum.map(verdicts, fn {_, _, share, _, _} -> share end)
    episodes = Enum.sum(Enum.map(verdicts, fn {_, _, _, v, _} -> v.episodes end))
    {worst_node, _, _, worst, _} = Enum.max_by(verdicts, fn {_, _, _, v, _} -> v.max_lag end)
    note("slowest: #{worst_node} #{worst.max_lag} ms from #{inspect(worst.worst)}")

    note(
      "#{length(verdicts)} nodes: max links #{Enum.max(links)} (samples), " <>
        "#{Enum.max(peaks)} (every nodeup; longest over the bound " <>
        "#{Float.round(Enum.max(overs) / 1000, 2)} ms), " <>
        "#{episodes} mismatch stretches, " <>
        "max lag #{Enum.max(lags)} ms, most stalled #{Float.round(Enum.max(stalled) * 100, 1)} %"
    )
  end
end
