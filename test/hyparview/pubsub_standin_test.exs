defmodule HyParView.PubSubStandinTest do
  # Pins the phoenix_pubsub 2.1 public API that HyParView.PubSub relies on.
  # Runs against the stand-in (no Hex) and must equally pass against the real
  # package.
  use ExUnit.Case, async: true

  alias Phoenix.PubSub

  # An adapter that reports its calls to the test and returns what it is told.
  defmodule RecordingAdapter do
    @behaviour Phoenix.PubSub.Adapter

    @impl true
    def child_spec(opts) do
      %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}}
    end

    def start_link(opts) do
      test_pid = Keyword.fetch!(opts, :test_pid)
      send(test_pid, {:adapter_started, opts})
      state = %{test_pid: test_pid, result: Keyword.get(opts, :result, :ok)}
      Agent.start_link(fn -> state end, name: Keyword.fetch!(opts, :adapter_name))
    end

    @impl true
    def node_name(adapter_name), do: {:node_name_of, adapter_name}

    @impl true
    def broadcast(adapter_name, topic, message, dispatcher) do
      report(adapter_name, {:broadcast, adapter_name, topic, message, dispatcher})
    end

    @impl true
    def direct_broadcast(adapter_name, node_name, topic, message, dispatcher) do
      report(
        adapter_name,
        {:direct_broadcast, adapter_name, node_name, topic, message, dispatcher}
      )
    end

    defp report(adapter_name, call) do
      %{test_pid: test_pid, result: result} = Agent.get(adapter_name, & &1)
      send(test_pid, {:adapter, call})
      result
    end
  end

  # Hands the test everything a dispatcher receives, then delivers normally.
  defmodule RecordingDispatcher do
    def dispatch(entries, from, message) do
      for {pid, metadata} <- entries, do: send(pid, {:dispatched, metadata, from, message})
      :ok
    end
  end

  setup_all do
    {:ok, _} = Application.ensure_all_started(:phoenix_pubsub)
    :ok
  end

  setup context do
    name = Module.concat(__MODULE__, "PS#{System.unique_integer([:positive])}")
    result = Map.get(context, :adapter_result, :ok)

    start_supervised!(
      {PubSub, name: name, adapter: RecordingAdapter, test_pid: self(), result: result, extra: 1}
    )

    {:ok, pubsub: name, adapter_name: Module.concat(name, "Adapter")}
  end

  describe "child spec" do
    test "is a supervisor, registered as <name>.Supervisor", %{pubsub: pubsub} do
      assert %{type: :supervisor} = Supervisor.child_spec(PubSub.child_spec(name: :x), [])
      assert is_pid(Process.whereis(Module.concat(pubsub, "Supervisor")))
    end

    test "starts the adapter with every option and :adapter_name", ctx do
      assert_received {:adapter_started, opts}
      assert opts[:name] == ctx.pubsub
      assert opts[:adapter] == RecordingAdapter
      assert opts[:adapter_name] == ctx.adapter_name
      assert opts[:extra] == 1
    end

    test "the Registry named after the PubSub holds {adapter, adapter_name}", ctx do
      assert Registry.meta(ctx.pubsub, :pubsub) == {:ok, {RecordingAdapter, ctx.adapter_name}}
    end

    test ":name is required" do
      assert {:error, reason} = start_supervised({PubSub, []}, id: :nameless)
      assert inspect(reason) =~ "the :name option is required"
    end
  end

  describe "subscribe/unsubscribe" do
    test "a duplicate subscription delivers twice; unsubscribe drops both", %{pubsub: pubsub} do
      assert :ok = PubSub.subscribe(pubsub, "t")
      assert :ok = PubSub.subscribe(pubsub, "t")
      assert :ok = PubSub.local_broadcast(pubsub, "t", :m1)
      assert_received :m1
      assert_received :m1
      assert :ok = PubSub.unsubscribe(pubsub, "t")
      assert :ok = PubSub.local_broadcast(pubsub, "t", :m2)
      refute_received :m2
    end

    test "topics are separate", %{pubsub: pubsub} do
      :ok = PubSub.subscribe(pubsub, "a")
      :ok = PubSub.local_broadcast(pubsub, "b", :for_b)
      refute_received :for_b
    end
  end

  describe "broadcast" do
    test "broadcast/3 asks the adapter, then delivers locally", %{pubsub: pubsub} = ctx do
      :ok = PubSub.subscribe(pubsub, "t")
      assert :ok = PubSub.broadcast(pubsub, "t", :hello)
      assert_received {:adapter, {:broadcast, adapter_name, "t", :hello, PubSub}}
      assert adapter_name == ctx.adapter_name
      assert_received :hello
    end

    test "broadcast_from/4 skips the sender locally", %{pubsub: pubsub} do
      test_pid = self()
      :ok = PubSub.subscribe(pubsub, "t")

      other =
        spawn_link(fn ->
          :ok = PubSub.subscribe(pubsub, "t")
          send(test_pid, :subscribed)
          assert_receive :hello
          send(test_pid, :other_got_it)
        end)

      assert_receive :subscribed
      assert :ok = PubSub.broadcast_from(pubsub, self(), "t", :hello)
      assert_received {:adapter, {:broadcast, _, "t", :hello, PubSub}}
      assert_receive :other_got_it
      refute_received :hello
      assert is_pid(other)
    end

    @tag adapter_result: {:error, :boom}
    test "an adapter error is returned and nothing is delivered locally", %{pubsub: pubsub} do
      :ok = PubSub.subscribe(pubsub, "t")
      assert {:error, :boom} = PubSub.broadcast(pubsub, "t", :m)
      assert {:error, :boom} = PubSub.broadcast_from(pubsub, self(), "t", :m)
      refute_received :m
      assert_raise PubSub.BroadcastError, fn -> PubSub.broadcast!(pubsub, "t", :m) end

      assert_raise PubSub.BroadcastError, fn ->
        PubSub.broadcast_from!(pubsub, self(), "t", :m)
      end

      assert_raise PubSub.BroadcastError, fn ->
        PubSub.direct_broadcast!(:other@host, pubsub, "t", :m)
      end
    end

    test "the bang variants return :ok", %{pubsub: pubsub} do
      assert :ok = PubSub.broadcast!(pubsub, "t", :m)
      assert :ok = PubSub.broadcast_from!(pubsub, self(), "t", :m)
      assert :ok = PubSub.direct_broadcast!(:other@host, pubsub, "t", :m)
    end

    test "local_broadcast never involves the adapter", %{pubsub: pubsub} do
      :ok = PubSub.subscribe(pubsub, "t")
      assert :ok = PubSub.local_broadcast(pubsub, "t", :local)
      assert :ok = PubSub.local_broadcast_from(pubsub, self(), "t", :from_me)
      assert_received :local
      refute_received :from_me
      refute_received {:adapter, _}
    end

    test "direct_broadcast is the adapter's alone (no local delivery)", %{pubsub: pubsub} do
      :ok = PubSub.subscribe(pubsub, "t")
      assert :ok = PubSub.direct_broadcast(:n@h, pubsub, "t", :direct)
      assert_received {:adapter, {:direct_broadcast, _, :n@h, "t", :direct, PubSub}}
      refute_received :direct
    end

    test "node_name/1 is the adapter's", %{pubsub: pubsub} = ctx do
      assert PubSub.node_name(pubsub) == {:node_name_of, ctx.adapter_name}
    end
  end

  describe "dispatchers" do
    test "receive {pid, metadata} entries, the sender (or :none) and the message", ctx do
      pubsub = ctx.pubsub
      :ok = PubSub.subscribe(pubsub, "t", metadata: :fastlane)

      :ok = PubSub.broadcast(pubsub, "t", :m1, RecordingDispatcher)
      assert_received {:adapter, {:broadcast, _, "t", :m1, RecordingDispatcher}}
      assert_received {:dispatched, :fastlane, :none, :m1}

      me = self()
      :ok = PubSub.broadcast_from(pubsub, me, "t", :m2, RecordingDispatcher)
      assert_received {:dispatched, :fastlane, ^me, :m2}

      :ok = PubSub.local_broadcast(pubsub, "t", :m3, RecordingDispatcher)
      assert_received {:dispatched, :fastlane, :none, :m3}

      :ok = PubSub.local_broadcast_from(pubsub, me, "t", :m4, RecordingDispatcher)
      assert_received {:dispatched, :fastlane, ^me, :m4}

      :ok = PubSub.direct_broadcast(:n@h, pubsub, "t", :m5, RecordingDispatcher)
      assert_received {:adapter, {:direct_broadcast, _, :n@h, "t", :m5, RecordingDispatcher}}
    end

    test "the default dispatcher sends to every entry but `from`" do
      a = spawn(fn -> Process.sleep(:infinity) end)
      assert :ok = PubSub.dispatch([{self(), nil}, {a, nil}], a, :hi)
      assert_received :hi
      assert :ok = PubSub.dispatch([{self(), nil}], :none, :ho)
      assert_received :ho
      Process.exit(a, :kill)
    end
  end

  describe "the default adapter (PG2)" do
    setup do
      name = Module.concat(__MODULE__, "PG#{System.unique_integer([:positive])}")
      start_supervised!({PubSub, name: name}, id: name)
      {:ok, pg: name}
    end

    test "reports node(), delivers locally, and direct_broadcast to node() arrives", %{pg: pg} do
      assert PubSub.node_name(pg) == node()
      :ok = PubSub.subscribe(pg, "t")
      assert :ok = PubSub.broadcast(pg, "t", :everywhere)
      assert_received :everywhere
      assert :ok = PubSub.direct_broadcast(node(), pg, "t", :to_me)
      assert_receive :to_me, 1_000
    end
  end
end
