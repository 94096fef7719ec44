defmodule HyParView.Discovery.Schedule do
  @moduledoc """
  When `HyParView.Discovery` resolves its sources: a pure policy with an
  injected clock (`now` in ms) and a seeded RNG, so it can be tested
  without timers.

    * at start (the first run is due at once);
    * while the node is *isolated* (empty active view), one run per gap;
    * while the active view is *short* (below `active_view_size`) and has
      been so for at least `interval`, one run per gap;
    * otherwise every `refresh` (so new nodes are learned).

  The gap is `interval` doubled for every run in a row that turned up no
  new contact (capped at `refresh`), back to `interval` when one does or
  the view fills up. Gaps and refreshes are jittered by ±25%.
  """

  @enforce_keys [:interval, :refresh, :rand]
  defstruct [
    :interval,
    :refresh,
    :rand,
    :last_run,
    :short_since,
    isolated: true,
    misses: 0,
    gap: 0,
    refresh_gap: 0
  ]

  @type t :: %__MODULE__{
          interval: pos_integer,
          refresh: pos_integer,
          rand: :rand.state(),
          last_run: integer | nil,
          short_since: integer | nil,
          isolated: boolean,
          misses: non_neg_integer,
          gap: non_neg_integer,
          refresh_gap: non_neg_integer
        }

  @doc "A schedule whose first run is due at once; `seed` makes the jitter reproducible."
  @spec new(pos_integer, pos_integer, integer) :: t
  def new(interval, refresh, seed \\ :erlang.unique_integer()) do
    %__MODULE__{interval: interval, refresh: refresh, rand: :rand.seed_s(:exsss, seed)}
  end

  @doc """
  The active view now has `active` of `size` peers. Starts the shortness
  clock when it becomes short, clears it (and the backoff) when full.
  """
  @spec view(t, non_neg_integer, pos_integer, integer) :: t
  def view(s, active, size, now) do
    cond do
      active >= size -> %{s | short_since: nil, isolated: false, misses: 0}
      s.short_since == nil -> %{s | short_since: now, isolated: active == 0}
      true -> %{s | isolated: active == 0}
    end
  end

  @doc "A run finished at `now`; `learned?` is true when it found a contact not known before."
  @spec ran(t, integer, boolean) :: t
  def ran(s, now, learned?) do
    # Backoff only counts runs made while short; a full view keeps none.
    misses = if learned? or s.short_since == nil, do: 0, else: min(s.misses + 1, 30)
    base = min(s.refresh, s.interval * Bitwise.bsl(1, min(misses, 20)))
    {gap, rand} = jitter(base, s.rand)
    {refresh_gap, rand} = jitter(s.refresh, rand)
    %{s | last_run: now, misses: misses, gap: gap, refresh_gap: refresh_gap, rand: rand}
  end

  @doc "Milliseconds from `now` until the next run is due (0 = due now)."
  @spec delay(t, integer) :: non_neg_integer
  def delay(%{last_run: nil}, _now), do: 0

  def delay(s, now) do
    refresh = s.last_run + s.refresh_gap

    due =
      cond do
        s.isolated -> min(refresh, s.last_run + s.gap)
        s.short_since != nil -> min(refresh, max(s.short_since + s.interval, s.last_run + s.gap))
        true -> refresh
      end

    max(due - now, 0)
  end

  defp jitter(ms, rand) do
    {u, rand} = :rand.uniform_s(rand)
    {round(ms * (0.75 + 0.5 * u)), rand}
  end
end
