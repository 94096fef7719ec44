defmodule HyParView.ServerTest do
  # Single-VM tests over loopback TCP with ephemeral ports.
  use ExUnit.Case, async: false

  import HyParView.TestSupport

  alias HyParView.Peer

  @moduletag :capture_log

  defp join(id, contact_pid, opts \\ []) do
    start_server(id, Keyword.put(opts, :contacts, [HyParView.local_peer(contact_pid)]))
  end

  test "two servers join and see each other" do
    a = start_server(:"two_a@127.0.0.1")
    :ok = HyParView.subscribe(a)
    b = join(:"two_b@127.0.0.1", a)
    # b may already have joined: replay covers that.
    :ok = HyParView.subscribe(b, self(), replay: true)

    assert_receive {:hyparview, {:peer_up, %Peer{id: :"two_b@127.0.0.1", address: b_addr}}},
                   3_000

    assert b_addr == HyParView.local_peer(b).address
    assert_receive {:hyparview, {:peer_up, %Peer{id: :"two_a@127.0.0.1"}}}, 3_000

    assert ids(HyParView.active_view(a)) == [:"two_b@127.0.0.1"]
    assert ids(HyParView.active_view(b)) == [:"two_a@127.0.0.1"]

    info = HyParView.info(a)
    assert info.counters.connections >= 1
    assert info.local == HyParView.local_peer(a)
    assert info.subscribers == 1
  end

  test "of the two ends, the one that announced the link last connects; both hold it" do
    a = start_server(:"last_a@127.0.0.1")
    :ok = HyParView.subscribe(a)
    # b joins through a: a takes the link first and announces it on b's
    # confirmation, after b did.
    b = join(:"last_b@127.0.0.1", a)
    assert_receive {:hyparview, {:peer_up, %Peer{id: :"last_b@127.0.0.1"}}}, 3_000
    eventually(fn -> ids(HyParView.active_view(b)) == [:"last_a@127.0.0.1"] end)

    assert HyParView.Server.connects?(a, :"last_b@127.0.0.1")
    refute HyParView.Server.connects?(b, :"last_a@127.0.0.1")
    assert HyParView.Server.holds?(a, :"last_b@127.0.0.1")
    assert HyParView.Server.holds?(b, :"last_a@127.0.0.1")
    refute HyParView.Server.holds?(a, :"nobody@127.0.0.1")

    # Gone from the view: neither holds nor connects any more.
    safe_stop(b)
    assert_receive {:hyparview, {:peer_down, %Peer{id: :"last_b@127.0.0.1"}}}, 3_000
    refute HyParView.Server.connects?(a, :"last_b@127.0.0.1")
    refute HyParView.Server.holds?(a, :"last_b@127.0.0.1")
  end

  test "the client API is also reachable through HyParView.Server" do
    a = start_server(:"srv_a@127.0.0.1")
    b = join(:"srv_b@127.0.0.1", a)
    eventually(fn -> length(HyParView.Server.active_view(a)) == 1 end, 5_000, "no link")

    :ok = HyParView.Server.subscribe(a, self(), replay: true)
    assert_receive {:hyparview, {:peer_up, %Peer{id: :"srv_b@127.0.0.1"}}}, 1_000
    assert HyParView.Server.active_view(b) == HyParView.active_view(b)
    assert HyParView.Server.passive_view(a) == HyParView.passive_view(a)
    assert HyParView.Server.local_peer(a) == HyParView.local_peer(a)
    assert %{counters: _} = HyParView.Server.info(a)
    :ok = HyParView.Server.unsubscribe(a, self())
    assert :ok = HyParView.Server.stop(b)
    refute_receive {:hyparview, _}, 300
  end

  test "replay: true delivers the current active view first" do
    a = start_server(:"rp_a@127.0.0.1")
    b = join(:"rp_b@127.0.0.1", a)
    c = join(:"rp_c@127.0.0.1", a)

    eventually(fn -> length(HyParView.active_view(a)) == 2 end, 5_000, "a did not get 2 peers")

    # Without replay nothing is delivered for peers already up.
    :ok = HyParView.subscribe(a)
    refute_receive {:hyparview, _}, 200
    :ok = HyParView.unsubscribe(a)

    :ok = HyParView.subscribe(a, self(), replay: true)

    # The replay comes before anything else, in one go.
    assert {:messages, [first, second | _]} = Process.info(self(), :messages)

    assert [{:hyparview, {:peer_up, p1}}, {:hyparview, {:peer_up, p2}}] = [first, second]
    assert ids([p1, p2]) == [:"rp_b@127.0.0.1", :"rp_c@127.0.0.1"]

    # Later events follow the replay.
    HyParView.stop(c)
    assert_receive {:hyparview, {:peer_down, %Peer{id: :"rp_c@127.0.0.1"}}}, 3_000
    assert ids(HyParView.active_view(a)) == [:"rp_b@127.0.0.1"]
    assert Process.alive?(b)
  end

  test "subscribe/2 accepts options as second argument and is idempotent" do
    a = start_server(:"sub_a@127.0.0.1")
    b = join(:"sub_b@127.0.0.1", a)
    eventually(fn -> HyParView.active_view(a) != [] end, 5_000)

    :ok = HyParView.subscribe(a, replay: true)
    :ok = HyParView.subscribe(a, replay: true)
    assert_received {:hyparview, {:peer_up, %Peer{id: :"sub_b@127.0.0.1"}}}
    assert_received {:hyparview, {:peer_up, %Peer{id: :"sub_b@127.0.0.1"}}}
    assert HyParView.info(a).subscribers == 1

    HyParView.stop(b)
    # One subscription, one event.
    assert_receive {:hyparview, {:peer_down, _}}, 3_000
    refute_receive {:hyparview, {:peer_down, _}}, 200
  end

  test "dead subscribers are dropped" do
    a = start_server(:"dead_a@127.0.0.1")
    test_pid = self()

    subscribers =
      for _ <- 1..5 do
        spawn(fn ->
          :ok = HyParView.subscribe(a)
          send(test_pid, :subscribed)
          receive do: (:exit -> :ok)
        end)
      end

    for _ <- subscribers, do: assert_receive(:subscribed, 1_000)
    :ok = HyParView.subscribe(a)
    assert HyParView.info(a).subscribers == 6

    Enum.each(subscribers, &send(&1, :exit))
    eventually(fn -> HyParView.info(a).subscribers == 1 end, 2_000, "dead subscribers kept")

    # The live subscriber still gets events.
    _b = join(:"dead_b@127.0.0.1", a)
    assert_receive {:hyparview, {:peer_up, %Peer{id: :"dead_b@127.0.0.1"}}}, 3_000
  end

  test "stop releases the port and a busy port is an error tuple, not a crash" do
    a = start_server(:"port_a@127.0.0.1")
    %Peer{address: {_, port}} = HyParView.local_peer(a)
    peer = Peer.new(:"port_b@127.0.0.1", {{127, 0, 0, 1}, port})

    # Port in use: an error tuple; the (non-trapping) caller survives.
    refute Process.flag(:trap_exit, false)

    assert {:error, {:listen_failed, :eaddrinuse}} =
             HyParView.start_link(peer: peer, secret: secret())

    refute_receive {:EXIT, _, _}, 100

    :ok = HyParView.stop(a)
    refute Process.alive?(a)

    # Immediately reusable.
    {:ok, b} = HyParView.start_link(peer: peer, secret: secret())
    assert HyParView.local_peer(b).address == {{127, 0, 0, 1}, port}
    :ok = HyParView.stop(b)

    {:ok, c} = HyParView.start_link(peer: peer, secret: secret())
    :ok = HyParView.stop(c)
  end

  test "the server stops with its starter, but not when another linked process exits normally" do
    test_pid = self()

    starter =
      spawn(fn ->
        {:ok, pid} =
          HyParView.start_link(
            peer: Peer.new(:"link_a@127.0.0.1", {{127, 0, 0, 1}, 0}),
            secret: secret()
          )

        send(test_pid, {:server, pid})
        receive do: (:exit -> :ok)
      end)

    assert_receive {:server, server}, 2_000
    ref = Process.monitor(server)

    # A linked helper exiting normally (the server traps exits, so this is
    # exactly what it would receive) does not stop it.
    send(server, {:EXIT, spawn(fn -> :ok end), :normal})
    _ = :sys.get_state(server)
    assert Process.alive?(server)

    send(starter, :exit)
    assert_receive {:DOWN, ^ref, :process, ^server, :normal}, 5_000
  end

  test "wildcard listen address advertises the node name's host" do
    a = start_server(:"wild@127.0.0.1", peer: Peer.new(:"wild@127.0.0.1", {{0, 0, 0, 0}, 0}))
    assert %Peer{address: {{127, 0, 0, 1}, port}} = HyParView.local_peer(a)
    assert port > 0

    assert {:error, {:no_advertise_address, message}} =
             HyParView.start_link(
               peer: Peer.new(:"wild@no-such-host.invalid", {{0, 0, 0, 0}, 0}),
               secret: secret()
             )

    assert message =~ "advertise_address"

    b =
      start_server(:"wild2@no-such-host.invalid",
        peer: Peer.new(:"wild2@no-such-host.invalid", {{0, 0, 0, 0}, 0}),
        advertise_address: {127, 0, 0, 2}
      )

    assert %Peer{address: {{127, 0, 0, 2}, _}} = HyParView.local_peer(b)
  end

  describe "hostile input" do
    setup do
      a = start_server(:"host_a@127.0.0.1")
      %Peer{address: {_, port}} = HyParView.local_peer(a)
      other_id = :"intruder@127.0.0.1"
      good_id = :"host_good@127.0.0.1"
      %{a: a, port: port, other_id: other_id, good_id: good_id}
    end

    defp raw(port, payload) do
      {:ok, sock} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 1_000)
      :ok = :gen_tcp.send(sock, payload)
      # The server closes the connection (after at most the handshake timeout).
      result = drain(sock)
      :gen_tcp.close(sock)
      result
    end

    defp drain(sock) do
      case :gen_tcp.recv(sock, 0, 3_000) do
        {:ok, _data} -> drain(sock)
        {:error, reason} -> reason
      end
    end

    defp attack(%{a: a, port: port, other_id: other_id}) do
      assert raw(port, :crypto.strong_rand_bytes(64)) in [:closed, :econnreset]
      assert raw(port, <<0xFFFFFFFF::32, "x">>) in [:closed, :econnreset]
      assert raw(port, "GET / HTTP/1.1\r\n\r\n") in [:closed, :econnreset]

      # A real HyParView node with the wrong secret.
      {:ok, intruder} =
        HyParView.start_link(
          peer: Peer.new(other_id, {{127, 0, 0, 1}, 0}),
          contacts: [HyParView.local_peer(a)],
          secret: "wrong secret",
          config: fast_config()
        )

      rejections = HyParView.info(a).counters.handshake_rejections

      eventually(
        fn -> HyParView.info(a).counters.handshake_rejections > rejections end,
        3_000,
        "wrong-secret handshake not rejected"
      )

      assert HyParView.active_view(intruder) == []
      :ok = HyParView.stop(intruder)
    end

    test "garbage, oversize frames and a wrong secret are rejected; atoms do not grow", ctx do
      :ok = HyParView.subscribe(ctx.a)
      # Warm-up: first use of every code path may load modules / create atoms.
      attack(ctx)
      before = :erlang.system_info(:atom_count)

      for _ <- 1..3, do: attack(ctx)

      assert :erlang.system_info(:atom_count) == before
      counters = HyParView.info(ctx.a).counters
      assert counters.handshake_rejections >= 4
      # Honest accounting: closes and evictions are counted apart.
      assert is_integer(counters.handshakes_closed)
      assert is_integer(counters.handshakes_evicted)
      assert HyParView.active_view(ctx.a) == []
      refute_received {:hyparview, {:peer_up, _}}

      # Still working: an honest peer joins.
      _good = join(ctx.good_id, ctx.a)
      assert_receive {:hyparview, {:peer_up, %Peer{id: id}}}, 3_000
      assert id == ctx.good_id
    end

    test "rejections are reported through telemetry when available", ctx do
      if Code.ensure_loaded?(:telemetry) do
        ref = make_ref()
        test_pid = self()

        :ok =
          apply(:telemetry, :attach, [
            "hv-test-#{inspect(ref)}",
            [:hyparview, :handshake, :rejected],
            fn event, _m, meta, _ -> send(test_pid, {:telemetry, event, meta}) end,
            nil
          ])

        raw(ctx.port, <<0xFFFFFFFF::32>>)
        assert_receive {:telemetry, [:hyparview, :handshake, :rejected], %{reason: _}}, 3_000
      else
        # Without :telemetry the server must still count and survive.
        raw(ctx.port, <<0xFFFFFFFF::32>>)

        eventually(fn -> HyParView.info(ctx.a).counters.handshake_rejections >= 1 end, 3_000)
      end
    end
  end
end
