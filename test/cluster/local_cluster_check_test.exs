defmodule HyParView.Cluster.LocalClusterCheckTest do
  # The multi-node assertions are only as good as the checker: it must reject
  # each kind of violation on hand-made snapshots.
  use ExUnit.Case, async: true

  alias HyParView.Dev.LocalCluster

  defp snap(i, links, active \\ nil),
    do: %{
      index: i,
      node: n(i),
      node_list: Enum.map(links, &n/1),
      active_view: Enum.map(active || links, &n/1),
      passive_view: []
    }

  defp n(i), do: :"x#{i}@127.0.0.1"

  # A ring 1-2-3-4-1.
  defp ring, do: [snap(1, [2, 4]), snap(2, [1, 3]), snap(3, [2, 4]), snap(4, [3, 1])]

  test "a connected, bounded mesh whose links equal the active views passes" do
    assert {:ok, snaps} = LocalCluster.check_snapshots(ring(), 2, [])
    assert length(snaps) == 4
    assert LocalCluster.link_count(snaps) == 4
  end

  test "Node.list differing from the active view fails" do
    snaps = List.replace_at(ring(), 0, snap(1, [2, 4], [2]))
    assert {:error, [problem]} = LocalCluster.check_snapshots(snaps, 2, [])
    assert problem =~ "x1@127.0.0.1: Node.list"
  end

  test "more links than active_view_size fails" do
    assert {:error, problems} = LocalCluster.check_snapshots(ring(), 1, [])
    assert Enum.count(problems, &(&1 =~ "links > active_view_size 1")) == 4
  end

  test "a link to a dead node fails" do
    snaps = [snap(1, [2, 9]), snap(2, [1])]
    assert {:error, [problem]} = LocalCluster.check_snapshots(snaps, 5, [n(9)])
    assert problem =~ "still linked to dead"
  end

  test "a link to a node outside the cluster fails" do
    snaps = [snap(1, [2, 7]), snap(2, [1])]
    assert {:error, [problem]} = LocalCluster.check_snapshots(snaps, 5, [])
    assert problem =~ "linked to foreign"
  end

  test "two islands fail" do
    snaps = [snap(1, [2]), snap(2, [1]), snap(3, [4]), snap(4, [3])]
    assert {:error, [problem]} = LocalCluster.check_snapshots(snaps, 5, [])
    assert problem =~ "graph not connected: 2 of 4"
  end

  test "a node that did not answer fails" do
    snaps = [snap(1, [2]), snap(2, [1]), {:error, 3, :timeout}]
    assert {:error, [problem]} = LocalCluster.check_snapshots(snaps, 5, [])
    assert problem =~ "node 3 did not answer"
  end

  test "wait_until returns the value and elapsed time, or the last result at the deadline" do
    assert {:ok, 42, ms} = LocalCluster.wait_until(fn -> {:ok, 42} end, 1_000)
    assert ms < 1_000

    counter = :counters.new(1, [])

    assert {:ok, :ok, _} =
             LocalCluster.wait_until(
               fn ->
                 :counters.add(counter, 1, 1)
                 if :counters.get(counter, 1) >= 3, do: :ok, else: :not_yet
               end,
               5_000,
               10
             )

    t0 = System.monotonic_time(:millisecond)
    assert {:error, {:timeout, :nope}} = LocalCluster.wait_until(fn -> :nope end, 200, 50)
    assert (System.monotonic_time(:millisecond) - t0) in 200..1_000
  end

  test "DOT output has one node line per node and one edge per link" do
    dot = LocalCluster.to_dot(ring())
    assert dot =~ ~r/^graph hyparview \{/
    assert length(Regex.scan(~r/\[label=/, dot)) == 4
    assert length(Regex.scan(~r/ -- /, dot)) == 4
    refute dot =~ "dashed"
    # A one-sided link is drawn dashed.
    assert LocalCluster.to_dot([snap(1, [2]), snap(2, [])]) =~ "style=dashed"
  end
end
