defmodule HyParView.Cluster.StrategyRestartTest do
  # A strategy that crashes is restarted by Cluster.Supervisor; the new run
  # must start its own server (the previous one is still shutting down when
  # the supervisor restarts it) and the node must rejoin the partial mesh.
  use HyParView.MultinodeCase, async: false

  @strategy_name Module.concat(Cluster.Strategy.HyParView, :hyparview_local_cluster)

  test "a killed strategy is restarted and its node rejoins the partial mesh" do
    cluster = start_cluster(contacts: [1, 2])
    boot!(cluster, 1..8)
    assert_partial_mesh(cluster, 20_000)

    old = LocalCluster.call(cluster, 5, Process, :whereis, [@strategy_name])
    assert is_pid(old)
    true = LocalCluster.call(cluster, 5, Process, :exit, [old, :kill])

    {snaps, _ms} = assert_partial_mesh(cluster, 20_000)
    new = LocalCluster.call(cluster, 5, Process, :whereis, [@strategy_name])
    assert is_pid(new) and new != old

    node5 = Enum.find(snaps, &(&1.index == 5))
    assert node5.active_view != []
  end
end
