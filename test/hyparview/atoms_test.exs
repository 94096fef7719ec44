defmodule HyParView.AtomsTest do
  # Ids learned from the network are strings until they become distribution
  # links: reading the passive view or info/1 never mints an atom.
  # Not async: it counts the VM's atoms.
  use ExUnit.Case, async: false

  import HyParView.TestSupport

  alias HyParView.Native

  @moduletag :capture_log

  # A bare NIF node (no HyParView.Server, so nothing turns its id or the ids
  # it hears about into atoms) with a string id no atom has.
  defp raw_node(id, contacts) do
    {:ok, resource} =
      Native.start(self(), %{
        id: id,
        listen_ip: {127, 0, 0, 1},
        listen_port: 0,
        advertise_ip: {127, 0, 0, 1},
        advertise_port: nil,
        incarnation: 1,
        seed: :erlang.phash2(id),
        secret: secret(),
        contacts: contacts,
        runtime_threads: 1,
        config:
          HyParView.Config.to_map(
            HyParView.Config.new(fast_config(active_view_size: 2, shuffle_active_count: 1))
          )
      })

    {id, _ip, port} = Native.snapshot(resource).local
    on_exit(fn -> Native.stop(resource) end)
    {resource, {id, {127, 0, 0, 1}, port}}
  end

  defp unknown_ids(peers), do: for(%{id: id} <- peers, is_binary(id), do: id)

  defp existing_atom?(id) do
    _ = String.to_existing_atom(id)
    true
  rescue
    ArgumentError -> false
  end

  test "a passive view of unknown ids creates no atoms; ids stay strings" do
    tag = "atomtest#{System.unique_integer([:positive])}x"
    {_, first} = raw_node("#{tag}0@127.0.0.1", [])
    raws = [first | for(i <- 1..7, do: elem(raw_node("#{tag}#{i}@127.0.0.1", [first]), 1))]

    # Join through a raw node: the server hears of the others only through
    # FORWARDJOIN and SHUFFLE, as passive candidates. (The contact's id
    # becomes an atom here; it is about to be an active peer anyway.)
    {id0, ip0, port0} = Enum.at(raws, 3)

    server =
      start_server(:"atomtest_server@127.0.0.1",
        contacts: [%HyParView.Peer{id: String.to_atom(id0), address: {ip0, port0}}],
        config: fast_config(active_view_size: 1, shuffle_active_count: 1, passive_view_size: 30)
      )

    strings =
      eventually(
        fn ->
          case unknown_ids(HyParView.passive_view(server)) do
            [] -> false
            ids -> ids
          end
        end,
        10_000,
        "the passive view never held an id that is not an atom"
      )

    refute Enum.any?(strings, &existing_atom?/1)

    # Measure a window in which the active view did not change (a peer
    # entering it is allowed to become an atom).
    measured =
      Enum.find_value(1..5, fn _ ->
        active = HyParView.active_view(server)
        before = :erlang.system_info(:atom_count)

        seen =
          for _ <- 1..20, reduce: MapSet.new() do
            acc ->
              info = HyParView.info(server)
              passive = HyParView.passive_view(server)

              acc
              |> MapSet.union(MapSet.new(unknown_ids(passive)))
              |> MapSet.union(MapSet.new(unknown_ids(info.passive_view)))
          end

        after_count = :erlang.system_info(:atom_count)
        if HyParView.active_view(server) == active, do: {before, after_count, seen}
      end)

    assert {before, after_count, seen} = measured
    assert after_count == before, "#{after_count - before} atoms minted by reading the views"
    assert MapSet.size(seen) > 0
    refute Enum.any?(seen, &existing_atom?/1)

    # Every string id is a well-formed node name the raw nodes really have.
    raw_ids = MapSet.new(raws, &elem(&1, 0))
    assert MapSet.subset?(seen, raw_ids)
    # Active-view peers are atoms.
    assert Enum.all?(HyParView.active_view(server), &is_atom(&1.id))
  end
end
