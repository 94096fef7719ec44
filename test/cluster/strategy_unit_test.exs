defmodule Cluster.Strategy.HyParViewUnitTest do
  # Strategy logic that needs no second VM: pre-flight checks and the event
  # handling, driven through the GenServer callbacks with fake MFAs.
  use ExUnit.Case, async: false

  # Logs of connect/disconnect attempts are expected noise here.
  @moduletag :capture_log

  import ExUnit.CaptureLog

  alias Cluster.Strategy.HyParView, as: Strategy
  alias Cluster.Strategy.State
  alias HyParView.Peer

  defmodule Net do
    # connect/disconnect report to the test pid; results and the connected
    # list come from an Agent so tests can change them.
    def start(connect_result \\ true) do
      {:ok, agent} = Agent.start_link(fn -> %{connect: connect_result, nodes: []} end)
      agent
    end

    def connect(pid, agent, node) do
      send(pid, {:connect, node})
      result = Agent.get(agent, & &1.connect)
      if result == true, do: Agent.update(agent, &%{&1 | nodes: [node | &1.nodes]})
      result
    end

    # A node in `stuck` stays connected once: its disconnect answers false
    # (as for a connection net_kernel has not marked up yet).
    def disconnect(pid, agent, node) do
      send(pid, {:disconnect, node})

      Agent.get_and_update(agent, fn s ->
        stuck = Map.get(s, :stuck, [])

        if node in stuck,
          do: {false, %{s | stuck: List.delete(stuck, node)}},
          else: {true, %{s | nodes: List.delete(s.nodes, node)}}
      end)
    end

    def list(agent), do: Agent.get(agent, & &1.nodes)
    def set(agent, key, value), do: Agent.update(agent, &Map.put(&1, key, value))
  end

  # `overlay`: what the stand-in server answers (see fake_overlay/1); by
  # default this end connects every peer and the overlay holds none.
  defp strategy_state(agent, overlay \\ []) do
    %Strategy{
      topology: :unit,
      connect: {Net, :connect, [self(), agent]},
      disconnect: {Net, :disconnect, [self(), agent]},
      list_nodes: {Net, :list, [agent]},
      server: fake_overlay(Map.merge(%{holds: [], connects: :all}, Map.new(overlay)))
    }
  end

  defp peer(name), do: Peer.new(name, {{127, 0, 0, 1}, 4000})

  defp up(state, name), do: handle(state, {:hyparview, {:peer_up, peer(name)}})
  defp down(state, name), do: handle(state, {:hyparview, {:peer_down, peer(name)}})

  defp flush_net do
    receive do
      {tag, _} when tag in [:connect, :disconnect] -> flush_net()
    after
      0 -> :ok
    end
  end

  # Connects run in processes of their own; each one the message started
  # is waited for and its result handled, so a test reads in order.
  defp handle(state, msg) do
    {:noreply, state} = Strategy.handle_info(msg, state)

    Enum.reduce(state.connecting, state, fn {id, {pid, _ref}}, acc ->
      assert_receive {:connect_result, ^pid, ^id, _, _} = result, 1_000
      handle(acc, result)
    end)
  end

  describe "pre-flight" do
    test "local_peer is required and must be a peer" do
      assert {:error, :missing_local_peer, msg} = Strategy.preflight(%State{config: []})
      assert msg =~ "local_peer"

      assert {:error, :invalid_local_peer, _} =
               Strategy.preflight(%State{config: [local_peer: :nope]})
    end

    test "local_peer id must equal node()" do
      config = [local_peer: Peer.new(:"other@127.0.0.1", {{127, 0, 0, 1}, 0})]

      assert {:error, {:local_peer_mismatch, :"other@127.0.0.1", _}, msg} =
               Strategy.preflight(%State{config: config})

      assert msg =~ "node()"
    end

    test "refuses a non-distributed node, without crashing the caller" do
      refute Node.alive?()
      config = [local_peer: Peer.new(node(), {{127, 0, 0, 1}, 0})]
      assert {:error, :not_distributed, _} = Strategy.preflight(%State{config: config})

      log =
        capture_log([level: :error], fn ->
          assert {:error, :not_distributed} =
                   Strategy.start_link([%State{topology: :unit, config: config}])
        end)

      assert log =~ "not distributed"
      assert Process.alive?(self())
    end
  end

  describe "bad config" do
    test "raises ArgumentError naming the key, in the caller, before anything starts" do
      local = Peer.new(node(), {{127, 0, 0, 1}, 0})

      cases = [
        {[local_peer: local, hyparview_config: [active_view_size: -1]], "active_view_size"},
        {[local_peer: local, hyparview_config: [no_such_key: 1]], "no_such_key"},
        {[local_peer: local, contacts: [:"a@127.0.0.1"]], "contacts"},
        {[local_peer: local, contacts: :nope], "contacts"},
        {[local_peer: local, transport: :udp], "transport"}
      ]

      for {config, key} <- cases do
        error =
          assert_raise ArgumentError, fn ->
            Strategy.start_link([%State{topology: :unit, config: config}])
          end

        assert Exception.message(error) =~ key
      end

      assert Process.alive?(self())
    end
  end

  # A stand-in for the HyParView server: answers `holds?` (the overlay
  # holds the peer) and `connects?` (this end announced it last) from lists
  # the test can change. Events in `queued` are sent to the caller before
  # the next answer (as the server forwards what it had queued first).
  defp fake_overlay(answers) do
    spawn_link(fn -> overlay_loop(Map.put_new(answers, :queued, [])) end)
  end

  defp overlay_loop(answers) do
    receive do
      {:"$gen_call", {pid, _} = from, {:holds?, id}} ->
        Enum.each(answers.queued, &send(pid, {:hyparview, &1}))
        GenServer.reply(from, id in answers.holds)
        overlay_loop(%{answers | queued: []})

      {:"$gen_call", from, {:connects?, id}} ->
        GenServer.reply(from, answers.connects == :all or id in answers.connects)
        overlay_loop(answers)

      {:set, key, value} ->
        overlay_loop(Map.put(answers, key, value))
    end
  end

  describe "events" do
    test "peer_up connects the peer id; peer_down disconnects it" do
      agent = Net.start()
      state = strategy_state(agent) |> up(:za@h)
      assert_received {:connect, :za@h}
      assert MapSet.member?(state.ours, :za@h)
      assert state.retries == %{}

      state = down(state, :za@h)
      assert_received {:disconnect, :za@h}
      refute Map.has_key?(state.active, :za@h)
      # Still remembered as ours, so a stray link to it can be removed later.
      assert MapSet.member?(state.ours, :za@h)
    end

    test "the end that announced the peer first waits for the other end to connect" do
      agent = Net.start()
      state = strategy_state(agent, connects: []) |> up(:"0a@h")
      refute_received {:connect, _}
      assert state.retries == %{}

      # Its link arrives: nothing to do. It drops: the other end redials.
      Net.set(agent, :nodes, [:"0a@h"])
      state = handle(state, {:nodeup, :"0a@h", []})
      Net.set(agent, :nodes, [])
      state = handle(state, {:nodedown, :"0a@h", []})
      assert state.retries == %{}
      refute_received {:connect, _}

      # It linked again; the overlay drops the peer: either end disconnects.
      Net.set(agent, :nodes, [:"0a@h"])
      state = down(state, :"0a@h")
      assert_received {:disconnect, :"0a@h"}
      refute Map.has_key?(state.active, :"0a@h")
    end

    test "the end that announced first connects itself when the other end does not" do
      agent = Net.start()
      state = strategy_state(agent, connects: []) |> up(:"0a@h") |> up(:"0b@h")
      refute_received {:connect, _}

      # 0b's link comes; 0a's does not (both ends announced it first).
      Net.set(agent, :nodes, [:"0b@h"])
      state = handle(state, {:nodeup, :"0b@h", []})

      Enum.reduce(1..2, state, fn _, acc ->
        assert_receive {:await_link, _} = wait, 2_000
        handle(acc, wait)
      end)

      assert_received {:connect, :"0a@h"}
      refute_received {:connect, :"0b@h"}
      assert Enum.sort(Net.list(agent)) == [:"0a@h", :"0b@h"]
    end

    test "a failed connect is retried while the peer stays active" do
      agent = Net.start(false)
      state = strategy_state(agent) |> up(:za@h)
      assert_received {:connect, :za@h}
      assert %{za@h: _} = state.retries

      # The retry timer fires: still failing, so another retry is scheduled.
      assert_receive {:retry_connect, :za@h, 1} = retry, 2_000
      state = handle(state, retry)
      assert_received {:connect, :za@h}
      assert %{za@h: _} = state.retries

      # Now it works.
      Net.set(agent, :connect, true)
      assert_receive {:retry_connect, :za@h, 2} = retry, 2_000
      state = handle(state, retry)
      assert_received {:connect, :za@h}
      assert state.retries == %{}
      assert :za@h in Net.list(agent)
    end

    test "no retry once the peer left the active view" do
      agent = Net.start(false)
      state = strategy_state(agent) |> up(:za@h)
      assert_received {:connect, :za@h}
      state = down(state, :za@h)
      assert state.retries == %{}
      # A stale timer message must not reconnect.
      handle(state, {:retry_connect, :za@h, 1})
      refute_received {:connect, _}
    end

    test "nodedown of an active peer we connect reconnects with backoff" do
      agent = Net.start()
      state = strategy_state(agent) |> up(:za@h)
      assert_received {:connect, :za@h}

      # Distribution drops while the overlay link is fine.
      Agent.update(agent, &%{&1 | nodes: []})
      state = handle(state, {:nodedown, :za@h, []})
      assert %{za@h: _} = state.retries
      assert_receive {:retry_connect, :za@h, 0} = retry, 2_000
      state = handle(state, retry)
      assert_received {:connect, :za@h}
      assert state.retries == %{}

      # nodedown of a non-active node is ignored.
      state = handle(state, {:nodedown, :zz@h, []})
      assert state.retries == %{}
    end

    test "nodes outside the active view are left alone unless a strategy connected them" do
      agent = Net.start()
      state = strategy_state(agent)

      Net.set(agent, :nodes, [:zother@h])
      state = handle(state, {:nodeup, :zother@h, []})
      assert state.pending == %{}
      state = handle(state, {:confirm_window, :zother@h, System.monotonic_time(:millisecond)})
      refute_received {:disconnect, _}

      # A node we connected earlier, no longer active nor held by the
      # overlay: its link is dropped at once.
      state = state |> up(:zstale@h) |> down(:zstale@h)
      assert_received {:connect, :zstale@h}
      assert_received {:disconnect, :zstale@h}
      Net.set(agent, :nodes, [:zother@h, :zstale@h])
      state = handle(state, {:nodeup, :zstale@h, []})
      assert_received {:disconnect, :zstale@h}
      refute_received {:disconnect, :zother@h}
      assert state.pending == %{}
    end

    test "a disconnect that missed (the link is still listed) is tried again" do
      agent = Net.start()
      state = strategy_state(agent) |> up(:za@h)
      assert_received {:connect, :za@h}

      Net.set(agent, :stuck, [:za@h])
      state = down(state, :za@h)
      assert_received {:disconnect, :za@h}
      assert :za@h in Net.list(agent)

      assert_receive {:recheck, :za@h} = recheck, 1_000
      handle(state, recheck)
      assert_received {:disconnect, :za@h}
      refute :za@h in Net.list(agent)
    end

    test "the audit drops a link of ours outside the active view that no event reported" do
      agent = Net.start()
      state = strategy_state(agent) |> up(:zstale@h) |> down(:zstale@h) |> up(:zactive@h)
      flush_net()

      # Links appear without a :nodeup (as if that event was missed).
      Net.set(agent, :nodes, [:zother@h, :zstale@h, :zactive@h])
      log = capture_log(fn -> handle(state, :audit) end)
      assert_received {:disconnect, :zstale@h}
      refute_received {:disconnect, _}
      assert log =~ ":zstale@h outside the active view"
    end

    test "a link the overlay holds but has not announced waits for peer_up" do
      agent = Net.start()
      state = strategy_state(agent, holds: [:za@h]) |> up(:za@h) |> down(:za@h)
      assert_received {:connect, :za@h}
      assert_received {:disconnect, :za@h}
      Net.set(agent, :nodes, [:za@h])
      state = handle(state, {:nodeup, :za@h, []})
      assert Map.has_key?(state.pending, :za@h)

      # Still held when the window ends: checked again, kept.
      assert_receive {:confirm_window, :za@h, _} = check, 1_000
      state = handle(state, check)
      refute_received {:disconnect, _}
      assert Map.has_key?(state.pending, :za@h)

      # Announced: kept for good, no second connect.
      state = up(state, :za@h)
      assert state.pending == %{}
      refute_received {:connect, :za@h}
      handle(state, {:confirm_window, :za@h, System.monotonic_time(:millisecond)})
      refute_received {:disconnect, _}
    end

    test "a waiting link is dropped after a second even while the overlay holds the peer" do
      agent = Net.start()
      state = strategy_state(agent, holds: [:za@h]) |> up(:za@h) |> down(:za@h)
      flush_net()
      Net.set(agent, :nodes, [:za@h])
      state = handle(state, {:nodeup, :za@h, []})
      assert Map.has_key?(state.pending, :za@h)

      # Its window ends more than a second after it was first seen.
      long_ago = System.monotonic_time(:millisecond) - 1_001
      assert_receive {:confirm_window, :za@h, _}, 1_000
      state = handle(state, {:confirm_window, :za@h, long_ago})
      assert_received {:disconnect, :za@h}
      assert state.pending == %{}
    end

    test "a waiting link is dropped once the overlay no longer holds the peer" do
      agent = Net.start()
      state = strategy_state(agent, holds: [:za@h])
      overlay = state.server
      state = state |> up(:za@h) |> down(:za@h)
      flush_net()
      Net.set(agent, :nodes, [:za@h])
      state = handle(state, {:nodeup, :za@h, []})
      assert Map.has_key?(state.pending, :za@h)

      send(overlay, {:set, :holds, []})
      assert_receive {:confirm_window, :za@h, _} = check, 1_000
      state = handle(state, check)
      assert_received {:disconnect, :za@h}
      assert state.pending == %{}
    end

    test "a stray that would exceed active_view_size is dropped at once" do
      agent = Net.start()
      state = %{strategy_state(agent, holds: [:zs@h]) | active_view_size: 2}
      state = state |> up(:zs@h) |> down(:zs@h) |> up(:za@h) |> up(:zb@h)
      for n <- [:zs@h, :za@h, :zb@h], do: assert_received({:connect, ^n})
      assert_received {:disconnect, :zs@h}

      Net.set(agent, :nodes, [:za@h, :zb@h, :zs@h])
      state = handle(state, {:nodeup, :zs@h, []})
      assert_received {:disconnect, :zs@h}
      assert state.pending == %{}
    end

    test "a link that arrives before the events that made room for it is kept" do
      agent = Net.start()
      state = %{strategy_state(agent, holds: [:zn@h], connects: []) | active_view_size: 2}
      state = state |> up(:zn@h) |> down(:zn@h) |> up(:za@h) |> up(:zb@h)
      Net.set(agent, :nodes, [:za@h, :zb@h])
      flush_net()

      # The overlay evicted zb for zn and announced zn, but those events are
      # still queued in the server when zn's link comes up.
      send(state.server, {:set, :queued, [{:peer_down, peer(:zb@h)}, {:peer_up, peer(:zn@h)}]})
      Net.set(agent, :nodes, [:za@h, :zb@h, :zn@h])
      state = handle(state, {:nodeup, :zn@h, []})

      assert_received {:disconnect, :zb@h}
      refute_received {:disconnect, :zn@h}
      assert Map.has_key?(state.active, :zn@h)
      assert Enum.sort(Net.list(agent)) == [:za@h, :zn@h]
    end

    test "a new active peer evicts a waiting stray when the bound is reached" do
      agent = Net.start()
      state = %{strategy_state(agent, holds: [:zs@h]) | active_view_size: 2}
      state = state |> up(:zs@h) |> down(:zs@h) |> up(:za@h)
      Net.set(agent, :nodes, [:za@h, :zs@h])
      state = handle(state, {:nodeup, :zs@h, []})
      assert Map.has_key?(state.pending, :zs@h)
      flush_net()

      state = up(state, :zb@h)
      assert_received {:connect, :zb@h}
      assert_received {:disconnect, :zs@h}
      assert state.pending == %{}
      assert Enum.sort(Net.list(agent)) == [:za@h, :zb@h]
    end

    test "the strategy stops when its server exits" do
      server = spawn(fn -> :ok end)
      state = %{strategy_state(Net.start()) | server: server}
      assert {:stop, :boom, _} = Strategy.handle_info({:EXIT, server, :boom}, state)
      assert {:stop, :normal, _} = Strategy.handle_info({:EXIT, server, :normal}, state)

      # Other linked processes only matter when they fail.
      other = spawn(fn -> :ok end)
      assert {:noreply, _} = Strategy.handle_info({:EXIT, other, :normal}, state)
      assert {:stop, :oops, _} = Strategy.handle_info({:EXIT, other, :oops}, state)
    end
  end

  test "backoff grows and is capped" do
    assert Strategy.backoff(0) in 200..250
    assert Strategy.backoff(3) in 1_600..2_000
    assert Strategy.backoff(50) in 15_000..18_750
  end

  test "server_name/1 and server/1" do
    assert Strategy.server_name(:topo) == :"Elixir.HyParView.Server.topo"
    assert Strategy.server(:no_such_topology_here) == nil
  end
end
