defmodule HyParView.Cluster.BroadcastAcceptanceTest do
  # 24 real nodes on the HyParView strategy, HyParView.PubSub on each: every
  # message of 3 origins reaches every node exactly once, in per-origin
  # order; after kill -9 of a third of the nodes, every survivor receives
  # every message sent once the failures were detected, and of the messages
  # in flight at the kill none is duplicated or reordered, and each one a
  # survivor misses is reported as a skipped gap (HyParView.PubSub moduledoc).
  use HyParView.MultinodeCase, async: false

  alias HyParView.PubSubProbe

  @nodes 24
  @origins [1, 2, 3]
  @killed [4, 7, 10, 13, 16, 19, 22, 24]
  @topology :hyparview_local_cluster
  @stable 200
  @wait 60_000

  defp peers(cluster), do: Map.new(GenServer.call(cluster, :members))

  defp call(peers, i, fun, args \\ []),
    do: :peer.call(Map.fetch!(peers, i), PubSubProbe, fun, args, 20_000)

  # The seqs of `origin` a node's recorder got, in arrival order.
  defp seqs(received, origin), do: for({:m, ^origin, seq} <- received, do: seq)

  defp wait!(what, fun, timeout \\ @wait) do
    case LocalCluster.wait_until(
           fn -> if fun.(), do: {:ok, true}, else: :not_yet end,
           timeout,
           200
         ) do
      {:ok, _, ms} -> ms
      {:error, _} -> flunk("#{what} did not happen within #{timeout} ms")
    end
  end

  test "24 nodes with HyParView.PubSub: exactly once in order, then kill -9 of a third" do
    cluster = start_cluster()
    boot!(cluster, 1..@nodes)
    {_snaps, ms} = assert_partial_mesh(cluster, 60_000)
    note("#{@nodes} nodes converged in #{ms} ms")
    peers = peers(cluster)

    for i <- 1..@nodes, do: assert(call(peers, i, :start, [@topology]) == :ok)

    wait!("every adapter subscribing", fn ->
      Enum.all?(1..@nodes, &call(peers, &1, :ready?, [@topology]))
    end)

    # Warm-up: until every node has received one from each origin (so every
    # adapter is subscribed); these are not counted below.
    wait!("every node hearing each origin", fn ->
      for o <- @origins, do: :ok = call(peers, o, :warm, [o])

      Enum.all?(1..@nodes, fn i ->
        received = call(peers, i, :received)
        Enum.all?(@origins, &({:warm, &1} in received))
      end)
    end)

    # Phase 1: stable overlay.
    for o <- @origins, do: :ok = call(peers, o, :stream, [o, 1..@stable, 5])

    ms =
      wait!("every node receiving all #{@stable * 3}", fn ->
        Enum.all?(1..@nodes, fn i ->
          received = call(peers, i, :received)
          Enum.all?(@origins, &(length(seqs(received, &1)) >= @stable))
        end)
      end)

    note("#{@stable} x #{length(@origins)} messages everywhere #{ms} ms after the streams began")

    for i <- 1..@nodes do
      received = call(peers, i, :received)

      for o <- @origins do
        assert seqs(received, o) == Enum.to_list(1..@stable),
               "node #{i}, origin #{o}: not exactly once in order"
      end
    end

    gaps_before =
      Map.new(1..@nodes, &{&1, call(peers, &1, :counters, [@topology]).broadcasts_gap_skipped})

    # Phase 2: the origins keep broadcasting (every 20 ms for ~12 s) while a
    # third of the nodes is killed with SIGKILL.
    stream = (@stable + 1)..(@stable + 600)
    for o <- @origins, do: :ok = call(peers, o, :stream, [o, stream, 20])
    Process.sleep(1_000)
    killed_at = System.os_time(:millisecond)
    :ok = LocalCluster.kill(cluster, @killed)
    survivors = Enum.to_list(1..@nodes) -- @killed

    # Every survivor's views are free of the dead and links repaired: each
    # survivor has detected its neighbours' failures by then.
    {_snaps, ms} = assert_partial_mesh(cluster, 30_000)
    detected_at = System.os_time(:millisecond)
    note("failures detected and overlay repaired #{ms} ms after the kill")

    sent =
      for o <- @origins, into: %{} do
        wait!("origin #{o} finishing", fn -> match?({:done, _}, call(peers, o, :sent, [o])) end)

        {:done, times} = call(peers, o, :sent, [o])
        {o, times}
      end

    after_detection =
      Map.new(sent, fn {o, times} -> {o, for({seq, at} <- times, at > detected_at, do: seq)} end)

    assert Enum.all?(after_detection, fn {_o, seqs} -> length(seqs) > 20 end),
           "the streams ended before the failures were detected; nothing to check"

    # Every message sent after detection reaches every survivor (allowing
    # gap_timeout for grafts to complete).
    last = Enum.max(stream)

    wait!("every survivor receiving every message sent after detection", fn ->
      Enum.all?(survivors, fn i ->
        received = call(peers, i, :received)

        Enum.all?(@origins, fn o ->
          got = MapSet.new(seqs(received, o))
          Enum.all?(after_detection[o], &MapSet.member?(got, &1))
        end)
      end)
    end)

    missing_total =
      for i <- survivors, reduce: 0 do
        acc ->
          received = call(peers, i, :received)

          missing =
            for o <- @origins, reduce: 0 do
              m ->
                got = seqs(received, o)
                # Never duplicated, never reordered.
                assert got == Enum.sort(Enum.uniq(got)), "node #{i}, origin #{o}: dup or reorder"
                assert List.last(got) == last
                m + (last - length(got))
            end

          # Each message a survivor never got is reported as skipped.
          gaps = call(peers, i, :counters, [@topology]).broadcasts_gap_skipped - gaps_before[i]
          assert gaps == missing, "node #{i}: #{missing} missing, #{gaps} reported skipped"
          acc + missing
      end

    in_flight =
      Enum.sum(
        for {_o, times} <- sent, {_seq, at} <- times, at >= killed_at and at <= detected_at, do: 1
      )

    note(
      "#{in_flight} messages sent between the kill and detection; " <>
        "#{missing_total} deliveries missed (all reported as skipped gaps)"
    )
  end
end
