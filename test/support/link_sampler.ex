defmodule HyParView.LinkSampler do
  @moduledoc """
  Samples, inside a booted node, `Node.list/0` and the HyParView active view
  together every `interval` ms, and judges the samples in the controlling VM.

  A sample is `{os_time_ms, node_list, active_view}` (both sorted); only
  samples that differ from the previous one are kept, so memory grows with
  view changes, not with time. OS time is shared by every node on one
  machine, so samples of different nodes and the controller's kill time are
  comparable.
  """

  @name :hyparview_link_sampler

  @typedoc "One kept sample: when, `Node.list/0`, active view ids."
  @type sample :: {integer(), [node()], [node()]}

  @doc "Starts the sampler on this node (called over `:peer.call`)."
  @spec start(atom(), pos_integer()) :: :ok
  def start(topology, interval) do
    pid = :erlang.spawn(fn -> loop(topology, interval, [], nil, 0, 0) end)
    true = Process.register(pid, @name)
    :ok
  end

  @doc """
  Stops the sampler on this node and returns `{samples, count, max_gap_ms}`:
  the kept samples in time order, how many were taken, and the longest time
  between two consecutive samples (a stalled sampler proves nothing).
  """
  @spec collect() :: {[sample()], non_neg_integer(), non_neg_integer()}
  def collect do
    ref = make_ref()
    send(@name, {:collect, self(), ref})

    receive do
      {^ref, result} -> result
    after
      5_000 -> exit(:sampler_timeout)
    end
  end

  defp loop(topology, interval, kept, last_t, count, max_gap) do
    receive do
      {:collect, from, ref} -> send(from, {ref, {Enum.reverse(kept), count, max_gap}})
    after
      interval ->
        t = System.os_time(:millisecond)
        list = Enum.sort(Node.list())
        active = active_ids(topology)
        gap = if last_t, do: max(max_gap, t - last_t), else: 0

        kept =
          case kept do
            [{_, ^list, ^active} | _] -> kept
            _ -> [{t, list, active} | kept]
          end

        loop(topology, interval, kept, t, count + 1, gap)
    end
  end

  defp active_ids(topology) do
    case Cluster.Strategy.HyParView.server(topology) do
      nil -> []
      server -> server |> HyParView.active_view() |> Enum.map(& &1.id) |> Enum.sort()
    end
  catch
    :exit, _ -> []
  end

  @doc """
  Judges one node's samples, taken until `end_t`. `gone_at.(t)` lists the
  nodes that were dead at time `t`; they are left out of the comparison
  (their links drop at once, the overlay notices a moment later; that lag
  is the overlay's, not the strategy's).

  Returns `%{max_links: n, episodes: k, max_lag: ms, worst: sample}` where
  `max_lag` is, over every stretch of samples in which `Node.list/0` differs
  from the active view, the time from the stretch's start or its latest
  active-view change (whichever is later) to the first sample where they
  agree again (or `end_t`).
  """
  @spec judge([sample()], integer(), (integer() -> [node()])) :: map()
  def judge(samples, end_t, gone_at) do
    max_links = samples |> Enum.map(fn {_, list, _} -> length(list) end) |> Enum.max(fn -> 0 end)

    mismatch? = fn {t, list, active} ->
      gone = gone_at.(t)
      list -- gone != active -- gone
    end

    {episodes, lags, _open, _prev_active} =
      Enum.reduce(samples, {0, [], nil, nil}, fn {t, _, active} = s, {n, lags, open, prev} ->
        changed? = prev != nil and active != prev

        case {open, mismatch?.(s)} do
          {nil, false} -> {n, lags, nil, active}
          {nil, true} -> {n + 1, lags, {t, s}, active}
          {{ref, first}, true} -> {n, lags, {if(changed?, do: t, else: ref), first}, active}
          {{ref, first}, false} -> {n, [{t - ref, first} | lags], nil, active}
        end
      end)
      |> then(fn {n, lags, open, prev} ->
        case open do
          nil -> {n, lags, nil, prev}
          {ref, first} -> {n, [{end_t - ref, first} | lags], nil, prev}
        end
      end)

    {max_lag, worst} = Enum.max_by(lags, &elem(&1, 0), fn -> {0, nil} end)
    %{max_links: max_links, episodes: episodes, max_lag: max_lag, worst: worst}
  end

  @doc """
  The time (OS ms) from which this node's `Node.list/0` equals its active
  view and neither holds a node of `dead`, up to the last sample; `nil` if
  the last sample does not.
  """
  @spec settled_at([sample()], [node()]) :: integer() | nil
  def settled_at(samples, dead) do
    good? = fn {_, list, active} -> list == active and active -- dead == active end

    samples
    |> Enum.reverse()
    |> Enum.take_while(good?)
    |> List.last()
    |> case do
      nil -> nil
      {t, _, _} -> t
    end
  end
end
