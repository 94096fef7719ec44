defmodule HyParView.BroadcastTest do
  # HyParView.broadcast/2 and broadcast subscriptions on real servers in one
  # VM (loopback), and HyParView.PubSub unchanged on top of them.
  use ExUnit.Case, async: false

  import HyParView.TestSupport

  @wait 10_000

  # A line of three servers (a <- b <- c joins), each fully joined.
  defp start_three(prefix, extra \\ []) do
    a = start_server(node_id(prefix, 0), extra)
    pa = HyParView.local_peer(a)
    b = start_server(node_id(prefix, 1), Keyword.put(extra, :contacts, [pa]))
    c = start_server(node_id(prefix, 2), Keyword.put(extra, :contacts, [pa]))

    for s <- [a, b, c] do
      eventually(fn -> length(HyParView.active_view(s)) == 2 end, @wait, "overlay of three")
    end

    {a, b, c}
  end

  defp receive_broadcasts(n, acc \\ []) do
    if n == 0 do
      Enum.reverse(acc)
    else
      receive do
        {:hyparview, {:broadcast, origin, payload}} ->
          receive_broadcasts(n - 1, [{origin, payload} | acc])
      after
        @wait -> flunk("only #{length(acc)} broadcasts arrived: #{inspect(Enum.reverse(acc))}")
      end
    end
  end

  # A process that subscribes to `server` with `opts` and hands back what it got.
  defp collector(server, opts) do
    me = self()

    pid =
      spawn_link(fn ->
        :ok = HyParView.subscribe(server, self(), opts)
        send(me, {:ready, self()})
        collect([])
      end)

    assert_receive {:ready, ^pid}, @wait
    pid
  end

  defp collect(acc) do
    receive do
      {:report, to} -> send(to, {:report, self(), Enum.reverse(acc)})
      {:hyparview, {:broadcast, _, _} = b} -> collect([b | acc])
      {:hyparview, _membership} -> collect(acc)
    end
  end

  defp report(pid) do
    send(pid, {:report, self()})
    assert_receive {:report, ^pid, got}, @wait
    got
  end

  test "broadcast subscribers receive every other node's broadcasts in order; others none" do
    {a, b, c} = start_three("bc_order")
    on_a = collector(a, broadcasts: true)
    on_b = collector(b, broadcasts: true)
    membership_only = collector(a, replay: true)
    on_origin = collector(c, broadcasts: true)

    for i <- 1..50, do: :ok = HyParView.broadcast(c, "c#{i}")

    for s <- [a, b] do
      eventually(fn -> HyParView.info(s).counters.broadcasts_delivered == 50 end, @wait)
    end

    # The origin's id atom exists here (this test made it), so it is an atom.
    origin = node_id("bc_order", 2)
    want = for i <- 1..50, do: {:broadcast, origin, "c#{i}"}
    assert report(on_a) == want
    assert report(on_b) == want
    assert report(membership_only) == []
    # The origin does not receive its own.
    assert report(on_origin) == []
    eventually(fn -> HyParView.info(c).counters.broadcasts_sent == 50 end, @wait)
    assert HyParView.info(c).counters.broadcasts_delivered == 0
  end

  test "per-subscriber order: one subscriber sees one origin's broadcasts in order" do
    {a, _b, c} = start_three("bc_fifo")
    :ok = HyParView.subscribe(a, self(), broadcasts: true)
    for i <- 1..200, do: :ok = HyParView.broadcast(c, <<i::32>>)
    got = receive_broadcasts(200)
    assert Enum.map(got, fn {_, <<i::32>>} -> i end) == Enum.to_list(1..200)
  end

  test "an unknown origin arrives as a string; no atom is minted" do
    suffix = System.unique_integer([:positive])
    a = start_server(node_id("bc_str", 0))
    # The peer's id atom is made here only through Peer.new; the id string
    # we check is what a delivery would carry for an origin with no atom.
    b = start_server(node_id("bc_str", 1), contacts: [HyParView.local_peer(a)])
    eventually(fn -> HyParView.active_view(b) != [] end, @wait)
    :ok = HyParView.subscribe(a, self(), broadcasts: true)
    unknown = "nobody#{suffix}@127.0.0.1"
    send(a, {:hyparview_nif, :broadcast, unknown, "x"})
    assert_receive {:hyparview, {:broadcast, ^unknown, "x"}}, @wait
    assert_raise ArgumentError, fn -> String.to_existing_atom(unknown) end
  end

  test ":ok with no peers, :too_large over max_broadcast_size" do
    a = start_server(node_id("bc_alone", 0), config: fast_config(max_broadcast_size: 1_000))
    assert HyParView.broadcast(a, "hello") == :ok
    assert HyParView.broadcast(a, :binary.copy("x", 1_001)) == {:error, :too_large}
    eventually(fn -> HyParView.info(a).counters.broadcasts_sent == 1 end, @wait)
  end

  test "bad broadcast config names the key" do
    assert_raise ArgumentError, ~r/gap_timeout/, fn ->
      HyParView.Config.new(gap_timeout: 1_000, graft_timeout: 1_000)
    end

    assert_raise ArgumentError, ~r/broadcast_queue_bytes/, fn ->
      HyParView.Config.new(broadcast_queue_bytes: 10, max_broadcast_size: 100)
    end
  end

  defp relay(to, i) do
    receive do
      msg -> send(to, {:got, i, msg})
    end

    relay(to, i)
  end

  test "HyParView.PubSub works unchanged over real servers" do
    {:ok, _} = Application.ensure_all_started(:phoenix_pubsub)
    uniq = System.unique_integer([:positive])

    nodes =
      for i <- 0..2 do
        topology = :"bc_pubsub_topo_#{uniq}_#{i}"
        %{i: i, topology: topology, pubsub: :"bc_pubsub_#{uniq}_#{i}"}
      end

    [first | _] = nodes
    name0 = Cluster.Strategy.HyParView.server_name(first.topology)
    s0 = start_server(node_id("bc_ps#{uniq}_", 0), name: name0)

    for n <- tl(nodes) do
      start_server(node_id("bc_ps#{uniq}_", n.i),
        name: Cluster.Strategy.HyParView.server_name(n.topology),
        contacts: [HyParView.local_peer(s0)]
      )
    end

    for n <- nodes do
      start_supervised!(
        {Phoenix.PubSub,
         name: n.pubsub,
         adapter: HyParView.PubSub,
         topology: n.topology,
         node_name: :"ps#{n.i}@bc",
         shared_name: :"bc_shared_#{uniq}"},
        id: n.pubsub
      )
    end

    for n <- nodes do
      eventually(
        fn ->
          length(HyParView.active_view(Cluster.Strategy.HyParView.server(n.topology))) == 2
        end,
        @wait
      )
    end

    me = self()

    listeners =
      for n <- tl(nodes) do
        spawn_link(fn ->
          :ok = Phoenix.PubSub.subscribe(n.pubsub, "topic")
          send(me, {:subscribed, n.i})

          relay(me, n.i)
        end)
      end

    for _ <- listeners, do: assert_receive({:subscribed, _}, @wait)

    # Each adapter subscribes to its server (broadcasts: true) once it finds it.
    for n <- nodes do
      server = Cluster.Strategy.HyParView.server(n.topology)
      eventually(fn -> HyParView.info(server).subscribers >= 1 end, @wait)
    end

    for i <- 1..20, do: :ok = Phoenix.PubSub.broadcast(first.pubsub, "topic", {:m, i})

    for n <- tl(nodes) do
      got =
        for _ <- 1..20,
            do:
              (receive do
                 {:got, i, msg} when i == n.i -> msg
               after
                 @wait -> :missing
               end)

      assert got == Enum.map(1..20, &{:m, &1})
    end

    # direct_broadcast reaches exactly the named node.
    :ok = Phoenix.PubSub.direct_broadcast(:ps2@bc, first.pubsub, "topic", :direct)
    assert_receive {:got, 2, :direct}, @wait
    refute_receive {:got, 1, :direct}, 200
  end
end
