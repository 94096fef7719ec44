defmodule HyParView.Cluster.MultinodeTest do
  # Real BEAM nodes (OTP :peer), real TCP on 127.0.0.1, the real NIF and the
  # real strategy: each node's Erlang-distribution links must be exactly its
  # HyParView active view, bounded, and together form one connected graph.
  use HyParView.MultinodeCase, async: false

  @nodes 16
  @killed [1, 4, 7, 10, 13]
  @restarted 1

  test "16 nodes form a bounded connected partial mesh, survive kill -9 of 5, take a restarted node back" do
    cluster = start_cluster()
    avs = LocalCluster.active_view_size(cluster)

    nodes = boot!(cluster, 1..@nodes)
    {snaps, ms} = assert_partial_mesh(cluster, 30_000)
    note("#{@nodes} nodes converged in #{ms} ms, #{LocalCluster.link_count(snaps)} links")

    assert length(snaps) == @nodes
    assert Enum.sort(Enum.map(snaps, & &1.node)) == Enum.sort(nodes)
    # A partial mesh, not a full one: far fewer links than N(N-1)/2.
    assert LocalCluster.link_count(snaps) <= div(@nodes * avs, 2)
    assert LocalCluster.link_count(snaps) < div(@nodes * (@nodes - 1), 2)

    # Repair draws on the passive views, which Shuffles fill in the first
    # seconds; kill only once each node knows 2 * active_view_size others.
    {:ok, _, ms} =
      LocalCluster.wait_until(fn -> LocalCluster.check_known(cluster, 2 * avs) end, 30_000)

    note("passive views filled #{ms} ms later")

    dead = Enum.map(@killed, &LocalCluster.node_name(cluster, &1))
    assert :ok = LocalCluster.kill(cluster, @killed)
    assert LocalCluster.running(cluster) == Enum.to_list(1..@nodes) -- @killed
    assert Enum.sort(LocalCluster.dead_nodes(cluster)) == Enum.sort(dead)

    {snaps, ms} = assert_partial_mesh(cluster, 30_000)
    note("repaired after kill -9 of #{length(@killed)} in #{ms} ms")
    assert length(snaps) == @nodes - length(@killed)

    for s <- snaps do
      assert s.node_list -- dead == s.node_list, "#{s.node} still links to a dead node"
      assert s.active_view -- dead == s.active_view, "#{s.node} keeps a dead node active"
    end

    # Same name, same HyParView port, new incarnation.
    [restarted] = boot!(cluster, [@restarted])
    {snaps, ms} = assert_partial_mesh(cluster, 30_000)
    note("restarted #{restarted} rejoined in #{ms} ms")

    assert length(snaps) == @nodes - length(@killed) + 1
    me = Enum.find(snaps, &(&1.node == restarted))
    assert me.node_list != [], "restarted node has no links"
    # Links are symmetric: whoever the restarted node lists lists it back.
    for s <- snaps, s.node in me.node_list, do: assert(restarted in s.node_list)
  end

  test "a node whose contacts are all down at boot joins once one comes up" do
    cluster = start_cluster(contacts: [1])

    # Node 2's only contact (node 1) is not running: it must boot alone...
    [lonely] = boot!(cluster, [2])
    assert [%{node: ^lonely, node_list: [], active_view: []}] = LocalCluster.snapshot(cluster)

    # ...and join by itself once the contact is up. Node 1 gets no contacts,
    # so the link can only come from node 2's rejoin attempts.
    [contact] = boot!(cluster, [1], contacts: [])
    {snaps, ms} = assert_partial_mesh(cluster, 20_000)
    note("isolated node joined #{ms} ms after its contact came up")

    assert Enum.sort_by(snaps, & &1.index) |> Enum.map(&{&1.node, &1.node_list}) ==
             [{contact, [lonely]}, {lonely, [contact]}]

    # A third node joins through the node that once had nobody.
    [third] = boot!(cluster, [3], contacts: [2])
    {snaps, _ms} = assert_partial_mesh(cluster, 20_000)
    assert Enum.find(snaps, &(&1.node == third)).node_list != []
  end
end
