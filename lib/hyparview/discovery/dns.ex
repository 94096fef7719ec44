defmodule HyParView.Discovery.DNS do
  @moduledoc """
  The `{:dns, opts}` discovery source: every A and AAAA record of `query`
  becomes a contact named `<node_basename>@<ip>` (the naming of libcluster's
  `DNSPoll` and `Kubernetes.DNS` strategies: the IP as `:inet.ntoa/1` prints
  it, e.g. `app@10.0.0.7`, `app@fd00::7`) at `{ip, port}`.

  Options:

    * `:query` (required) — the name to resolve, e.g. the headless Service
      `"app-headless.ns.svc.cluster.local"`;
    * `:node_basename` (required) — the part of the node names before `@`;
    * `:port` (required) — the HyParView port every node listens on;
    * `:nameservers` — `[{ip_tuple, port}]` to ask instead of the system's
      resolvers (passed to `:inet_res`);
    * `:timeout` — per query, in ms (default 2_000).

  Ids of the contacts are binaries, not atoms: they come from the network,
  and nothing that does mints an atom (see `HyParView.set_contacts/2`).
  """

  alias HyParView.Discovery.Source
  alias HyParView.Peer

  @typedoc "Validated options."
  @type options :: keyword

  @keys [:query, :node_basename, :port, :nameservers, :timeout]
  @default_timeout 2_000

  @doc "Validates the options; raises `ArgumentError` naming `contacts`."
  @spec validate!(term) :: options
  def validate!(opts) do
    unless Keyword.keyword?(opts) do
      Source.invalid!("{:dns, opts} needs a keyword list, got #{inspect(opts)}")
    end

    Enum.each(opts, fn {key, _} ->
      unless key in @keys do
        Source.invalid!("{:dns, opts}: unknown option #{inspect(key)} (known: #{inspect(@keys)})")
      end
    end)

    case Keyword.get(opts, :query) do
      q when is_binary(q) and byte_size(q) in 1..253 -> :ok
      other -> Source.invalid!("{:dns, opts}: query must be a DNS name, got #{inspect(other)}")
    end

    basename = Keyword.get(opts, :node_basename)

    unless is_binary(basename) and Peer.valid_id?(basename <> "@0.0.0.0") do
      Source.invalid!(
        "{:dns, opts}: node_basename must be a binary of [A-Za-z0-9_.-], got #{inspect(basename)}"
      )
    end

    case Keyword.get(opts, :port) do
      port when is_integer(port) and port in 1..65_535 -> :ok
      other -> Source.invalid!("{:dns, opts}: port must be in 1..65535, got #{inspect(other)}")
    end

    case Keyword.get(opts, :nameservers, []) do
      list when is_list(list) ->
        unless Enum.all?(list, &Peer.valid_address?/1) do
          Source.invalid!(
            "{:dns, opts}: nameservers must be [{ip_tuple, port}], got #{inspect(list)}"
          )
        end

      other ->
        Source.invalid!(
          "{:dns, opts}: nameservers must be [{ip_tuple, port}], got #{inspect(other)}"
        )
    end

    case Keyword.get(opts, :timeout, @default_timeout) do
      t when is_integer(t) and t in 1..60_000 -> :ok
      other -> Source.invalid!("{:dns, opts}: timeout must be 1..60000 ms, got #{inspect(other)}")
    end

    opts
  end

  @doc """
  Queries A and AAAA. `{:ok, peers}` when at least one query was answered
  (an empty answer is a valid one), else `{:error, reason}` of the A query
  (`:nxdomain`, `:timeout`, `:servfail`, ...).
  """
  @spec resolve(options) :: {:ok, [Peer.t()]} | {:error, term}
  def resolve(opts) do
    name = opts |> Keyword.fetch!(:query) |> String.to_charlist()
    basename = Keyword.fetch!(opts, :node_basename)
    port = Keyword.fetch!(opts, :port)
    timeout = Keyword.get(opts, :timeout, @default_timeout)

    res_opts =
      case Keyword.get(opts, :nameservers, []) do
        [] -> []
        servers -> [nameservers: servers]
      end

    case {lookup(name, :a, res_opts, timeout), lookup(name, :aaaa, res_opts, timeout)} do
      {{:error, reason}, {:error, _}} ->
        {:error, reason}

      {a, aaaa} ->
        ips = ok_list(a) ++ ok_list(aaaa)
        {:ok, ips |> Enum.uniq() |> Enum.map(&peer(basename, &1, port))}
    end
  end

  defp lookup(name, type, res_opts, timeout) do
    case :inet_res.resolve(name, :in, type, res_opts, timeout) do
      {:ok, msg} ->
        ips =
          for rr <- :inet_dns.msg(msg, :anlist),
              :inet_dns.rr(rr, :type) == type,
              ip = :inet_dns.rr(rr, :data),
              Peer.valid_ip?(ip),
              do: ip

        {:ok, ips}

      {:error, {reason, _msg}} ->
        {:error, reason}

      {:error, reason} ->
        {:error, reason}
    end
  end

  defp ok_list({:ok, list}), do: list
  defp ok_list({:error, _}), do: []

  @doc """
  The contact for `ip`: id `"<basename>@<ip>"` (a binary), address `{ip, port}`.

      iex> HyParView.Discovery.DNS.peer("app", {10, 0, 0, 7}, 4500)
      %HyParView.Peer{id: "app@10.0.0.7", address: {{10, 0, 0, 7}, 4500}}
  """
  @spec peer(String.t(), :inet.ip_address(), :inet.port_number()) :: Peer.t()
  def peer(basename, ip, port) do
    %Peer{id: "#{basename}@#{:inet.ntoa(ip)}", address: {ip, port}}
  end
end
