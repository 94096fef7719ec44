defmodule HyParView.DiscoveryTest do
  # Discovery sources, the schedule (injected clock) and the Discovery
  # process against a fake server; one test through the real NIF.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog
  import HyParView.TestSupport

  alias HyParView.Discovery
  alias HyParView.Discovery.{DNS, Schedule, Source}
  alias HyParView.Peer
  alias HyParView.Test.DNSServer

  @moduletag :capture_log

  defp peer(name, port \\ 4500), do: Peer.new(name, {{127, 0, 0, 1}, port})

  # Used as {m, f, a} sources.
  def peers(list), do: list
  def not_a_list, do: :nope
  def raises, do: raise("boom")

  def hangs do
    Process.sleep(:infinity)
  end

  def from_agent(agent), do: Agent.get(agent, & &1)

  # Like from_agent/1, counting the calls in `counter`.
  def counted(agent, counter) do
    :counters.add(counter, 1, 1)
    Agent.get(agent, & &1)
  end

  defmodule FakeServer do
    # Answers what HyParView.Discovery asks of a HyParView.Server and reports
    # every set_contacts to the test process.
    use GenServer

    def start_link(test, local), do: GenServer.start_link(__MODULE__, {test, local})
    def peer_up(fake, peer), do: GenServer.call(fake, {:event, {:peer_up, peer}})
    def peer_down(fake, peer), do: GenServer.call(fake, {:event, {:peer_down, peer}})

    @impl true
    def init({test, local}), do: {:ok, %{test: test, local: local, subs: []}}

    @impl true
    def handle_call({:subscribe, pid, _replay}, _from, s), do: {:reply, :ok, %{s | subs: [pid]}}
    def handle_call(:local_peer, _from, s), do: {:reply, s.local, s}

    def handle_call({:set_contacts, contacts}, _from, s) do
      send(s.test, {:set_contacts, contacts})
      {:reply, :ok, s}
    end

    def handle_call({:event, event}, _from, s) do
      Enum.each(s.subs, &send(&1, {:hyparview, event}))
      {:reply, :ok, s}
    end
  end

  defmodule TestStrategy do
    # A libcluster strategy written for the {:strategy, ...} source: it
    # "connects" config[:nodes] at start and the nodes sent to it later,
    # through the MFAs of its %Cluster.Strategy.State{} only, like
    # libcluster's own strategies.
    use GenServer
    use Cluster.Strategy

    alias Cluster.Strategy.State

    @impl Cluster.Strategy
    def start_link([%State{} = state]), do: GenServer.start_link(__MODULE__, state)

    @impl GenServer
    def init(state) do
      if pid = state.config[:report], do: send(pid, {:test_strategy, self(), state})
      connect(state, Keyword.get(state.config, :nodes, []))
      {:ok, state}
    end

    @impl GenServer
    def handle_info({:add, nodes}, state) do
      connect(state, nodes)
      {:noreply, state}
    end

    def handle_info({:remove, nodes}, state) do
      Cluster.Strategy.disconnect_nodes(state.topology, state.disconnect, state.list_nodes, nodes)
      {:noreply, state}
    end

    defp connect(state, nodes),
      do: Cluster.Strategy.connect_nodes(state.topology, state.connect, state.list_nodes, nodes)
  end

  describe "contacts: shapes" do
    test "peers and every kind of source, alone or in a list" do
      p = peer(:"a@127.0.0.1")
      dns = {:dns, query: "app.test", node_basename: "app", port: 4500}
      strategy = {:strategy, TestStrategy, [nodes: []], port: 4500}
      mfa = {__MODULE__, :peers, [[]]}

      assert {[^p],
              [{:dns, _}, {:strategy, TestStrategy, [nodes: []], [port: 4500]}, {:mfa, ^mfa}]} =
               Source.parse!([p, dns, strategy, mfa])

      assert {[], [{:dns, _}]} = Source.parse!(dns)
      assert {[], []} = Source.parse!([])
    end

    test "bad shapes raise ArgumentError naming contacts" do
      bad = [
        :nope,
        [:nope],
        [{:dns, query: "app.test", node_basename: "app"}],
        [{:dns, query: "", node_basename: "app", port: 4500}],
        [{:dns, query: "app.test", node_basename: "a@b", port: 4500}],
        [{:dns, query: "app.test", node_basename: "app", port: 0}],
        [{:dns, query: "app.test", node_basename: "app", port: 4500, nameservers: [:x]}],
        [{:dns, query: "app.test", node_basename: "app", port: 4500, typo: 1}],
        [{:strategy, NoSuchStrategy, [], port: 4500}],
        [{:strategy, TestStrategy, :nope, port: 4500}],
        [{:strategy, TestStrategy, [], []}],
        [{:strategy, TestStrategy, [], port: 4500, other: 1}],
        [{__MODULE__, :no_such_function, []}],
        [%Peer{id: :bad, address: {{127, 0, 0, 1}, 1}}]
      ]

      for contacts <- bad do
        error = assert_raise ArgumentError, fn -> Source.parse!(contacts) end
        assert error.message =~ "contacts", inspect(contacts)
      end
    end

    test "the strategy raises ArgumentError naming the key, in the caller" do
      local = Peer.new(node(), {{127, 0, 0, 1}, 0})
      dns = {:dns, query: "app.test", node_basename: "app", port: 4500}

      cases = [
        {[local_peer: local, contacts: [{:dns, query: "app.test"}]], "contacts"},
        {[local_peer: local, contacts: [dns, {:strategy, NoSuch, [], port: 1}]], "contacts"},
        {[local_peer: local, contacts: dns, discovery_interval: 0], "discovery_interval"},
        {[local_peer: local, contacts: dns, discovery_refresh: :x], "discovery_refresh"},
        {[local_peer: local, contacts: dns, discovery_timeout: -5], "discovery_timeout"}
      ]

      for {config, key} <- cases do
        error =
          assert_raise ArgumentError, fn ->
            Cluster.Strategy.HyParView.start_link([
              %Cluster.Strategy.State{topology: :unit, config: config}
            ])
          end

        assert Exception.message(error) =~ key
      end
    end

    test "discovery_* config keys are validated, naming the key" do
      for key <- [:discovery_interval, :discovery_refresh, :discovery_timeout],
          value <- [0, -1, :soon, 1.5] do
        error = assert_raise ArgumentError, fn -> Discovery.validate_config!([{key, value}]) end
        assert error.message =~ Atom.to_string(key)
      end

      assert {[], []} = Discovery.validate_config!(discovery_interval: 100)
    end
  end

  describe "{:dns, ...}" do
    setup do
      {:ok, dns} = DNSServer.start_link()
      on_exit(fn -> if Process.alive?(dns), do: GenServer.stop(dns) end)

      opts = [
        query: "app.test",
        node_basename: "app",
        port: 4500,
        nameservers: [DNSServer.address(dns)],
        timeout: 300
      ]

      %{dns: dns, opts: DNS.validate!(opts)}
    end

    test "A and AAAA records become app@<ip> contacts with binary ids", %{dns: dns, opts: opts} do
      v6 = {0xFD00, 0, 0, 0, 0, 0, 0, 7}
      :ok = DNSServer.put(dns, "app.test", [{127, 0, 0, 5}, v6, {127, 0, 0, 6}])

      assert {:ok, peers} = DNS.resolve(opts)

      assert Enum.sort(peers) ==
               Enum.sort([
                 %Peer{id: "app@127.0.0.5", address: {{127, 0, 0, 5}, 4500}},
                 %Peer{id: "app@127.0.0.6", address: {{127, 0, 0, 6}, 4500}},
                 %Peer{id: "app@fd00::7", address: {v6, 4500}}
               ])

      # The naming of libcluster's DNSPoll: :"#{basename}@#{:inet_parse.ntoa(ip)}".
      assert Enum.all?(peers, fn %Peer{id: id, address: {ip, _}} ->
               id == "app@#{:inet_parse.ntoa(ip)}"
             end)
    end

    test "an empty answer is an answer; an unknown name and silence are errors",
         %{dns: dns, opts: opts} do
      assert {:error, :nxdomain} = DNS.resolve(opts)
      :ok = DNSServer.put(dns, "app.test", [])
      assert {:ok, []} = DNS.resolve(opts)
      :ok = DNSServer.silence(dns, true)
      assert {:error, :timeout} = DNS.resolve(opts)
    end
  end

  describe "{m, f, a}" do
    test "returns peers; anything else is an error" do
      p = peer(:"a@127.0.0.1")
      assert {:ok, [^p]} = Source.resolve({:mfa, {__MODULE__, :peers, [[p]]}})

      assert {:error, {:not_a_list, :nope}} =
               Source.resolve({:mfa, {__MODULE__, :not_a_list, []}})

      assert {:error, {:not_a_peer, :x}} = Source.resolve({:mfa, {__MODULE__, :peers, [[p, :x]]}})
    end

    test "a raising or hanging source becomes an error, the others still answer" do
      p = peer(:"a@127.0.0.1")

      sources = [
        {:mfa, {__MODULE__, :raises, []}},
        {:mfa, {__MODULE__, :hangs, []}},
        {:mfa, {__MODULE__, :peers, [[p]]}}
      ]

      {us, results} = :timer.tc(fn -> Discovery.resolve_all(sources, 200) end)
      assert [{:error, {:error, %RuntimeError{}}}, {:error, :timeout}, {:ok, [^p]}] = results
      assert us < 2_000_000
    end
  end

  describe "{:strategy, ...}" do
    test "the strategy's connects become contacts; it never connects anything" do
      source =
        Source.parse!(
          {:strategy, TestStrategy, [nodes: [:"x@127.0.0.9", :"y@127.0.0.10"], report: self()],
           port: 4600}
        )
        |> elem(1)
        |> hd()

      {:ok, collector} =
        Discovery.Strategy.start_link(source: source, topology: :unit, notify: self())

      assert_receive {:test_strategy, strategy, %Cluster.Strategy.State{} = st}, 2_000

      # Redirected MFAs, a topology of its own.
      assert {Discovery.Strategy, :connect, _} = st.connect
      assert {Discovery.Strategy, :disconnect, _} = st.disconnect
      assert {Discovery.Strategy, :list_nodes, _} = st.list_nodes
      assert st.topology == :"unit.discovery"

      table = Discovery.Strategy.table(collector)
      {:strategy, m, c, opts} = source
      source = {:strategy, m, c, Keyword.put(opts, :table, table)}

      assert {:ok, peers} = Discovery.Strategy.resolve(source)

      assert peers == [
               Peer.new(:"x@127.0.0.9", {{127, 0, 0, 9}, 4600}),
               Peer.new(:"y@127.0.0.10", {{127, 0, 0, 10}, 4600})
             ]

      # Later discoveries notify, and removals are forgotten.
      assert_receive {:hyparview_discovery, :changed, ^table}
      assert_receive {:hyparview_discovery, :changed, ^table}
      send(strategy, {:add, [:z@localhost]})
      assert_receive {:hyparview_discovery, :changed, ^table}, 2_000
      send(strategy, {:remove, [:"x@127.0.0.9"]})
      assert_receive {:hyparview_discovery, :changed, ^table}, 2_000
      refute_received {:hyparview_discovery, :changed, _}
      assert {:ok, peers} = Discovery.Strategy.resolve(source)
      assert Enum.map(peers, & &1.id) == [:"y@127.0.0.10", :z@localhost]

      assert Enum.find(peers, &(&1.id == :z@localhost)).address in [
               {{127, 0, 0, 1}, 4600},
               {{0, 0, 0, 0, 0, 0, 0, 1}, 4600}
             ]

      assert Node.list() == []
      assert Discovery.Strategy.list_nodes(table) == [:"y@127.0.0.10", :z@localhost]

      # The strategy stops with its collector.
      ref = Process.monitor(strategy)
      GenServer.stop(collector)
      assert_receive {:DOWN, ^ref, :process, ^strategy, _}, 2_000
    end

    test "a strategy that fails to start is logged once and retried" do
      source = {:strategy, __MODULE__.Failing, [], [port: 4600]}

      log =
        capture_log(fn ->
          {:ok, collector} = Discovery.Strategy.start_link(source: source, topology: :unit)
          # 1 s backoff before the first retry: wait for it.
          assert eventually(
                   fn -> :persistent_term.get({__MODULE__.Failing, :starts}, 0) >= 2 end,
                   5_000
                 )

          GenServer.stop(collector)
        end)

      assert length(String.split(log, "start_failed")) == 2, log
    end
  end

  defmodule Failing do
    def start_link(_) do
      key = {__MODULE__, :starts}
      :persistent_term.put(key, :persistent_term.get(key, 0) + 1)
      {:error, :no_luck}
    end
  end

  describe "Schedule (injected clock)" do
    test "the first run is due at once; a full view then waits for the refresh" do
      s = Schedule.new(1_000, 60_000, 1)
      assert Schedule.delay(s, 0) == 0
      s = s |> Schedule.view(5, 5, 0) |> Schedule.ran(0, true)
      assert Schedule.delay(s, 0) in 45_000..75_000
      assert Schedule.delay(s, 100_000) == 0
    end

    test "a short view waits discovery_interval, then backs off while nothing new turns up" do
      s = Schedule.new(1_000, 60_000, 2) |> Schedule.view(5, 5, 0) |> Schedule.ran(0, true)
      s = Schedule.view(s, 3, 5, 10_000)
      # Short since 10_000: due once it has stayed short for the interval.
      assert Schedule.delay(s, 10_000) == 1_000

      gaps =
        Enum.map_reduce(1..7, {s, 11_000}, fn _, {s, now} ->
          s = Schedule.ran(s, now, false)
          gap = Schedule.delay(s, now)
          {gap, {s, now + gap}}
        end)
        |> elem(0)

      # Doubling (±25% jitter), capped by the refresh.
      for {gap, k} <- Enum.zip(gaps, 1..7) do
        base = min(60_000, 1_000 * Bitwise.bsl(1, k))
        assert gap in trunc(base * 0.75)..round(base * 1.25), inspect({k, gaps})
      end

      # Something new: back to the interval.
      s = Schedule.ran(s, 1_000_000, true)
      assert Schedule.delay(s, 1_000_000) in 750..1_250
    end

    test "an isolated node does not wait for the interval to pass, a filled view resets" do
      s = Schedule.new(1_000, 60_000, 3) |> Schedule.view(0, 5, 0) |> Schedule.ran(0, false)
      assert s.isolated
      assert Schedule.delay(s, 0) in 1_500..2_500
      s = Schedule.view(s, 5, 5, 10)
      assert s.misses == 0 and s.short_since == nil
      s = Schedule.ran(s, 10, false)
      assert Schedule.delay(s, 10) >= 45_000
    end
  end

  describe "the Discovery process" do
    setup do
      local = Peer.new(:"me@127.0.0.1", {{127, 0, 0, 1}, 4500})
      {:ok, fake} = FakeServer.start_link(self(), local)
      {:ok, agent} = Agent.start_link(fn -> [] end)
      %{fake: fake, agent: agent, local: local}
    end

    defp start_discovery(ctx, opts) do
      {:ok, pid} =
        Discovery.start_link(
          Keyword.merge(
            [server: ctx.fake, active_view_size: 2, interval: 100, refresh: 60_000, timeout: 200],
            opts
          )
        )

      Process.unlink(pid)
      on_exit(fn -> if Process.alive?(pid), do: Process.exit(pid, :kill) end)
      pid
    end

    test "at start: static peers and found ones, de-duplicated, without this node", ctx do
      static = peer(:"s@127.0.0.1", 1)

      found = [
        peer(:"a@127.0.0.1", 2),
        peer(:"s@127.0.0.1", 3),
        peer(:"me@127.0.0.1", 4),
        %Peer{id: "b@127.0.0.2", address: {{127, 0, 0, 1}, 4500}},
        %Peer{id: "a@127.0.0.1", address: {{127, 0, 0, 1}, 5}}
      ]

      sources = [{:mfa, {__MODULE__, :peers, [found]}}]
      _ = start_discovery(ctx, sources: sources, contacts: [static])

      # "me" by id and "b" by address are this node; "s" and "a" come once.
      assert_receive {:set_contacts, contacts}, 2_000
      assert contacts == [static, peer(:"a@127.0.0.1", 2)]
    end

    test "runs again while short, and only hands over changes", ctx do
      sources = [{:mfa, {__MODULE__, :from_agent, [ctx.agent]}}]
      d = start_discovery(ctx, sources: sources)
      assert_receive {:set_contacts, []}, 2_000

      # Isolated: looks again within the (backed off) interval and finds "a".
      a = peer(:"a@127.0.0.1", 2)
      Agent.update(ctx.agent, fn _ -> [a] end)
      assert_receive {:set_contacts, [^a]}, 2_000
      assert Discovery.contacts(d) == [a]

      # A full view: no more runs until the refresh (60 s here).
      :ok = FakeServer.peer_up(ctx.fake, a)
      :ok = FakeServer.peer_up(ctx.fake, peer(:"c@127.0.0.1", 3))
      b = peer(:"b@127.0.0.1", 4)
      Agent.update(ctx.agent, fn _ -> [a, b] end)
      refute_receive {:set_contacts, _}, 600

      # Short again: after the interval it finds "b".
      :ok = FakeServer.peer_down(ctx.fake, a)
      assert_receive {:set_contacts, [^a, ^b]}, 2_000
    end

    test "at the refresh rate even when full", ctx do
      sources = [{:mfa, {__MODULE__, :from_agent, [ctx.agent]}}]
      _ = start_discovery(ctx, sources: sources, refresh: 300, active_view_size: 1)
      assert_receive {:set_contacts, []}, 2_000
      :ok = FakeServer.peer_up(ctx.fake, peer(:"c@127.0.0.1", 3))
      a = peer(:"a@127.0.0.1", 2)
      Agent.update(ctx.agent, fn _ -> [a] end)
      assert_receive {:set_contacts, [^a]}, 2_000
    end

    test "a failing source is logged once per change of outcome and keeps its last answer", ctx do
      a = peer(:"a@127.0.0.1", 2)
      Agent.update(ctx.agent, fn _ -> [a] end)
      counter = :counters.new(1, [])
      sources = [{:mfa, {__MODULE__, :counted, [ctx.agent, counter]}}]
      calls = fn -> :counters.get(counter, 1) end
      # Waits until the source has been asked `n` more times.
      runs = fn n ->
        target = calls.() + n
        eventually(fn -> calls.() >= target end, 5_000)
      end

      log =
        capture_log(fn ->
          d = start_discovery(ctx, sources: sources, interval: 20, refresh: 40)
          assert_receive {:set_contacts, [^a]}, 2_000
          Agent.update(ctx.agent, fn _ -> :broken end)
          runs.(4)
          assert Discovery.contacts(d) == [a]
          Agent.update(ctx.agent, fn _ -> [a] end)
          runs.(3)
          Agent.update(ctx.agent, fn _ -> :broken end)
          runs.(3)
        end)

      # Logged once per change: broken, answers again, broken.
      assert length(String.split(log, "failed: {:not_a_list, :broken}")) == 3, log
      assert length(String.split(log, "answers again")) == 2, log
    end

    test "a hanging source is timed out without holding the others back", ctx do
      a = peer(:"a@127.0.0.1", 2)
      sources = [{:mfa, {__MODULE__, :hangs, []}}, {:mfa, {__MODULE__, :peers, [[a]]}}]

      log =
        capture_log(fn ->
          _ = start_discovery(ctx, sources: sources, timeout: 100)
          assert_receive {:set_contacts, [^a]}, 2_000
        end)

      assert log =~ "HyParView.DiscoveryTest.hangs/0 failed: :timeout"
    end
  end

  test "set_contacts reaches a running server: an isolated one joins through them" do
    # Neither knows the other at start, so only the new contacts can make
    # them meet.
    a = start_server(:"disc_a@127.0.0.1")
    b = start_server(:"disc_b@127.0.0.1")
    :ok = HyParView.subscribe(a, self(), replay: true)

    assert_raise ArgumentError, ~r/contacts/, fn -> HyParView.set_contacts(b, [:nope]) end

    assert_raise ArgumentError, ~r/contacts/, fn ->
      HyParView.set_contacts(b, [%Peer{id: "bad", address: {{127, 0, 0, 1}, 1}}])
    end

    refute_receive {:hyparview, {:peer_up, _}}, 300
    %Peer{address: address} = HyParView.local_peer(a)
    # A binary id, as from DNS: no atom needed.
    :ok = HyParView.set_contacts(b, [%Peer{id: "disc_a@127.0.0.1", address: address}])
    assert_receive {:hyparview, {:peer_up, %Peer{id: :"disc_b@127.0.0.1"}}}, 3_000
  end
end
