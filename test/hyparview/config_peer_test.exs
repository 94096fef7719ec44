defmodule HyParView.ConfigPeerTest do
  use ExUnit.Case, async: true

  @moduletag :capture_log

  alias HyParView.{Config, Peer}

  describe "HyParView.Config.new/1" do
    test "defaults mirror the Rust core's" do
      config = Config.new([])
      assert config.active_view_size == 5
      assert config.passive_view_size == 30
      assert config.arwl == 6
      assert config.prwl == 3
      assert config.shuffle_active_count == 3
      assert config.shuffle_passive_count == 4
      assert config.shuffle_interval == 10_000
      assert config.shuffle_ttl == 6
      assert config.neighbor_timeout == 2_000
      assert config.rejoin_backoff_min == 500
      assert config.rejoin_backoff_max == 30_000
      assert config.promotion_interval == 30_000
      assert config.heartbeat_interval == 5_000
      assert config.failure_timeout == 15_000
      assert config.connect_timeout == 2_000
      assert config.handshake_timeout == 2_000
      assert config.max_frame_size == 65_536
      assert Config.new(config) == config
    end

    test "overrides are kept" do
      assert %Config{active_view_size: 3, shuffle_interval: 200} =
               Config.new(active_view_size: 3, shuffle_interval: 200)
    end

    for {key, value} <- [
          active_view_size: 0,
          active_view_size: 1025,
          passive_view_size: -1,
          arwl: 0,
          shuffle_interval: 0,
          shuffle_ttl: 256,
          neighbor_timeout: "1000",
          max_frame_size: 10,
          heartbeat_interval: 1.5
        ] do
      test "bad #{key} value #{inspect(value)} names the key" do
        error = assert_raise ArgumentError, fn -> Config.new([{unquote(key), unquote(value)}]) end
        assert error.message =~ Atom.to_string(unquote(key))
      end
    end

    test "cross-key rules name the offending key" do
      for {opts, key} <- [
            {[arwl: 2, prwl: 3], "prwl"},
            {[active_view_size: 2, shuffle_active_count: 3], "shuffle_active_count"},
            {[passive_view_size: 2, shuffle_passive_count: 3], "shuffle_passive_count"},
            {[rejoin_backoff_min: 10, rejoin_backoff_max: 5], "rejoin_backoff_max"},
            {[heartbeat_interval: 1_000, failure_timeout: 1_000], "failure_timeout"}
          ] do
        error = assert_raise ArgumentError, fn -> Config.new(opts) end
        assert error.message =~ key
      end
    end

    test "unknown keys and non-keyword input are rejected" do
      error = assert_raise ArgumentError, fn -> Config.new(active_veiw_size: 3) end
      assert error.message =~ "active_veiw_size"
      assert_raise ArgumentError, fn -> Config.new(%{active_view_size: 3}) end
      assert_raise ArgumentError, fn -> Config.new([:oops]) end
    end
  end

  describe "HyParView.Peer.new/2" do
    test "valid peers" do
      assert %Peer{id: :"a@127.0.0.1", address: {{127, 0, 0, 1}, 4500}} =
               Peer.new(:"a@127.0.0.1", {{127, 0, 0, 1}, 4500})

      assert %Peer{} = Peer.new(:"b@host.example", {{0, 0, 0, 0, 0, 0, 0, 1}, 0})
    end

    test "bad ids name id" do
      for id <- [
            "a@h",
            :noat,
            :a@b@c,
            :"a b@h",
            :"@h",
            :a@,
            nil
          ] do
        error = assert_raise ArgumentError, fn -> Peer.new(id, {{127, 0, 0, 1}, 1}) end
        assert error.message =~ "id"
      end
    end

    test "bad addresses name address" do
      for address <- [
            {{127, 0, 0}, 1},
            {{127, 0, 0, 256}, 1},
            {{127, 0, 0, 1}, 65_536},
            {"127.0.0.1", 1},
            {127, 0, 0, 1}
          ] do
        error = assert_raise ArgumentError, fn -> Peer.new(:a@h, address) end
        assert error.message =~ "address"
      end
    end
  end

  describe "HyParView.start_link/1 argument errors (raised in the caller)" do
    @peer Peer.new(:"argerr@127.0.0.1", {{127, 0, 0, 1}, 0})

    test "name the option or config key" do
      for {opts, key} <- [
            {[], "peer"},
            {[peer: :nope], "peer"},
            {[peer: @peer, contacts: [:x]], "contacts"},
            {[peer: @peer, contacts: :x], "contacts"},
            {[peer: @peer, contacts: [Peer.new(:c@h, {{127, 0, 0, 1}, 0})]], "contacts"},
            {[peer: @peer, transport: :udp], "transport"},
            {[peer: @peer, secret: ""], "secret"},
            {[peer: @peer, config: [shuffle_ttl: 0]], "shuffle_ttl"},
            {[peer: @peer, config: [bogus: 1]], "bogus"},
            {[peer: @peer, advertise_address: {0, 0, 0, 0}], "advertise_address"},
            {[peer: @peer, colour: :blue], "colour"}
          ] do
        error = assert_raise ArgumentError, fn -> HyParView.start_link(opts) end
        assert error.message =~ key, "#{inspect(opts)}: #{error.message}"
      end
    end

    test "a hand-built invalid peer struct is caught" do
      error =
        assert_raise ArgumentError, fn ->
          HyParView.start_link(peer: %Peer{id: "x", address: {{127, 0, 0, 1}, 0}})
        end

      assert error.message =~ "id"
    end
  end
end
