defmodule HyParView.ResourcesTest do
  # Process-wide OS resource counts: must not run alongside other tests
  # (async: false modules run one at a time, after the async ones).
  use ExUnit.Case, async: false

  import HyParView.TestSupport

  alias HyParView.Peer

  @moduletag :capture_log
  @moduletag timeout: 120_000

  @cycles 200
  # The runtime's worker threads are created once; allow a small fixed slack
  # for VM-internal fluctuation (e.g. a dirty/async thread being spawned).
  @slack 2

  test "#{@cycles} start/stop cycles leave OS threads and fds where they started" do
    anchor = start_server(:"res_anchor@127.0.0.1")
    %Peer{address: {_, anchor_port}} = contact = HyParView.local_peer(anchor)

    cycle = fn i ->
      {:ok, pid} =
        HyParView.start_link(
          peer: Peer.new(:"res_cycle@127.0.0.1", {{127, 0, 0, 1}, 0}),
          contacts: [contact],
          secret: secret(),
          config: fast_config()
        )

      # Some cycles run long enough to join (connections, heartbeats).
      if rem(i, 10) == 0 do
        eventually(fn -> HyParView.active_view(pid) != [] end, 3_000, "cycle #{i} did not join")
      end

      :ok = HyParView.stop(pid)

      # And the error path: port taken.
      if rem(i, 20) == 0 do
        assert {:error, {:listen_failed, :eaddrinuse}} =
                 HyParView.start_link(
                   peer: Peer.new(:"res_busy@127.0.0.1", {{127, 0, 0, 1}, anchor_port}),
                   secret: secret()
                 )
      end
    end

    # Warm-up: the shared runtime and its threads are created on first use.
    Enum.each(1..10, cycle)
    # The anchor must have dropped every cycle peer before we count its fds.
    eventually(fn -> HyParView.active_view(anchor) == [] end, 5_000, "anchor kept a peer")
    threads_before = os_threads()
    fds_before = open_fds()

    Enum.each(1..@cycles, cycle)

    eventually(fn -> HyParView.active_view(anchor) == [] end, 5_000, "anchor kept a peer")

    # Connections closed by the peer are reaped asynchronously by the anchor.
    eventually(
      fn -> os_threads() <= threads_before + @slack and open_fds() <= fds_before + @slack end,
      5_000,
      "resources leaked: threads #{threads_before} -> #{os_threads()}, " <>
        "fds #{fds_before} -> #{open_fds()}"
    )
  end
end
