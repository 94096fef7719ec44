defmodule HyParView.Cluster.RolloutTest do
  # Issue 12: a fleet whose strategies all start at the same moment through
  # the same two contacts (a Kubernetes rollout) must form one overlay. The
  # VMs boot first; then every strategy starts at once. Timers are the
  # library defaults divided by 5, every ratio kept (shuffle : promotion
  # 1 : 3, heartbeat : failure timeout 1 : 5); neighbor, connect and
  # handshake timeouts stay at their defaults, which are slower than the
  # ratio asks, so nothing runs faster than the defaults' proportions.
  use HyParView.MultinodeCase, async: false

  @nodes 48
  @config [
    active_view_size: 5,
    passive_view_size: 30,
    shuffle_interval: 2_000,
    promotion_interval: 6_000,
    heartbeat_interval: 200,
    failure_timeout: 1_000,
    rejoin_backoff_min: 100,
    rejoin_backoff_max: 6_000,
    neighbor_timeout: 2_000,
    connect_timeout: 2_000,
    handshake_timeout: 2_000
  ]
  # The crossing schedule's dense phase spans 10 shuffle intervals after the
  # start; one overlay must come within it.
  @deadline_ms 20_000

  test "48 strategies started at once through the same 2 contacts form one overlay" do
    cluster = start_cluster(hyparview_config: @config, contacts: [1, 2])
    nodes = boot!(cluster, 1..@nodes, defer_start: true)
    assert length(nodes) == @nodes

    assert {:ok, spread_ms} = LocalCluster.start_strategies(cluster)
    {snaps, ms} = assert_partial_mesh(cluster, @deadline_ms)
    note("#{@nodes} nodes started within #{spread_ms} ms, one overlay after #{ms} ms")

    assert length(snaps) == @nodes
    for s <- snaps, do: assert(Enum.sort(s.node_list) == Enum.sort(s.active_view))
    assert LocalCluster.link_count(snaps) <= div(@nodes * 5, 2)
  end
end
