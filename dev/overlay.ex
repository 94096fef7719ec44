defmodule HyParView.Dev.Overlay do
  @moduledoc """
  Dev/test tooling: the one overlay checker. Pure functions over a graph
  given as `%{node => [neighbour]}` (active views, or `Node.list/0`s), shared
  by `HyParView.Dev.LocalCluster`, the single-VM tests and
  `bench/cluster_bench.exs`.
  """

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

  defp reach(_adjacency, [], seen), do: seen

  defp reach(adjacency, [node | rest], seen) do
    next = adjacency |> Map.get(node, []) |> Enum.reject(&MapSet.member?(seen, &1))
    reach(adjacency, next ++ rest, Enum.reduce(next, seen, &MapSet.put(&2, &1)))
  end
end
