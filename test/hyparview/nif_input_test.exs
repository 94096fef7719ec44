defmodule HyParView.NifInputTest do
  # HyParView.Native.start/2 called directly with hostile inputs: every one is
  # a clean {:error, {:invalid_config, key, message}}, sizes are refused
  # before anything is copied, integers are never truncated.
  use ExUnit.Case, async: true

  alias HyParView.Native

  defp opts(overrides) do
    Map.merge(
      %{
        id: "nifinput@127.0.0.1",
        listen_ip: {127, 0, 0, 1},
        listen_port: 0,
        advertise_ip: {127, 0, 0, 1},
        advertise_port: nil,
        incarnation: 1,
        seed: 1,
        secret: "s",
        contacts: [],
        runtime_threads: 1,
        config: %{}
      },
      overrides
    )
  end

  defp start(overrides) do
    case Native.start(self(), opts(overrides)) do
      {:ok, resource} ->
        :ok = Native.stop(resource)
        assert_receive {:hyparview_nif, :stopped}, 5_000
        :ok

      other ->
        other
    end
  end

  defp assert_invalid(overrides, key) do
    assert {:error, {:invalid_config, ^key, message}} = start(overrides)
    assert is_binary(message)
  end

  test "a well-formed start succeeds (the baseline the others differ from)" do
    assert :ok = start(%{contacts: [{"c@127.0.0.1", {127, 0, 0, 1}, 4_600}]})
  end

  test "out-of-range integers are errors, not truncated" do
    assert_invalid(%{listen_ip: {300, 0, 0, 1}}, :listen_ip)
    assert_invalid(%{advertise_ip: {127, 0, 0, 256}}, :advertise_ip)
    assert_invalid(%{advertise_ip: {0, 0, 0, 0, 0, 0, 0, 70_000}}, :advertise_ip)
    assert_invalid(%{listen_port: 70_136}, :listen_port)
    assert_invalid(%{advertise_port: 70_136}, :advertise_port)
    assert_invalid(%{listen_port: -1}, :listen_port)
    assert_invalid(%{contacts: [{"c@127.0.0.1", {127, 0, 0, 1}, 70_136}]}, :contacts)
    assert_invalid(%{contacts: [{"c@127.0.0.1", {300, 0, 0, 1}, 4_600}]}, :contacts)
    assert_invalid(%{incarnation: Bitwise.bsl(1, 64)}, :incarnation)
    assert_invalid(%{runtime_threads: 65}, :runtime_threads)
    assert_invalid(%{config: %{active_view_size: Bitwise.bsl(1, 70)}}, :active_view_size)
    assert_invalid(%{config: %{max_frame_size: Bitwise.bsl(1, 32) + 65_536}}, :max_frame_size)
    assert_invalid(%{config: %{shuffle_ttl: 256}}, :shuffle_ttl)
  end

  test "improper and malformed lists are clean errors" do
    assert_invalid(%{contacts: [{"c@127.0.0.1", {127, 0, 0, 1}, 4_600} | :tail]}, :contacts)
    assert_invalid(%{contacts: [:x | :y]}, :contacts)
    assert_invalid(%{contacts: :not_a_list}, :contacts)
    assert_invalid(%{contacts: [{"c@127.0.0.1", {127, 0, 0, 1}}]}, :contacts)
    assert_invalid(%{config: [active_view_size: 3]}, :config)
    assert_invalid(%{config: %{"active_view_size" => 3}}, :config)
    assert_invalid(%{config: %{no_such_key: 3}}, :no_such_key)
    assert {:error, {:invalid_config, :config, _}} = Native.start(self(), [:not, :a, :map])
  end

  test "oversized ids, secrets and contact lists are refused without being copied" do
    big = :binary.copy("a", 64 * 1024 * 1024)
    contacts = List.duplicate({"c@127.0.0.1", {127, 0, 0, 1}, 4_600}, 1_000_000)
    # Built with :binary.copy, not `<>`: an appended binary is writable, and
    # the VM shrinks it to size (a 64 MB realloc, ~30 ms) the first time any
    # NIF inspects it, before our code runs.
    big_id = :binary.copy("a@", 32 * 1024 * 1024)

    for {overrides, key} <- [
          {%{id: big_id}, :id},
          {%{secret: big}, :secret},
          {%{secret: ""}, :secret},
          {%{contacts: contacts}, :contacts},
          {%{contacts: [{big_id, {127, 0, 0, 1}, 4_600}]}, :contacts}
        ] do
      # A full collection first, so the timing is the NIF's and not a GC of
      # the million-element list this process holds.
      :erlang.garbage_collect()
      {micros, result} = :timer.tc(fn -> start(overrides) end)
      assert {:error, {:invalid_config, ^key, _}} = result
      # Copying 64 MB (or walking 1M contacts) took 30-200 ms before the checks
      # moved ahead of the copies; refusing now costs microseconds.
      assert micros < 20_000, "#{key}: #{micros} µs"
    end
  end

  test "the largest accepted inputs start well within a millisecond or two" do
    contacts = for i <- 1..1_024, do: {"c#{i}@127.0.0.1", {127, 0, 0, 1}, 4_600}
    id = String.duplicate("n", 200) <> "@127.0.0.1"
    {micros, :ok} = :timer.tc(fn -> start(%{id: id, contacts: contacts}) end)
    # start + stop round trip, including the wait for :stopped.
    assert micros < 1_000_000
    assert_invalid(%{contacts: contacts ++ [hd(contacts)]}, :contacts)
  end

  test "the default secret is SHA-256 of the cookie with its label; long input is refused" do
    for cookie <- ["", "secret", String.duplicate("c", 255)] do
      assert HyParView.Native.cookie_secret(cookie) ==
               {:ok, :crypto.hash(:sha256, "hyparview-cookie:" <> cookie)}
    end

    assert HyParView.Native.cookie_secret(String.duplicate("c", 1_025)) == {:error, :too_long}
  end
end
