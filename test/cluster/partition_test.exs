defmodule HyParView.Cluster.PartitionTest do
  # 8 real nodes split over two network namespaces joined by one veth pair.
  # Cutting the link must leave two partial meshes (no link across, each
  # connected); restoring it must merge them into one again. Needs root and
  # `ip netns`; skipped otherwise.
  use HyParView.MultinodeCase, async: false

  alias HyParView.Test.Netns

  @side_a 1..4
  @side_b 5..8

  unless Netns.available?() do
    @moduletag skip: "needs root and `ip netns` (network namespaces)"
  end

  test "a partition leaves two partial meshes that merge again after healing" do
    net = Netns.setup!()
    on_exit(fn -> Netns.teardown(net) end)

    placement = fn i -> if i in @side_a, do: {net.ns_a, net.ip_a}, else: {net.ns_b, net.ip_b} end
    # One contact on each side, so both sides start from someone reachable.
    cluster = start_cluster(placement: placement, contacts: [1, 5])

    boot!(cluster, Enum.concat(@side_a, @side_b))
    {snaps, ms} = assert_partial_mesh(cluster, 30_000)
    note("8 nodes over 2 namespaces converged in #{ms} ms")
    assert crossing_links(snaps) != []

    # Partitions hit aged overlays. Right after the first convergence the
    # passive views are still nearly empty, and a side can split for good
    # (native/hyparview/tests/cold_split.rs). Let Shuffles spread the membership first: every
    # node must know (actively or passively) every node of its own side.
    {:ok, _, ms} =
      LocalCluster.wait_until(fn -> knows_own_side?(LocalCluster.snapshot(cluster)) end, 30_000)
      |> case do
        {:ok, _, _} = ok ->
          ok

        {:error, _} ->
          flunk("""
          passive views never covered each side; views now:
          #{LocalCluster.describe(LocalCluster.snapshot(cluster))}
          """)
      end

    note("every node knew its own side #{ms} ms later")

    :ok = Netns.partition!(net)

    {:ok, _, ms} =
      LocalCluster.wait_until(
        fn ->
          with {:ok, _} <- LocalCluster.check(cluster, @side_a),
               {:ok, _} <- LocalCluster.check(cluster, @side_b),
               do: :ok
        end,
        30_000,
        200
      )
      |> case do
        {:ok, _, _} = ok ->
          ok

        {:error, {:timeout, last}} ->
          flunk("""
          sides did not settle apart: #{inspect(last, pretty: true)}
          views now:
          #{LocalCluster.describe(LocalCluster.snapshot(cluster))}
          """)
      end

    note("partitioned sides settled in #{ms} ms")

    :ok = Netns.heal!(net)
    {snaps, ms} = assert_partial_mesh(cluster, 60_000)
    note("healed overlay merged in #{ms} ms")
    assert crossing_links(snaps) != []
  end

  defp knows_own_side?(snaps) do
    Enum.all?(snaps, fn
      %{} = s ->
        side = if s.index in @side_a, do: @side_a, else: @side_b
        own = for i <- side, i != s.index, do: Enum.find(snaps, &(is_map(&1) and &1.index == i))
        known = MapSet.new(s.active_view ++ s.passive_view)
        Enum.all?(own, &(is_map(&1) and MapSet.member?(known, &1.node)))

      _ ->
        false
    end)
  end

  defp crossing_links(snaps) do
    side = Map.new(snaps, &{&1.node, &1.index in @side_a})
    for s <- snaps, n <- s.node_list, side[n] != side[s.node], do: {s.node, n}
  end
end
