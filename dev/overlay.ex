defmodule HyParView.Dev.Overlay do
  @moduledoc """
  Dev/test tooling: the one overlay checker. Pure functions over a graph
  given as `%{node => [neighbour]}` (active views, or `Node.list/0`s), shared
  by `HyParView.Dev.LocalCluster`, the single-VM tests and
  `bench/cluster_bench.exs`.
  """

  @typedoc "What one node reports, as `HyParView.Dev.LocalCluster.snapshot/1` returns it."
  @type snapshot :: %{
          required(:node) => node(),
          required(:node_list) => [node()],
          required(:active_view) => [node()],
          optional(atom) => term
        }

  @typedoc "Who each node lists (its active view or its distribution links)."
  @type views :: %{optional(term) => [term]}
  @type edge :: {term, term}

  @doc """
  The undirected edges among the nodes of `views` (a neighbour outside
  `views` is ignored): `{a, b}` with `a < b`, once, whichever end lists it.
  """
  @spec edges(views) :: MapSet.t(edge)
  def edges(views) do
    for {a, list} <- views, b <- list, Map.has_key?(views, b), a != b, into: MapSet.new() do
      if a < b, do: {a, b}, else: {b, a}
    end
  end

  @doc "Directed entries `{a, b}` where `a` lists `b` but `b` (present) does not list `a`."
  @spec asymmetric(views) :: [edge]
  def asymmetric(views) do
    for {a, list} <- views,
        b <- list,
        Map.has_key?(views, b),
        a not in Map.fetch!(views, b),
        do: {a, b}
  end

  @doc """
  The nodes of `views` not reachable from the smallest one over `edges/1`
  (sorted); `[]` when the graph is connected (or empty).
  """
  @spec unreachable(views) :: [term]
  def unreachable(views) when map_size(views) == 0, do: []

  def unreachable(views) do
    adjacency =
      Enum.reduce(edges(views), %{}, fn {a, b}, acc ->
        acc |> Map.update(a, [b], &[b | &1]) |> Map.update(b, [a], &[a | &1])
      end)

    start = views |> Map.keys() |> Enum.min()
    reached = reach(adjacency, [start], MapSet.new([start]))
    views |> Map.keys() |> Enum.reject(&MapSet.member?(reached, &1)) |> Enum.sort()
  end

  @doc "True when every node of `views` is reachable from every other."
  @spec connected?(views) :: boolean
  def connected?(views), do: unreachable(views) == []

  @doc """
  Checks node snapshots (as from `HyParView.Dev.LocalCluster.snapshot/1`)
  for the partial-mesh properties: every `Node.list/0` equals its active
  view; at most `active_view_size` links per node; the link graph among the
  answering nodes is connected; no link to a node in `dead` or to a node
  that is neither answering nor dead. A `{:error, index, reason}` entry (a
  node that did not answer) is a problem too.

  Returns `{:ok, snapshots}` or `{:error, problems}` (human-readable).
  """
  @spec check_snapshots([snapshot() | tuple()], pos_integer(), [node()]) ::
          {:ok, [snapshot()]} | {:error, [String.t()]}
  def check_snapshots(snaps, active_view_size, dead) do
    {ok, failed} = Enum.split_with(snaps, &is_map/1)
    alive = MapSet.new(ok, & &1.node)
    dead = MapSet.new(dead)

    problems =
      Enum.map(failed, fn {:error, i, reason} ->
        "node #{i} did not answer: #{inspect(reason)}"
      end) ++
        Enum.flat_map(ok, &node_problems(&1, active_view_size, alive, dead)) ++
        connectivity_problems(ok)

    if problems == [], do: {:ok, ok}, else: {:error, problems}
  end

  defp node_problems(s, active_view_size, alive, dead) do
    links = MapSet.new(s.node_list)
    active = MapSet.new(s.active_view)

    [
      if(links != active,
        do:
          "#{s.node}: Node.list #{inspect(Enum.sort(s.node_list))} != active view #{inspect(Enum.sort(s.active_view))}"
      ),
      if(length(s.node_list) > active_view_size,
        do: "#{s.node}: #{length(s.node_list)} links > active_view_size #{active_view_size}"
      ),
      case Enum.filter(s.node_list, &MapSet.member?(dead, &1)) do
        [] -> nil
        d -> "#{s.node}: still linked to dead #{inspect(d)}"
      end,
      case Enum.reject(s.node_list, &(MapSet.member?(alive, &1) or MapSet.member?(dead, &1))) do
        [] -> nil
        f -> "#{s.node}: linked to foreign #{inspect(f)}"
      end
    ]
    |> Enum.reject(&is_nil/1)
  end

  defp connectivity_problems(snaps) do
    links = Map.new(snaps, &{&1.node, &1.node_list})

    case unreachable(links) do
      [] ->
        []

      missing ->
        start = links |> Map.keys() |> Enum.min()

        [
          "graph not connected: #{map_size(links) - length(missing)} of #{map_size(links)} " <>
            "reachable from #{start}; unreachable #{inspect(missing)}"
        ]
    end
  end

  @doc """
  One line per node of `snaps` (as from `snapshot/1`): short name, links,
  active view and passive view, for failure reports.
  """
  @spec describe([snapshot() | tuple()]) :: String.t()
  def describe(snaps) do
    Enum.map_join(snaps, "\n", fn
      %{} = s ->
        names = fn nodes -> nodes |> Enum.map(&short/1) |> Enum.sort() |> Enum.join(" ") end

        "#{short(s.node)}: links [#{names.(s.node_list)}] active [#{names.(s.active_view)}] " <>
          "passive [#{names.(s.passive_view)}]"

      {:error, i, reason} ->
        "n#{i}: no answer (#{inspect(reason)})"
    end)
  end

  @doc "Number of distinct undirected distribution links among `snaps`."
  @spec link_count([snapshot()]) :: non_neg_integer()
  def link_count(snaps) do
    snaps |> link_edges() |> MapSet.size()
  end

  defp link_edges(snaps), do: edges(Map.new(snaps, &{&1.node, &1.node_list}))

  @doc """
  Graphviz DOT (undirected) of the distribution links in `snaps`; an edge
  both ends report is drawn solid, a one-sided one dashed.
  """
  @spec to_dot([snapshot()]) :: String.t()
  def to_dot(snaps) do
    have = MapSet.new(for s <- snaps, n <- s.node_list, do: {s.node, n})

    lines =
      Enum.map(Enum.sort_by(snaps, & &1.index), fn s ->
        ~s(  "#{s.node}" [label="#{short(s.node)}\\n#{length(s.node_list)} links"];)
      end) ++
        Enum.map(Enum.sort(link_edges(snaps)), fn {a, b} ->
          style =
            if MapSet.member?(have, {a, b}) and MapSet.member?(have, {b, a}),
              do: "",
              else: " [style=dashed]"

          ~s(  "#{a}" -- "#{b}"#{style};)
        end)

    Enum.join(["graph hyparview {", "  node [shape=ellipse];" | lines] ++ ["}", ""], "\n")
  end

  @doc "Short display name: the part of a node name before `@`, minus the cluster prefix."
  @spec short(node() | String.t()) :: String.t()
  def short(node) do
    [name | _] = node |> to_string() |> String.split("@")

    # Nodes named by index (`n3`) print short; basename nodes (`hp@127.0.0.5`,
    # all with the same name part) print whole.
    if Regex.match?(~r/n\d+$/, name),
      do: String.replace(name, ~r/^.*n(?=\d+$)/, "n"),
      else: to_string(node)
  end

  defp reach(_adjacency, [], seen), do: seen

  defp reach(adjacency, [node | rest], seen) do
    next = adjacency |> Map.get(node, []) |> Enum.reject(&MapSet.member?(seen, &1))
    reach(adjacency, next ++ rest, Enum.reduce(next, seen, &MapSet.put(&2, &1)))
  end
end
