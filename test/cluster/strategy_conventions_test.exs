defmodule Cluster.Strategy.HyParViewConventionsTest do
  # libcluster conventions: `use Cluster.Strategy`, and `[libcluster:<topology>]`
  # on every log line of the strategy and of the server it starts.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Cluster.Strategy.HyParView, as: Strategy
  alias Cluster.Strategy.State

  test "the strategy uses Cluster.Strategy (behaviour and its child_spec/1)" do
    behaviours = Strategy.module_info(:attributes) |> Keyword.get_values(:behaviour)
    assert Cluster.Strategy in List.flatten(behaviours)

    assert %{id: Strategy, type: :worker, start: {Strategy, :start_link, [[:args]]}} =
             Strategy.child_spec([:args])
  end

  test "the strategy's own log lines carry the topology prefix" do
    state = %State{
      topology: :conventions_topology,
      connect: {:net_kernel, :connect_node, []},
      disconnect: {:erlang, :disconnect_node, []},
      list_nodes: {:erlang, :nodes, [:connected]},
      config: [local_peer: HyParView.Peer.new(:"other@127.0.0.1", {{127, 0, 0, 1}, 0})]
    }

    log = capture_log(fn -> assert {:error, _} = Strategy.start_link([state]) end)
    assert log =~ "[libcluster:conventions_topology] Cluster.Strategy.HyParView refusing"
  end

  test "a server started with the strategy's prefix logs with it" do
    {:ok, server} =
      HyParView.start_link(
        peer: HyParView.Peer.new(:"prefixed@127.0.0.1", {{127, 0, 0, 1}, 0}),
        secret: "s",
        log_prefix: "[libcluster:conventions_topology]"
      )

    log =
      capture_log(fn ->
        # What a malformed NIF report makes the server log (a warning).
        send(server, {:hyparview_nif, :peer_up, :malformed})
        # A call is handled after the message: the line has been logged.
        _ = :sys.get_state(server)
        HyParView.stop(server)
      end)

    assert log =~ "[libcluster:conventions_topology] prefixed@127.0.0.1: ignoring peer_up"
  end
end
