defmodule HyParView.LibclusterStandinTest do
  # Pins the libcluster 3.5 strategy API our strategy relies on. Runs against
  # the stand-in (no Hex) and must equally pass against the real package.
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog

  alias Cluster.Strategy
  alias Cluster.Strategy.State

  defmodule FakeNet do
    def connect(pid, result, node) do
      send(pid, {:connect, node})
      result
    end

    def disconnect(pid, result, node) do
      send(pid, {:disconnect, node})
      result
    end

    def list(nodes), do: nodes
  end

  defmodule EchoStrategy do
    use Cluster.Strategy

    def start_link([%State{config: config} = state]) do
      Agent.start_link(fn ->
        send(Keyword.fetch!(config, :test_pid), {:started, state})
        state
      end)
    end
  end

  describe "connect_nodes/4" do
    test "connects nodes not yet listed and skips listed ones and the local node" do
      log =
        capture_log(fn ->
          assert :ok =
                   Strategy.connect_nodes(
                     :topo,
                     {FakeNet, :connect, [self(), true]},
                     {FakeNet, :list, [[:old@h]]},
                     [:new@h, :old@h, node()]
                   )
        end)

      assert_received {:connect, :new@h}
      refute_received {:connect, :old@h}
      refute_received {:connect, _}
      assert log =~ "[libcluster:topo] connected to :new@h"
    end

    test "false and :ignored are failures" do
      log =
        capture_log(fn ->
          assert {:error, [{:a@h, false}]} =
                   Strategy.connect_nodes(
                     :topo,
                     {FakeNet, :connect, [self(), false]},
                     {FakeNet, :list, [[]]},
                     [:a@h]
                   )

          assert {:error, [{:b@h, :ignored}]} =
                   Strategy.connect_nodes(
                     :topo,
                     {FakeNet, :connect, [self(), :ignored]},
                     {FakeNet, :list, [[]]},
                     [:b@h]
                   )
        end)

      assert log =~ "unable to connect to :a@h"
      assert log =~ "unable to connect to :b@h: not part of network"
    end

    test "an undefined MFA raises" do
      assert_raise RuntimeError, ~r/undefined/, fn ->
        Strategy.connect_nodes(
          :topo,
          {FakeNet, :nope, []},
          {FakeNet, :list, [[]]},
          [:a@h]
        )
      end
    end
  end

  describe "disconnect_nodes/4" do
    test "disconnects only listed nodes" do
      log =
        capture_log(fn ->
          assert :ok =
                   Strategy.disconnect_nodes(
                     :topo,
                     {FakeNet, :disconnect, [self(), true]},
                     {FakeNet, :list, [[:a@h]]},
                     [:a@h, :b@h]
                   )
        end)

      assert_received {:disconnect, :a@h}
      refute_received {:disconnect, :b@h}
      assert log =~ "disconnected from :a@h"
    end

    test "false and :ignored are logged but not errors; other results are" do
      log =
        capture_log(fn ->
          for result <- [false, :ignored] do
            assert :ok =
                     Strategy.disconnect_nodes(
                       :topo,
                       {FakeNet, :disconnect, [self(), result]},
                       {FakeNet, :list, [[:a@h]]},
                       [:a@h]
                     )
          end

          assert {:error, [{:a@h, :failed}]} =
                   Strategy.disconnect_nodes(
                     :topo,
                     {FakeNet, :disconnect, [self(), :failed]},
                     {FakeNet, :list, [[:a@h]]},
                     [:a@h]
                   )
        end)

      assert log =~ "failed because we're already disconnected"
      assert log =~ "failed because it is not part of the network"
      assert log =~ "disconnect from :a@h failed with: :failed"
    end
  end

  describe "Cluster.Supervisor" do
    test "starts one strategy per topology with default MFAs and the config" do
      topologies = [
        one: [strategy: EchoStrategy, config: [test_pid: self(), x: 1]],
        two: [
          strategy: EchoStrategy,
          config: [test_pid: self()],
          connect: {FakeNet, :connect, [:c]},
          disconnect: {FakeNet, :disconnect, [:d]},
          list_nodes: {FakeNet, :list, [[]]}
        ]
      ]

      sup = start_supervised!({Cluster.Supervisor, [topologies, [name: :standin_test_sup]]})
      assert Process.whereis(:standin_test_sup) == sup

      assert_receive {:started, %State{topology: :one} = one}
      assert one.connect == {:net_kernel, :connect_node, []}
      assert one.disconnect == {:erlang, :disconnect_node, []}
      assert one.list_nodes == {:erlang, :nodes, [:connected]}
      assert one.config == [test_pid: self(), x: 1]
      assert one.meta == nil

      assert_receive {:started, %State{topology: :two} = two}
      assert two.connect == {FakeNet, :connect, [:c]}
      assert two.disconnect == {FakeNet, :disconnect, [:d]}
      assert two.list_nodes == {FakeNet, :list, [[]]}

      ids = sup |> Supervisor.which_children() |> Enum.map(&elem(&1, 0)) |> Enum.sort()
      assert ids == [:one, :two]
    end

    test "child_spec/1 of use Cluster.Strategy and the State defaults" do
      assert %{id: EchoStrategy, start: {EchoStrategy, :start_link, [[:arg]]}} =
               EchoStrategy.child_spec([:arg])

      assert %State{config: [], meta: nil, topology: nil, connect: nil} = %State{}
    end
  end
end
