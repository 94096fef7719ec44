defmodule HyParView.LinkSampler do
  @moduledoc """
  Samples, inside a booted node, `Node.list/0` and the HyParView active view
  together every `interval` ms, and judges the samples in the controlling VM.

  A sample is `{os_time_ms, node_list, active_view}` (both sorted); only
  samples that differ from the previous one are kept, so memory grows with
  view changes, not with time. OS time is shared by every node on one
  machine, so samples of different nodes and the controller's kill time are
  comparable. Besides the samples, the sampler follows every `:nodeup` and
  `:nodedown` of the node, so the most links it ever held is exact.
  """

  @name :hyparview_link_sampler
  # Two samples further apart than this many intervals bound a stall.
  @stall_factor 4

  @typedoc "One kept sample: when, `Node.list/0`, active view ids."
  @type sample :: {integer(), [node()], [node()]}

  @doc """
  Starts the sampler on this node (called over `:peer.call`); `bound` is the
  most links the node may hold (see `collect/0`).
  """
  @spec start(atom(), pos_integer(), pos_integer()) :: :ok
  def start(topology, interval, bound) do
    pid =
      :erlang.spawn(fn ->
        # As prompt as the strategy it watches (which runs at high priority).
        Process.flag(:priority, :high)
        # Every change of Node.list/0, in the order net_kernel made them.
        :ok = :net_kernel.monitor_nodes(true)
        links = MapSet.new(Node.list())

        loop(%{
          topology: topology,
          interval: interval,
          due: System.monotonic_time(:millisecond),
          kept: [],
          last_t: nil,
          count: 0,
          stalls: [],
          links: links,
          bound: bound,
          over_since: nil,
          peak: {MapSet.size(links), System.os_time(:millisecond), MapSet.to_list(links), 0}
        })
      end)

    true = Process.register(pid, @name)
    :ok
  end

  @doc """
  Stops the sampler on this node and returns `{samples, count, stalls,
  peak}`:

    * the kept samples, in time order, and how many samples were taken;
    * the stalls: for two consecutive samples more than #{@stall_factor}
      intervals apart, the stretch `{from_ms, to_ms}` beyond the first
      interval after the earlier one (the VM ran neither the sampler nor
      the strategy next to it: nothing is known about that stretch);
    * the most links `Node.list/0` ever held, followed through
      `:nodeup`/`:nodedown` (so between samples too, and through stalls):
      `{count, os_time_ms, nodes, longest_over_us}`, the last being the
      longest stretch with more than `bound` links (one still open when
      collected is not counted: the judge's samples show it).
  """
  @spec collect() ::
          {[sample()], non_neg_integer(), [{integer(), integer()}],
           {non_neg_integer(), integer(), [node()], non_neg_integer()}}
  def collect do
    ref = make_ref()
    send(@name, {:collect, self(), ref})

    receive do
      {^ref, result} -> result
    after
      5_000 -> exit(:sampler_timeout)
    end
  end

  # Samples on a fixed schedule (a deadline, so messages do not delay it).
  defp loop(s) do
    wait = max(0, s.due - System.monotonic_time(:millisecond))

    receive do
      {:collect, from, ref} ->
        send(from, {ref, {Enum.reverse(s.kept), s.count, Enum.reverse(s.stalls), s.peak}})

      {:nodeup, node} ->
        loop(links_changed(s, MapSet.put(s.links, node)))

      {:nodedown, node} ->
        loop(links_changed(s, MapSet.delete(s.links, node)))
    after
      wait -> loop(sample(s))
    end
  end

  # Follows the most links held, and the longest stretch above the bound.
  defp links_changed(s, links) do
    now = System.os_time(:microsecond)
    {most, at, nodes, longest} = s.peak

    {most, at, nodes} =
      if MapSet.size(links) > most,
        do: {MapSet.size(links), div(now, 1000), Enum.sort(links)},
        else: {most, at, nodes}

    {over_since, longest} =
      case {MapSet.size(links) > s.bound, s.over_since} do
        {true, nil} -> {now, longest}
        {true, since} -> {since, longest}
        {false, nil} -> {nil, longest}
        {false, since} -> {nil, max(longest, now - since)}
      end

    %{s | links: links, over_since: over_since, peak: {most, at, nodes, longest}}
  end

  defp sample(s) do
    t = System.os_time(:millisecond)
    list = Enum.sort(Node.list())
    active = active_ids(s.topology)

    kept =
      case s.kept do
        [{_, ^list, ^active} | _] -> s.kept
        _ -> [{t, list, active} | s.kept]
      end

    stalls =
      if s.last_t && t - s.last_t > @stall_factor * s.interval,
        do: [{s.last_t + s.interval, t} | s.stalls],
        else: s.stalls

    %{
      s
      | due: max(s.due + s.interval, System.monotonic_time(:millisecond)),
        kept: kept,
        last_t: t,
        count: s.count + 1,
        stalls: stalls
    }
  end

  @doc """
  The share (0..1) of the time from the first to the last sample spent in
  `stalls` (see `collect/0`).
  """
  @spec stalled_share([sample()], [{integer(), integer()}], integer()) :: float()
  def stalled_share(samples, stalls, end_t) do
    case samples do
      [] ->
        1.0

      [{t0, _, _} | _] ->
        stalled = stalls |> Enum.map(fn {a, b} -> b - a end) |> Enum.sum()
        stalled / max(end_t - t0, 1)
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
  agree again (or `end_t`), less the time spent in `stalls` (see
  `collect/0`).
  """
  @spec judge([sample()], integer(), (integer() -> [node()]), [{integer(), integer()}]) ::
          map()
  def judge(samples, end_t, gone_at, stalls \\ []) do
    # A lag counts only the time the node was seen running.
    lag = fn from, to -> to - from - stalled(stalls, from, to) end

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
          {{ref, first}, false} -> {n, [{lag.(ref, t), first} | lags], nil, active}
        end
      end)
      |> then(fn {n, lags, open, prev} ->
        case open do
          nil -> {n, lags, nil, prev}
          {ref, first} -> {n, [{lag.(ref, end_t), first} | lags], nil, prev}
        end
      end)

    {max_lag, worst} = Enum.max_by(lags, &elem(&1, 0), fn -> {0, nil} end)
    %{max_links: max_links, episodes: episodes, max_lag: max_lag, worst: worst}
  end

  # Time within [from, to] spent in stalls.
  defp stalled(stalls, from, to) do
    stalls
    |> Enum.map(fn {a, b} -> max(0, min(b, to) - max(a, from)) end)
    |> Enum.sum()
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
