defmodule HyParView.ConfigSchemaTest do
  # The config schema is declared once, in Rust; HyParView.Config carries a
  # copy for its struct and docs. This test is what keeps the copy honest.
  use ExUnit.Case, async: true

  alias HyParView.Config

  test "HyParView.Config's table equals the schema the NIF reports" do
    native = Config.schema()
    assert native != []
    assert Enum.map(native, & &1.key) == Enum.map(Config.specs(), & &1.key)

    for {ours, theirs} <- Enum.zip(Config.specs(), native) do
      assert ours == theirs, "key #{ours.key}: Elixir #{inspect(ours)} != Rust #{inspect(theirs)}"
    end
  end

  test "struct defaults are the schema's defaults" do
    defaults = Map.from_struct(Config.default())
    assert map_size(defaults) == length(Config.schema())

    for %{key: key, default: default} <- Config.schema() do
      assert Map.fetch!(defaults, key) == default, "#{key}"
    end
  end

  test "the README's config tables list every key with its default" do
    readme = File.read!(Path.expand("../../README.md", __DIR__))

    # Defaults are written as integers, optionally with a unit: 3000 ms, 64 MiB.
    scale = %{"" => 1, "ms" => 1, "KiB" => 1024, "MiB" => 1024 * 1024}
    row = ~r/^\| `([a-z_0-9]+)` \| ([0-9_]+) ?(ms|KiB|MiB)? \|/m

    documented =
      for [_, key, n | unit] <- Regex.scan(row, readme),
          into: %{},
          do: {key, String.to_integer(String.replace(n, "_", "")) * scale[List.first(unit, "")]}

    for %{key: key, default: default} <- Config.schema() do
      assert Map.get(documented, Atom.to_string(key)) == default,
             "README.md: #{key} should be documented with default #{default}, " <>
               "found #{inspect(Map.get(documented, Atom.to_string(key)))}"
    end
  end

  test "every key accepts its bounds and rejects one past them, naming the key" do
    # Related keys relaxed so that the cross-key rules allow every bound.
    relaxed = [
      active_view_size: 1024,
      passive_view_size: 65_536,
      arwl: 255,
      prwl: 0,
      shuffle_active_count: 0,
      shuffle_passive_count: 0,
      rejoin_backoff_min: 1,
      rejoin_backoff_max: 86_400_000,
      heartbeat_interval: 1,
      failure_timeout: 3_600_000,
      max_broadcast_size: 1,
      broadcast_cache_bytes: 17_179_869_184,
      broadcast_queue_bytes: 17_179_869_184,
      graft_timeout: 1,
      gap_timeout: 3_600_000
    ]

    # The bounds a cross-key rule forbids (heartbeat_interval < failure_timeout,
    # gap_timeout > 1.5 × graft_timeout).
    forbidden = [
      heartbeat_interval: 3_600_000,
      failure_timeout: 1,
      graft_timeout: 3_600_000,
      gap_timeout: 1
    ]

    for %{key: key, min: min, max: max} <- Config.schema() do
      with_value = fn value -> Keyword.put(relaxed, key, value) end

      for value <- [min, max], {key, value} not in forbidden do
        assert Map.fetch!(Config.new(with_value.(value)), key) == value
      end

      for value <- [max + 1, min - 1], value >= 0 do
        error = assert_raise ArgumentError, fn -> Config.new(with_value.(value)) end
        assert error.message =~ "config #{key}:", error.message
      end
    end
  end

  test "the transport knobs are settable from Elixir" do
    config = Config.new(idle_timeout: 5_000, write_queue: 16, max_unauthenticated: 8)
    assert %Config{idle_timeout: 5_000, write_queue: 16, max_unauthenticated: 8} = config
    assert Config.to_map(config).write_queue == 16

    for key <- [:idle_timeout, :write_queue, :max_unauthenticated] do
      error = assert_raise ArgumentError, fn -> Config.new([{key, 0}]) end
      assert error.message =~ Atom.to_string(key)
    end
  end
end
