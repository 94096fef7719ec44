defmodule HyParView.Config do
  @moduledoc """
  HyParView protocol and runtime parameters.

  Protocol keys (defaults mirror `native/hyparview/src/config.rs`, which are
  the paper's): `active_view_size` (5), `passive_view_size` (30), `arwl` (6,
  Active Random Walk Length), `prwl` (3, Passive Random Walk Length),
  `shuffle_active_count` (ka, 3), `shuffle_passive_count` (kp, 4),
  `shuffle_interval` (10_000 ms), `shuffle_ttl` (6), `neighbor_timeout`
  (2_000 ms), `rejoin_backoff_min` (500 ms), `rejoin_backoff_max` (30_000 ms),
  `promotion_interval` (30_000 ms).

  Runtime (transport) keys: `heartbeat_interval` (1_000 ms), `failure_timeout`
  (5_000 ms, an active peer silent this long is declared failed),
  `connect_timeout` (2_000 ms), `handshake_timeout` (2_000 ms),
  `max_frame_size` (65_536 bytes).

  Cross-key rules: `prwl <= arwl`, `shuffle_active_count <= active_view_size`,
  `shuffle_passive_count <= passive_view_size`,
  `rejoin_backoff_min <= rejoin_backoff_max`,
  `heartbeat_interval < failure_timeout`.
  """

  # {key, default, min, max}; max nil = u32 range for times/counts.
  @u32 4_294_967_295
  @specs [
    {:active_view_size, 5, 1, 1024},
    {:passive_view_size, 30, 0, 65_536},
    {:arwl, 6, 1, 255},
    {:prwl, 3, 0, 255},
    {:shuffle_active_count, 3, 0, 1024},
    {:shuffle_passive_count, 4, 0, 65_536},
    {:shuffle_interval, 10_000, 1, @u32},
    {:shuffle_ttl, 6, 1, 255},
    {:neighbor_timeout, 2_000, 1, @u32},
    {:rejoin_backoff_min, 500, 1, @u32},
    {:rejoin_backoff_max, 30_000, 1, @u32},
    {:promotion_interval, 30_000, 1, @u32},
    {:heartbeat_interval, 1_000, 1, @u32},
    {:failure_timeout, 5_000, 1, @u32},
    {:connect_timeout, 2_000, 1, @u32},
    {:handshake_timeout, 2_000, 1, @u32},
    {:max_frame_size, 65_536, 1_024, 16_777_216}
  ]

  @keys Enum.map(@specs, &elem(&1, 0))

  defstruct Enum.map(@specs, fn {k, default, _, _} -> {k, default} end)

  @type t :: %__MODULE__{
          active_view_size: pos_integer,
          passive_view_size: non_neg_integer,
          arwl: pos_integer,
          prwl: non_neg_integer,
          shuffle_active_count: non_neg_integer,
          shuffle_passive_count: non_neg_integer,
          shuffle_interval: pos_integer,
          shuffle_ttl: pos_integer,
          neighbor_timeout: pos_integer,
          rejoin_backoff_min: pos_integer,
          rejoin_backoff_max: pos_integer,
          promotion_interval: pos_integer,
          heartbeat_interval: pos_integer,
          failure_timeout: pos_integer,
          connect_timeout: pos_integer,
          handshake_timeout: pos_integer,
          max_frame_size: pos_integer
        }

  @doc """
  Builds a validated config from a keyword list (missing keys take their
  defaults). An existing `%HyParView.Config{}` is re-validated and returned.

  Raises `ArgumentError` naming the key for an unknown key, a non-integer or
  out-of-range value, or a violated cross-key rule.

      iex> HyParView.Config.new(active_view_size: 4).active_view_size
      4
  """
  @spec new(keyword | t) :: t
  def new(%__MODULE__{} = config), do: config |> Map.from_struct() |> Map.to_list() |> new()

  def new(opts) when is_list(opts) do
    config =
      Enum.reduce(opts, %__MODULE__{}, fn
        {key, value}, acc when key in @keys -> Map.put(acc, key, value)
        {key, _value}, _acc -> raise ArgumentError, unknown_key(key)
        other, _acc -> raise ArgumentError, "invalid HyParView config entry: #{inspect(other)}"
      end)

    Enum.each(@specs, fn {key, _default, min, max} ->
      value = Map.fetch!(config, key)

      unless is_integer(value) and value >= min and value <= max do
        raise ArgumentError,
              "invalid HyParView config #{key}: #{inspect(value)} " <>
                "(expected an integer in #{min}..#{max})"
      end
    end)

    check(config.prwl <= config.arwl, :prwl, "must not exceed arwl (#{config.arwl})")

    check(
      config.shuffle_active_count <= config.active_view_size,
      :shuffle_active_count,
      "must not exceed active_view_size (#{config.active_view_size})"
    )

    check(
      config.shuffle_passive_count <= config.passive_view_size,
      :shuffle_passive_count,
      "must not exceed passive_view_size (#{config.passive_view_size})"
    )

    check(
      config.rejoin_backoff_max >= config.rejoin_backoff_min,
      :rejoin_backoff_max,
      "must be at least rejoin_backoff_min (#{config.rejoin_backoff_min})"
    )

    check(
      config.failure_timeout > config.heartbeat_interval,
      :failure_timeout,
      "must be greater than heartbeat_interval (#{config.heartbeat_interval})"
    )

    config
  end

  def new(other) do
    raise ArgumentError,
          "invalid HyParView config: expected a keyword list, got #{inspect(other)}"
  end

  @doc "The default configuration."
  @spec default() :: t
  def default, do: %__MODULE__{}

  @doc "Every accepted key."
  @spec keys() :: [atom]
  def keys, do: @keys

  @doc "The config as the plain map the NIF expects (`docs/NIF_API.md`)."
  @spec to_map(t) :: %{atom => non_neg_integer}
  def to_map(%__MODULE__{} = config), do: Map.from_struct(config)

  defp check(true, _key, _msg), do: :ok

  defp check(false, key, msg),
    do: raise(ArgumentError, "invalid HyParView config #{key}: #{msg}")

  defp unknown_key(key) do
    "unknown HyParView config key #{inspect(key)} (known keys: " <>
      Enum.map_join(@keys, ", ", &Atom.to_string/1) <> ")"
  end
end
