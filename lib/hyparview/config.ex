defmodule HyParView.Config do
  # The schema is declared once, in Rust (`KEYS` in native/hyparview/src/config.rs
  # and `TRANSPORT_KEYS` in native/hyparview_transport/src/lib.rs), and
  # validated there: new/1 asks the NIF. This copy exists for the struct, the
  # typespec and the docs; test/hyparview/config_schema_test.exs fails when it
  # differs from schema/0 (what the NIF reports) in any key, default, range,
  # unit or meaning.
  # {key, layer, default, min, max, unit, meaning}
  @specs [
    {:active_view_size, :protocol, 5, 1, 1024, :count,
     "maximum size of the active view (peers with an open, monitored link)"},
    {:passive_view_size, :protocol, 30, 0, 65_536, :count,
     "maximum size of the passive view (backup candidates, not connected)"},
    {:arwl, :protocol, 6, 1, 255, :count,
     "Active Random Walk Length: the TTL a FORWARDJOIN starts with"},
    {:prwl, :protocol, 3, 0, 255, :count,
     "Passive Random Walk Length: the TTL at which a FORWARDJOIN also lands in the passive view"},
    {:shuffle_active_count, :protocol, 3, 0, 1024, :count,
     "ka: active-view peers included in a SHUFFLE"},
    {:shuffle_passive_count, :protocol, 4, 0, 65_536, :count,
     "kp: passive-view peers included in a SHUFFLE"},
    {:shuffle_interval, :protocol, 10_000, 1, 86_400_000, :ms,
     "period between SHUFFLEs started by this node"},
    {:shuffle_ttl, :protocol, 6, 1, 255, :count, "TTL of the SHUFFLE random walk"},
    {:neighbor_timeout, :protocol, 2_000, 1, 86_400_000, :ms,
     "wait for a NEIGHBOR (or JOIN) reply before trying another candidate; should exceed connect + handshake + one round trip"},
    {:rejoin_backoff_min, :protocol, 500, 1, 86_400_000, :ms,
     "first delay before re-joining through the contacts when isolated; doubles (with jitter) per attempt"},
    {:rejoin_backoff_max, :protocol, 30_000, 1, 86_400_000, :ms, "cap of the rejoin backoff"},
    {:promotion_interval, :protocol, 30_000, 1, 86_400_000, :ms,
     "period of the low-rate passive-peer promotion that lets healed partitions merge when every active view is full (larger = less churn, slower merging)"},
    {:heartbeat_interval, :transport, 5_000, 1, 3_600_000, :ms,
     "a connection to an active peer that carried nothing from us for this long gets a ping"},
    {:failure_timeout, :transport, 15_000, 1, 3_600_000, :ms,
     "an active peer silent this long is declared failed"},
    {:connect_timeout, :transport, 2_000, 1, 3_600_000, :ms, "TCP connect deadline of a dial"},
    {:handshake_timeout, :transport, 2_000, 1, 3_600_000, :ms,
     "deadline of the authentication handshake on a new connection"},
    {:max_frame_size, :transport, 65_536, 1_024, 16_777_216, :bytes,
     "largest frame accepted; a longer length prefix closes the connection unread"},
    {:idle_timeout, :transport, 2_000, 1, 3_600_000, :ms,
     "a connection to a peer outside the active view is closed after this long unused"},
    {:write_queue, :transport, 1_024, 1, 1_048_576, :count,
     "frames queued per connection before the peer counts as failed"},
    {:max_unauthenticated, :transport, 128, 1, 65_536, :count,
     "accepted connections that may be in their handshake at once; when full the oldest is dropped"},
    {:max_unauthenticated_per_ip, :transport, 32, 1, 65_536, :count,
     "of those, at most this many from one source IP (that IP's oldest is dropped)"},
    {:preauth_timeout, :transport, 1_000, 1, 3_600_000, :ms,
     "an accepted connection must prove the secret within this long (capped by handshake_timeout)"},
    {:log_interval, :transport, 60_000, 1, 3_600_000, :ms,
     "per-address rejection reports at most once per this interval, with a count"},
    {:max_broadcast_size, :transport, 1_048_576, 1, 67_108_864, :bytes,
     "largest broadcast payload; broadcast frames may exceed max_frame_size by this much"},
    {:gap_timeout, :transport, 3_000, 1, 3_600_000, :ms,
     "a broadcast waiting for an earlier one of its origin is delivered after this long, the gap skipped"},
    {:ihave_interval, :transport, 50, 1, 3_600_000, :ms,
     "lazy-push announcements (IHAVE) are batched for at most this long"},
    {:graft_timeout, :transport, 1_000, 1, 3_600_000, :ms,
     "an announced broadcast missing this long (plus jitter) is requested with a GRAFT"},
    {:graft_retry_timeout, :transport, 250, 1, 3_600_000, :ms,
     "after a GRAFT, wait this long before grafting the next announcer"},
    {:broadcast_cache_messages, :transport, 4_096, 1, 1_048_576, :count,
     "recent broadcasts kept to answer GRAFTs"},
    {:broadcast_cache_bytes, :transport, 67_108_864, 1, 17_179_869_184, :bytes,
     "payload bytes of those at most (at least max_broadcast_size)"},
    {:broadcast_cache_age, :transport, 30_000, 1, 3_600_000, :ms,
     "a cached broadcast is kept at most this long"},
    {:broadcast_queue_bytes, :transport, 8_388_608, 1, 17_179_869_184, :bytes,
     "broadcast bytes queued per connection (and for local broadcasts) before more are dropped (at least max_broadcast_size)"}
  ]

  @keys Enum.map(@specs, &elem(&1, 0))

  @moduledoc """
  HyParView protocol and transport parameters, set through the
  `hyparview_config` of a topology or the `:config` option of
  `HyParView.start_link/1`. Every value is a non-negative integer.

  #{Enum.map_join(@specs, "\n", fn {key, layer, default, min, max, unit, meaning} -> "  * `#{key}` (#{layer}, #{unit}, default #{default}, #{min}..#{max}): #{meaning}." end)}

  Cross-key rules: `prwl <= arwl`, `shuffle_active_count <= active_view_size`,
  `shuffle_passive_count <= passive_view_size`,
  `rejoin_backoff_min <= rejoin_backoff_max`,
  `heartbeat_interval < failure_timeout`,
  `gap_timeout > 1.5 × graft_timeout`,
  `broadcast_cache_bytes >= max_broadcast_size`,
  `broadcast_queue_bytes >= max_broadcast_size`.

  The key table is declared once, in the Rust core, which also validates;
  `schema/0` returns it as the NIF sees it.
  """

  defstruct Enum.map(@specs, fn {key, _layer, default, _min, _max, _unit, _meaning} ->
              {key, default}
            end)

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
          max_frame_size: pos_integer,
          idle_timeout: pos_integer,
          write_queue: pos_integer,
          max_unauthenticated: pos_integer,
          max_unauthenticated_per_ip: pos_integer,
          preauth_timeout: pos_integer,
          log_interval: pos_integer,
          max_broadcast_size: pos_integer,
          gap_timeout: pos_integer,
          ihave_interval: pos_integer,
          graft_timeout: pos_integer,
          graft_retry_timeout: pos_integer,
          broadcast_cache_messages: pos_integer,
          broadcast_cache_bytes: pos_integer,
          broadcast_cache_age: pos_integer,
          broadcast_queue_bytes: pos_integer
        }

  @typedoc "One key of the schema, as `schema/0` returns it."
  @type key_spec :: %{
          key: atom,
          layer: :protocol | :transport,
          default: non_neg_integer,
          min: non_neg_integer,
          max: non_neg_integer,
          unit: :count | :ms | :bytes,
          meaning: String.t()
        }

  @doc """
  Builds a validated config from a keyword list (missing keys take their
  defaults). An existing `%HyParView.Config{}` is re-validated and returned.

  Raises `ArgumentError` naming the key for an unknown key, a non-integer or
  out-of-range value, or a violated cross-key rule. The checks are the Rust
  core's (through the NIF), so they are the same ones `start_link/1` applies.

      iex> HyParView.Config.new(active_view_size: 4).active_view_size
      4
  """
  @spec new(keyword | t) :: t
  def new(%__MODULE__{} = config), do: config |> Map.from_struct() |> Map.to_list() |> new()

  def new(opts) when is_list(opts) do
    unless Keyword.keyword?(opts) do
      bad = Enum.find(opts, &(not match?({key, _} when is_atom(key), &1)))
      raise ArgumentError, "invalid HyParView config entry: #{inspect(bad)}"
    end

    case native(:validate_config, [Map.new(opts)]) do
      :ok ->
        struct!(__MODULE__, opts)

      {:error, {:invalid_config, key, message}} ->
        got =
          case Keyword.fetch(opts, key) do
            {:ok, value} -> " (got #{inspect(value, limit: 5)})"
            :error -> ""
          end

        hint = if key in @keys, do: "", else: " (known keys: #{Enum.join(@keys, ", ")})"
        raise ArgumentError, "invalid HyParView config #{key}: #{message}#{got}#{hint}"
    end
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

  @doc """
  The schema as the Rust core declares it (through the NIF): one map per
  key with `:key`, `:layer`, `:default`, `:min`, `:max`, `:unit` and
  `:meaning`, protocol keys first.
  """
  @spec schema() :: [key_spec]
  def schema, do: native(:schema, [])

  @doc false
  # This module's copy of the schema, in the shape of schema/0 (for the test
  # that keeps the two equal).
  @spec specs() :: [key_spec]
  def specs do
    for {key, layer, default, min, max, unit, meaning} <- @specs do
      %{
        key: key,
        layer: layer,
        default: default,
        min: min,
        max: max,
        unit: unit,
        meaning: meaning
      }
    end
  end

  @doc "The config as the plain map the NIF expects."
  @spec to_map(t) :: %{atom => non_neg_integer}
  def to_map(%__MODULE__{} = config), do: Map.from_struct(config)

  defp native(fun, args) do
    case HyParView.Native.loaded() do
      :ok -> apply(HyParView.Native, fun, args)
      {:error, message} -> raise RuntimeError, message
    end
  end
end
