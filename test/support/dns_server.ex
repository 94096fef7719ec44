defmodule HyParView.Test.DNSServer do
  @moduledoc """
  A small authoritative DNS responder over UDP on loopback, for tests.

  Answers A and AAAA queries from a table the test updates with `put/3`
  (records are served in the order given, TTL 0, so no resolver caches
  them); an unknown name gets NXDOMAIN, a known name without records of the
  asked type an empty NOERROR answer. Packets it cannot decode are dropped.
  It remembers every address that was ever *first* in an answer
  (`firsts/1`), and can be told to stop answering (`silence/2`) to test
  timeouts.
  """

  use GenServer

  @doc "Starts the responder on `{127, 0, 0, 1}` and an ephemeral port."
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts)

  @doc "`{ip, port}` to pass as `nameservers: [address]`."
  @spec address(GenServer.server()) :: {:inet.ip_address(), :inet.port_number()}
  def address(server), do: GenServer.call(server, :address)

  @doc "Sets the records of `name` (a list of IPv4 and/or IPv6 tuples; `[]` keeps the name)."
  @spec put(GenServer.server(), String.t(), [:inet.ip_address()]) :: :ok
  def put(server, name, ips), do: GenServer.call(server, {:put, name, ips})

  @doc "Removes `name` (it answers NXDOMAIN again)."
  @spec delete(GenServer.server(), String.t()) :: :ok
  def delete(server, name), do: GenServer.call(server, {:delete, name})

  @doc "With `true`, queries are read and never answered."
  @spec silence(GenServer.server(), boolean) :: :ok
  def silence(server, on?), do: GenServer.call(server, {:silence, on?})

  @doc "Every address that was first in an answer so far."
  @spec firsts(GenServer.server()) :: MapSet.t()
  def firsts(server), do: GenServer.call(server, :firsts)

  @doc "Number of queries received."
  @spec queries(GenServer.server()) :: non_neg_integer
  def queries(server), do: GenServer.call(server, :queries)

  @impl true
  def init(_opts) do
    {:ok, socket} = :gen_udp.open(0, [:binary, ip: {127, 0, 0, 1}, active: true])
    {:ok, port} = :inet.port(socket)

    {:ok,
     %{socket: socket, port: port, table: %{}, silent: false, firsts: MapSet.new(), queries: 0}}
  end

  @impl true
  def handle_call(:address, _from, state), do: {:reply, {{127, 0, 0, 1}, state.port}, state}

  def handle_call({:put, name, ips}, _from, state),
    do: {:reply, :ok, %{state | table: Map.put(state.table, normalize(name), ips)}}

  def handle_call({:delete, name}, _from, state),
    do: {:reply, :ok, %{state | table: Map.delete(state.table, normalize(name))}}

  def handle_call({:silence, on?}, _from, state), do: {:reply, :ok, %{state | silent: on?}}
  def handle_call(:firsts, _from, state), do: {:reply, state.firsts, state}
  def handle_call(:queries, _from, state), do: {:reply, state.queries, state}

  @impl true
  def handle_info({:udp, socket, ip, port, packet}, %{socket: socket} = state) do
    state = %{state | queries: state.queries + 1}

    with false <- state.silent,
         {:ok, query} <- :inet_dns.decode(packet),
         [question] <- :inet_dns.msg(query, :qdlist) do
      {reply, state} = answer(query, question, state)
      :gen_udp.send(socket, ip, port, :inet_dns.encode(reply))
      {:noreply, state}
    else
      _ -> {:noreply, state}
    end
  end

  def handle_info(_msg, state), do: {:noreply, state}

  defp answer(query, question, state) do
    name = :inet_dns.dns_query(question, :domain)
    type = :inet_dns.dns_query(question, :type)
    header = :inet_dns.msg(query, :header)

    # rcode 0 = NOERROR, 3 = NXDOMAIN.
    {rcode, records} =
      case Map.fetch(state.table, normalize(name)) do
        :error -> {3, []}
        {:ok, ips} -> {0, Enum.filter(ips, &(type_of(&1) == type))}
      end

    firsts =
      case records do
        [first | _] -> MapSet.put(state.firsts, first)
        [] -> state.firsts
      end

    anlist =
      for ip <- records do
        :inet_dns.make_rr(domain: name, type: type, class: :in, ttl: 0, data: ip)
      end

    reply =
      :inet_dns.make_msg(
        header:
          :inet_dns.make_header(
            id: :inet_dns.header(header, :id),
            qr: true,
            opcode: :query,
            aa: true,
            rd: :inet_dns.header(header, :rd),
            ra: false,
            rcode: rcode
          ),
        qdlist: [question],
        anlist: anlist
      )

    {reply, %{state | firsts: firsts}}
  end

  defp type_of(ip) when tuple_size(ip) == 4, do: :a
  defp type_of(ip) when tuple_size(ip) == 8, do: :aaaa

  defp normalize(name), do: name |> to_string() |> String.downcase() |> String.trim_trailing(".")
end
