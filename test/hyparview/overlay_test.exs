defmodule HyParView.OverlayTest do
  use ExUnit.Case, async: false

  import HyParView.TestSupport

  alias HyParView.Peer
  alias HyParView.TestSupport.Overlay

  @moduletag :capture_log
  @moduletag timeout: 120_000

  # Starts n servers; each joins through a random earlier one.
  defp start_overlay(prefix, n, config) do
    Enum.reduce(1..n, %{}, fn i, acc ->
      id = node_id(prefix, i)

      contacts =
        case Map.values(acc) do
          [] -> []
          pids -> [HyParView.local_peer(Enum.random(pids))]
        end

      Map.put(acc, id, start_server(id, contacts: contacts, config: config))
    end)
  end

  defp links(views), do: views |> Enum.map(fn {_, v} -> length(v) end) |> Enum.sum() |> div(2)

  defp wait_overlay(servers, max, timeout) do
    eventually(
      fn ->
        case Overlay.check(servers, max) do
          {:ok, views} -> views
          {:error, _} = error -> error == :never
        end
      end,
      timeout,
      "overlay not healthy: #{inspect(Overlay.check(servers, max))}",
      100
    )
  end

  test "20 servers form one connected overlay with bounded, symmetric active views" do
    servers = start_overlay("ov", 20, fast_config())
    views = wait_overlay(servers, 5, 20_000)

    assert map_size(views) == 20
    assert Enum.all?(views, fn {_id, v} -> length(v) in 1..5 end)

    # Passive views fill through Shuffles and never contain the node itself.
    eventually(
      fn ->
        Enum.all?(servers, fn {id, pid} ->
          passive = HyParView.passive_view(pid)
          passive != [] and id not in ids(passive)
        end)
      end,
      10_000,
      "passive views did not fill"
    )
  end

  test "stopping a server gives peer_down at its neighbours and the overlay refills" do
    config = fast_config(active_view_size: 3, passive_view_size: 10, shuffle_active_count: 2)
    servers = start_overlay("rf", 10, config)
    views = wait_overlay(servers, 3, 20_000)

    {victim, neighbours} = Enum.max_by(views, fn {_id, v} -> length(v) end)
    # The victim's d neighbours each lose a slot; they can pair up again among
    # themselves (Neighbor requests to passive peers with room), so at least
    # d - div(d, 2) links are lost for good, no more.
    d = length(neighbours)
    links_needed = links(views) - d + div(d, 2)
    for n <- neighbours, do: :ok = HyParView.subscribe(Map.fetch!(servers, n))

    HyParView.stop(Map.fetch!(servers, victim))

    for _ <- neighbours do
      assert_receive {:hyparview, {:peer_down, %Peer{id: ^victim}}}, 3_000
    end

    rest = Map.delete(servers, victim)

    # The overlay refills: healthy, victim forgotten, lost links replaced.
    eventually(
      fn ->
        case Overlay.check(rest, 3) do
          {:ok, views} ->
            links(views) >= links_needed and not Enum.any?(views, fn {_, v} -> victim in v end)

          _ ->
            false
        end
      end,
      15_000,
      fn ->
        "overlay did not refill: victim #{victim}, neighbours #{inspect(neighbours)}, " <>
          "links needed #{links_needed}, now #{inspect(Overlay.check(rest, 3), limit: :infinity)}"
      end
    )
  end
end
