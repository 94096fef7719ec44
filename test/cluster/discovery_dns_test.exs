defmodule HyParView.Cluster.DiscoveryDNSTest do
  # Real nodes that know nobody: their only contact is a {:dns, ...} source
  # answered by a DNS responder on loopback (test/support/dns_server.ex),
  # as pods behind a headless Service. Every node is hp@127.0.0.N with the
  # same HyParView port and the same distribution port (no epmd: it would
  # hold the name "hp" once), so nothing but DNS tells them apart.
  use HyParView.MultinodeCase, async: false

  alias HyParView.Test.DNSServer

  @query "hp-headless.test.svc.cluster.local"
  @first 1..16
  @new 17..24

  defp ip(i), do: {127, 0, 0, i + 1}

  test "16 nodes find each other through DNS, lose half (every first answer among them), take 8 new ones" do
    {:ok, dns} = DNSServer.start_link()
    on_exit(fn -> if Process.alive?(dns), do: GenServer.stop(dns) end)
    [port, dist_port] = free_ports(2)

    source =
      {:dns,
       query: @query,
       node_basename: "hp",
       port: port,
       nameservers: [DNSServer.address(dns)],
       timeout: 500}

    cluster =
      start_cluster(
        basename: "hp",
        port: port,
        dist_port: dist_port,
        placement: fn i -> {nil, ip(i)} end,
        contacts: [],
        extra_config: [
          contacts: [source],
          discovery_interval: 500,
          discovery_refresh: 2_000,
          discovery_timeout: 1_000
        ]
      )

    :ok = DNSServer.put(dns, @query, Enum.map(@first, &ip/1))
    nodes = boot!(cluster, @first)
    assert hd(nodes) == :"hp@127.0.0.2"

    {snaps, ms} = assert_partial_mesh(cluster, 60_000)
    note("#{length(snaps)} nodes found each other through DNS in #{ms} ms")
    assert length(snaps) == 16
    assert DNSServer.queries(dns) >= 16

    # Kill half, including every node whose address ever came first in an
    # answer (the one a naive "first record is the seed" setup depends on).
    firsts = DNSServer.firsts(dns)
    first_nodes = for i <- @first, MapSet.member?(firsts, ip(i)), do: i
    assert first_nodes != []
    killed = Enum.take(Enum.uniq(first_nodes ++ Enum.take_every(@first, 2)), 8)
    assert length(killed) == 8
    assert :ok = LocalCluster.kill(cluster, killed)

    # The Service now lists the survivors and 8 new pods at new addresses.
    survivors = Enum.to_list(@first) -- killed
    :ok = DNSServer.put(dns, @query, Enum.map(@new, &ip/1) ++ Enum.map(survivors, &ip/1))
    _ = boot!(cluster, @new)

    {snaps, ms} = assert_partial_mesh(cluster, 60_000)
    note("converged after kill -9 of #{inspect(killed)} and 8 new nodes in #{ms} ms")

    assert Enum.sort(Enum.map(snaps, & &1.index)) == Enum.sort(survivors ++ Enum.to_list(@new))
    dead = Enum.map(killed, &LocalCluster.node_name(cluster, &1))

    for s <- snaps do
      assert s.node_list -- dead == s.node_list, "#{s.node} still links to a dead node"
      assert s.node_list != [], "#{s.node} has no links"
    end
  end

  # Free on every address (a wildcard bind fails if any address holds it),
  # below the ephemeral range so no outgoing connection takes it meanwhile.
  defp free_ports(n) do
    Stream.repeatedly(fn -> 20_000 + :rand.uniform(12_000) end)
    |> Stream.uniq()
    |> Stream.filter(fn port ->
      case :gen_tcp.listen(port, ip: {0, 0, 0, 0}) do
        {:ok, socket} ->
          :gen_tcp.close(socket)
          true

        {:error, _} ->
          false
      end
    end)
    |> Enum.take(n)
  end
end
