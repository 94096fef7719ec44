defmodule HyParView.PubSubAdapterTest do
  # HyParView.PubSub end to end in one VM: several "nodes", each a Phoenix.PubSub
  # with the adapter and its own fake HyParView server (test/support), the fake
  # servers relaying broadcasts to each other as the overlay would.
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog

  alias HyParView.PubSub.Envelope
  alias Phoenix.PubSub

  @wait 5_000

  defmodule MetaDispatcher do
    # Delivers {metadata, message}: shows the dispatcher and the subscription
    # metadata both made it across.
    def dispatch(entries, _from, message) do
      for {pid, metadata} <- entries, do: send(pid, {metadata, message})
      :ok
    end
  end

  defmodule RaisingDispatcher do
    def dispatch(_entries, _from, _message), do: raise("dispatcher bug")
  end

  setup_all do
    {:ok, _} = Application.ensure_all_started(:phoenix_pubsub)
    :ok
  end

  setup do
    uniq = System.unique_integer([:positive])
    network = start_supervised!(FakeHyParView.Network)
    {:ok, uniq: uniq, network: network}
  end

  ## Helpers

  # Node `i`: its fake server (unless `server: false`) and its PubSub.
  defp start_node(ctx, i, opts \\ []) do
    node = %{
      i: i,
      pubsub: :"hpv_pubsub_test_#{ctx.uniq}_#{i}",
      topology: :"hpv_pubsub_topo_#{ctx.uniq}_#{i}",
      node_name: :"n#{i}@fake",
      network: ctx.network
    }

    server = if Keyword.get(opts, :server, true), do: start_server(node)

    pubsub_opts = [
      name: node.pubsub,
      adapter: HyParView.PubSub,
      topology: node.topology,
      node_name: node.node_name,
      shared_name: Keyword.get(opts, :shared_name, :"hpv_shared_#{ctx.uniq}"),
      server_module: FakeHyParView
    ]

    start_supervised!({PubSub, pubsub_opts}, id: node.pubsub)
    if server, do: wait_until(fn -> FakeHyParView.subscribe_count(server) >= 1 end)
    Map.put(node, :server, server)
  end

  defp start_nodes(ctx, n), do: Enum.map(1..n, &start_node(ctx, &1))

  defp start_server(node, opts \\ []) do
    name = Cluster.Strategy.HyParView.server_name(node.topology)
    opts = [id: node.node_name, network: node.network, name: name] ++ opts
    {:ok, server} = FakeHyParView.start(opts)
    on_exit(fn -> if Process.alive?(server), do: Process.exit(server, :kill) end)
    server
  end

  # A subscriber on `node` that forwards what it receives as {:got, i, message}.
  defp listen(node, topic, opts \\ []) do
    test = self()

    pid =
      spawn_link(fn ->
        :ok = PubSub.subscribe(node.pubsub, topic, opts)
        send(test, {:listening, self()})
        forward(test, node.i)
      end)

    assert_receive {:listening, ^pid}
    pid
  end

  defp forward(test, i) do
    receive do
      message ->
        send(test, {:got, i, message})
        forward(test, i)
    end
  end

  defp wait_until(fun, deadline \\ @wait) do
    started = System.monotonic_time(:millisecond)
    do_wait_until(fun, started + deadline)
  end

  defp do_wait_until(fun, deadline) do
    cond do
      fun.() ->
        :ok

      System.monotonic_time(:millisecond) > deadline ->
        flunk("condition not met in time")

      true ->
        Process.sleep(5)
        do_wait_until(fun, deadline)
    end
  end

  # Everything node `i` got up to (not including) `fence`, in order.
  defp collect_until(i, fence, acc \\ []) do
    receive do
      {:got, ^i, ^fence} -> Enum.reverse(acc)
      {:got, ^i, message} -> collect_until(i, fence, [message | acc])
    after
      @wait -> flunk("node #{i} did not get #{inspect(fence)}; got #{inspect(Enum.reverse(acc))}")
    end
  end

  defp stats(node), do: HyParView.PubSub.stats(node.pubsub)

  ## Broadcast

  test "broadcast reaches every node once, local subscribers through Phoenix.PubSub", ctx do
    [n1, n2, n3] = nodes = start_nodes(ctx, 3)
    Enum.each(nodes, &listen(&1, "room"))

    assert :ok = PubSub.broadcast(n1.pubsub, "room", :hello)
    assert :ok = PubSub.broadcast(n1.pubsub, "room", :fence)

    for node <- nodes, do: assert(collect_until(node.i, :fence) == [:hello])
    refute_receive {:got, _, _}, 50

    assert %{sent: 2, delivered: 0} = stats(n1)
    assert %{sent: 0, delivered: 2} = stats(n2)
    assert %{delivered: 2, decode: 0, not_ready: 0} = stats(n3)
  end

  test "per-origin FIFO: 200 messages from each of two origins arrive in order", ctx do
    [n1, n2, n3] = nodes = start_nodes(ctx, 3)
    Enum.each(nodes, &listen(&1, "seq"))

    origin = fn node ->
      Task.async(fn ->
        for k <- 1..200, do: :ok = PubSub.broadcast(node.pubsub, "seq", {node.i, k})
        :ok = PubSub.broadcast(node.pubsub, "seq", {node.i, :done})
      end)
    end

    Task.await_many([origin.(n1), origin.(n2)])

    got = fn i -> collect_until_both(i, MapSet.new([{1, :done}, {2, :done}]), []) end

    for node <- [n1, n2, n3] do
      messages = got.(node.i)

      for o <- [1, 2] do
        assert for({^o, k} <- messages, do: k) == Enum.to_list(1..200)
      end
    end
  end

  defp collect_until_both(i, fences, acc) do
    if MapSet.size(fences) == 0 do
      Enum.reverse(acc)
    else
      receive do
        {:got, ^i, {_, :done} = fence} -> collect_until_both(i, MapSet.delete(fences, fence), acc)
        {:got, ^i, message} -> collect_until_both(i, fences, [message | acc])
      after
        @wait -> flunk("node #{i} is missing #{inspect(MapSet.to_list(fences))}")
      end
    end
  end

  test "broadcast_from skips the sender on its node only", ctx do
    [n1, n2] = start_nodes(ctx, 2)
    l1 = listen(n1, "t")
    listen(n2, "t")

    assert :ok = PubSub.broadcast_from(n1.pubsub, l1, "t", :not_to_l1)
    assert :ok = PubSub.broadcast(n1.pubsub, "t", :fence)
    assert collect_until(1, :fence) == []
    assert collect_until(2, :fence) == [:not_to_l1]
  end

  test "the dispatcher and subscription metadata work across nodes", ctx do
    [n1, n2] = start_nodes(ctx, 2)
    listen(n2, "t", metadata: :fastlane)

    assert :ok = PubSub.broadcast(n1.pubsub, "t", :m, MetaDispatcher)
    assert_receive {:got, 2, {:fastlane, :m}}, @wait
  end

  test "only PubSubs with the same shared name receive", ctx do
    [n1, n2] = start_nodes(ctx, 2)
    other = start_node(ctx, 3, shared_name: :"other_#{ctx.uniq}")
    listen(n2, "t")
    listen(other, "t")

    :ok = PubSub.broadcast(n1.pubsub, "t", :m)
    :ok = PubSub.broadcast(n1.pubsub, "t", :fence)
    assert collect_until(2, :fence) == [:m]
    wait_until(fn -> stats(other).not_for_us == 2 end)
    refute_received {:got, 3, _}
    assert stats(other).delivered == 0
  end

  ## direct_broadcast

  test "direct_broadcast reaches exactly the named node", ctx do
    [n1, n2, n3] = nodes = start_nodes(ctx, 3)
    Enum.each(nodes, &listen(&1, "t"))

    assert :ok = PubSub.direct_broadcast(n2.node_name, n1.pubsub, "t", :only_n2)
    assert :ok = PubSub.direct_broadcast("n3@fake", n1.pubsub, "t", :only_n3)
    assert :ok = PubSub.broadcast(n1.pubsub, "t", :fence)

    assert collect_until(1, :fence) == []
    assert collect_until(2, :fence) == [:only_n2]
    assert collect_until(3, :fence) == [:only_n3]
    # Each node decoded the other's header only, and dropped it.
    assert %{not_for_us: 1, delivered: 2} = stats(n2)
    assert %{not_for_us: 1, delivered: 2} = stats(n3)
  end

  test "direct_broadcast to the local node delivers locally, through the adapter", ctx do
    [n1, n2] = start_nodes(ctx, 2)
    listen(n1, "t")
    listen(n2, "t")

    assert :ok = PubSub.direct_broadcast(n1.node_name, n1.pubsub, "t", :to_myself)
    assert_receive {:got, 1, :to_myself}, @wait
    assert stats(n1).sent == 0
    :ok = PubSub.broadcast(n1.pubsub, "t", :fence)
    assert collect_until(2, :fence) == []
  end

  test "node_name/1 is the configured name, node() by default", ctx do
    [n1] = start_nodes(ctx, 1)
    assert PubSub.node_name(n1.pubsub) == :n1@fake

    plain = :"hpv_pubsub_plain_#{ctx.uniq}"
    opts = [name: plain, adapter: HyParView.PubSub, topology: :"none_#{ctx.uniq}"]
    start_supervised!({PubSub, opts}, id: plain)
    assert PubSub.node_name(plain) == node()
  end

  ## Server lifecycle

  test "with no server yet: broadcasts are dropped and counted, then flow once it starts",
       ctx do
    n1 = start_node(ctx, 1, server: false)
    n2 = start_node(ctx, 2)
    listen(n1, "t")
    listen(n2, "t")

    # Local subscribers still get it; the other node cannot.
    assert :ok = PubSub.broadcast(n1.pubsub, "t", :early)
    assert_receive {:got, 1, :early}
    assert %{not_ready: 1, sent: 0} = stats(n1)

    server = start_server(n1)
    wait_until(fn -> FakeHyParView.subscribe_count(server) == 1 end)

    :ok = PubSub.broadcast(n1.pubsub, "t", :late)
    assert collect_until(2, :late) == []
    :ok = PubSub.broadcast(n2.pubsub, "t", :to_n1)
    assert_receive {:got, 1, :to_n1}, @wait
  end

  test "a restarted server is found and subscribed to again", ctx do
    [n1, n2] = start_nodes(ctx, 2)
    listen(n1, "t")
    listen(n2, "t")
    adapter = Process.whereis(Module.concat(n2.pubsub, "Adapter"))

    Process.exit(n2.server, :kill)
    wait_until(fn -> Cluster.Strategy.HyParView.server(n2.topology) == nil end)
    assert :ok = PubSub.broadcast(n2.pubsub, "t", :while_down)
    assert stats(n2).not_ready == 1

    server = start_server(n2)
    wait_until(fn -> FakeHyParView.subscribe_count(server) == 1 end)

    :ok = PubSub.broadcast(n1.pubsub, "t", :after_restart)
    assert_receive {:got, 2, :after_restart}, @wait
    :ok = PubSub.broadcast(n2.pubsub, "t", :from_restarted)
    assert_receive {:got, 1, :from_restarted}, @wait
    assert Process.whereis(Module.concat(n2.pubsub, "Adapter")) == adapter
  end

  test "an error from the server is returned, and Phoenix.PubSub skips local delivery", ctx do
    node = %{
      i: 1,
      pubsub: :"hpv_pubsub_test_#{ctx.uniq}_1",
      topology: :"hpv_pubsub_topo_#{ctx.uniq}_1",
      node_name: :n1@fake,
      network: ctx.network
    }

    server = start_server(node, max_broadcast_size: 200)

    start_supervised!(
      {PubSub,
       name: node.pubsub,
       adapter: HyParView.PubSub,
       topology: node.topology,
       server_module: FakeHyParView}
    )

    wait_until(fn -> FakeHyParView.subscribe_count(server) == 1 end)
    listen(node, "t")
    big = :binary.copy("x", 1_000)

    assert {:error, :too_large} = PubSub.broadcast(node.pubsub, "t", big)
    assert_raise PubSub.BroadcastError, fn -> PubSub.broadcast!(node.pubsub, "t", big) end
    refute_receive {:got, 1, _}, 50
    assert :ok = PubSub.broadcast(node.pubsub, "t", :small)
    assert_receive {:got, 1, :small}
  end

  ## Bad input from the network

  test "undecodable payloads are dropped and counted; the adapter keeps working", ctx do
    [n1, n2] = start_nodes(ctx, 2)
    listen(n2, "t")
    adapter = Process.whereis(Module.concat(n2.pubsub, "Adapter"))
    shared = "hpv_shared_#{ctx.uniq}"
    good = Envelope.encode(shared, nil, "t", PubSub, :ok)
    <<prefix::binary-size(12), _::binary>> = good

    bad = [
      "",
      "garbage",
      :binary.copy(<<255>>, 64),
      # Truncated header, truncated body.
      prefix,
      binary_part(good, 0, byte_size(good) - 3),
      # A well-formed envelope whose body is not {dispatcher, message}.
      "HPS" <> <<1>> <> header_of(good) <> :erlang.term_to_binary(:not_a_pair),
      # An atom this VM has never seen (term_to_binary of it, spelled by hand).
      "HPS" <> <<1>> <> header_of(good) <> <<131, 104, 2, 119, 3, "zq9", 119, 2, "ok">>,
      # Not even a binary.
      {:not, :binary}
    ]

    for payload <- bad, do: FakeHyParView.inject(n2.server, :n1@fake, payload)
    wait_until(fn -> stats(n2).decode == length(bad) end)
    refute_received {:got, 2, _}

    :ok = PubSub.broadcast(n1.pubsub, "t", :still_works)
    assert_receive {:got, 2, :still_works}, @wait
    assert Process.whereis(Module.concat(n2.pubsub, "Adapter")) == adapter
  end

  test "a dispatcher missing on the receiver, or one that raises, is dropped and counted",
       ctx do
    [n1, n2] = start_nodes(ctx, 2)
    listen(n2, "t")
    adapter_name = Module.concat(n1.pubsub, "Adapter")

    # Through the adapter directly: n1 has no such dispatcher either.
    assert :ok = HyParView.PubSub.broadcast(adapter_name, "t", :m, NoSuchDispatcherAnywhere)
    assert :ok = HyParView.PubSub.broadcast(adapter_name, "t", :m, :not_a_module)
    assert :ok = HyParView.PubSub.broadcast(adapter_name, "t", :m, NoSuchDispatcherAnywhere)
    wait_until(fn -> stats(n2).unknown_dispatcher == 3 end)

    log =
      capture_log(fn ->
        assert :ok = HyParView.PubSub.broadcast(adapter_name, "t", :m, RaisingDispatcher)
        wait_until(fn -> stats(n2).dispatch_failed == 1 end)
      end)

    assert log =~ "dispatcher bug"
    :ok = PubSub.broadcast(n1.pubsub, "t", :fence)
    assert collect_until(2, :fence) == []
  end

  ## Envelope

  test "the envelope round-trips, and the header decodes without the body" do
    bytes = Envelope.encode("ps", "n2@h", "topic", MetaDispatcher, %{a: [1, "b"]})
    assert {:ok, "ps", "n2@h", "topic", body} = Envelope.decode_header(bytes)
    assert {:ok, MetaDispatcher, %{a: [1, "b"]}} = Envelope.decode_body(body)

    assert {:ok, "ps", nil, "t", _} =
             Envelope.decode_header(Envelope.encode("ps", nil, "t", X, 1))

    # A body that doesn't decode leaves the header decodable: non-targets never look at it.
    assert {:ok, _, _, _, "junk"} = Envelope.decode_header(header_frame(bytes) <> "junk")
    assert :error = Envelope.decode_body("junk")
  end

  test "a header naming things by atom, or of the wrong shape, is rejected" do
    for header <- [{:ps, nil, "t"}, {"ps", :n@h, "t"}, {"ps", nil, :t}, {"ps", nil}, "ps"] do
      header = :erlang.term_to_binary(header)
      bytes = "HPS" <> <<1, byte_size(header)::32>> <> header <> :erlang.term_to_binary({X, 1})
      assert :error = Envelope.decode_header(bytes)
    end

    # Another version.
    <<"HPS", 1, rest::binary>> = Envelope.encode("ps", nil, "t", X, 1)
    assert :error = Envelope.decode_header(<<"HPS", 2, rest::binary>>)
  end

  ## Configuration

  test "bad options raise ArgumentError naming the option" do
    base = [name: :x, adapter_name: :x_adapter]

    assert_raise ArgumentError, ~r/:topology/, fn -> HyParView.PubSub.child_spec(base) end

    assert_raise ArgumentError, ~r/:topology/, fn ->
      HyParView.PubSub.child_spec(base ++ [topology: "hp"])
    end

    assert_raise ArgumentError, ~r/:node_name/, fn ->
      HyParView.PubSub.child_spec(base ++ [topology: :hp, node_name: 42])
    end

    assert_raise ArgumentError, ~r/:shared_name/, fn ->
      HyParView.PubSub.child_spec(base ++ [topology: :hp, shared_name: "s"])
    end

    assert_raise ArgumentError, ~r/:server_module/, fn ->
      HyParView.PubSub.child_spec(base ++ [topology: :hp, server_module: "HyParView"])
    end

    assert %{id: :x_adapter} = HyParView.PubSub.child_spec(base ++ [topology: :hp])
  end

  # Magic, version and header of an envelope, without the body.
  defp header_frame(bytes), do: "HPS" <> <<1>> <> header_of(bytes)

  # The size-prefixed header of an envelope.
  defp header_of(<<"HPS", 1, size::32, header::binary-size(size), _body::binary>>) do
    <<size::32, header::binary>>
  end
end
