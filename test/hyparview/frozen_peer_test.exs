defmodule HyParView.FrozenPeerTest do
  # A peer whose OS process is stopped (SIGSTOP) keeps its TCP connections
  # open, so only heartbeats can detect it.
  use ExUnit.Case, async: false

  import HyParView.TestSupport

  alias HyParView.Peer

  @moduletag :capture_log
  @moduletag timeout: 60_000

  @failure_timeout 1_000

  test "a frozen peer is reported down within failure_timeout + 1 s" do
    local = start_server(:"frz_local@127.0.0.1")
    :ok = HyParView.subscribe(local)

    # A second, non-distributed BEAM talking to us over stdio, with our code paths.
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
    {:ok, peer, _node} = :peer.start_link(%{connection: :standard_io, args: args})
    os_pid = :peer.call(peer, :os, :getpid, []) |> List.to_string()

    on_exit(fn ->
      # Never leave a stopped VM behind, whatever happened.
      System.cmd("kill", ["-CONT", os_pid], stderr_to_stdout: true)
      System.cmd("kill", ["-KILL", os_pid], stderr_to_stdout: true)
    end)

    {:ok, _} = :peer.call(peer, :application, :ensure_all_started, [:logger])
    # Its log output would reach our terminal uncaptured.
    :ok = :peer.call(peer, Logger, :configure, [[level: :error]])

    remote_opts = [
      peer: Peer.new(:"frz_remote@127.0.0.1", {{127, 0, 0, 1}, 0}),
      contacts: [HyParView.local_peer(local)],
      secret: secret(),
      config: fast_config(failure_timeout: @failure_timeout)
    ]

    # :peer.call runs in a short-lived process; unlink so the server outlives it.
    code = "{:ok, pid} = HyParView.start_link(opts); Process.unlink(pid); pid"
    {remote, _binding} = :peer.call(peer, Code, :eval_string, [code, [opts: remote_opts]])
    assert is_pid(remote)

    assert_receive {:hyparview, {:peer_up, %Peer{id: :"frz_remote@127.0.0.1"}}}, 5_000

    {_, 0} = System.cmd("kill", ["-STOP", os_pid])
    stopped_at = System.monotonic_time(:millisecond)

    assert_receive {:hyparview, {:peer_down, %Peer{id: :"frz_remote@127.0.0.1"}}},
                   @failure_timeout + 1_000

    elapsed = System.monotonic_time(:millisecond) - stopped_at
    assert elapsed <= @failure_timeout + 1_000
    assert HyParView.info(local).counters.failures_detected >= 1

    {_, 0} = System.cmd("kill", ["-CONT", os_pid])
    :ok = :peer.stop(peer)
  end
end
