defmodule HyParView.Discovery.Source do
  @moduledoc """
  The entries of a topology's `contacts:`: plain `HyParView.Peer`s and
  discovery sources, validated once and resolved again and again.

    * `{:dns, query: "app-headless.ns.svc.cluster.local", node_basename: "app", port: 4500}`
      — A and AAAA records (see `HyParView.Discovery.DNS`);
    * `{:strategy, SomeLibclusterStrategy, strategy_config, port: 4500}` — a
      libcluster strategy run for discovery only (see
      `HyParView.Discovery.Strategy`);
    * `{module, function, args}` — `apply(module, function, args)` returns a
      list of `HyParView.Peer`s.

  `contacts:` is one entry or a list of them. Anything else raises
  `ArgumentError` naming `contacts`.
  """

  alias HyParView.Discovery.{DNS, Strategy}
  alias HyParView.Peer

  @typedoc "A validated discovery source."
  @type t ::
          {:dns, DNS.options()}
          | {:strategy, module, keyword, keyword}
          | {:mfa, {module, atom, [term]}}

  @doc """
  Splits `contacts` into the plain peers and the sources, validating both.

      iex> HyParView.Discovery.Source.parse!([{:dns, query: "app.local", node_basename: "app", port: 4500}])
      {[], [{:dns, [query: "app.local", node_basename: "app", port: 4500]}]}
  """
  @spec parse!(term) :: {[Peer.t()], [t]}
  def parse!(contacts) when is_list(contacts) do
    {peers, sources} =
      Enum.reduce(contacts, {[], []}, fn entry, {peers, sources} ->
        case parse_entry!(entry) do
          %Peer{} = peer -> {[peer | peers], sources}
          source -> {peers, [source | sources]}
        end
      end)

    {Enum.reverse(peers), Enum.reverse(sources)}
  end

  def parse!(contacts) when is_tuple(contacts), do: parse!([contacts])

  def parse!(other) do
    invalid!("expected a list of %HyParView.Peer{} and discovery sources, got #{inspect(other)}")
  end

  defp parse_entry!(%Peer{id: id, address: address}) do
    Peer.new(id, address)
  rescue
    e in ArgumentError -> invalid!(Exception.message(e))
  end

  defp parse_entry!({:dns, opts}), do: {:dns, DNS.validate!(opts)}

  defp parse_entry!({:strategy, module, config, opts}),
    do: Strategy.validate!(module, config, opts)

  defp parse_entry!({module, function, args} = mfa)
       when is_atom(module) and is_atom(function) and is_list(args) do
    Code.ensure_loaded(module)

    unless function_exported?(module, function, length(args)) do
      invalid!("#{inspect(module)}.#{function}/#{length(args)} is not defined")
    end

    {:mfa, mfa}
  end

  defp parse_entry!(other) do
    invalid!(
      "#{inspect(other)} is neither a %HyParView.Peer{} nor a discovery source " <>
        "({:dns, opts}, {:strategy, module, config, opts} or {module, function, args})"
    )
  end

  @doc """
  Resolves one source: `{:ok, peers}` or `{:error, reason}`. May block (DNS,
  host names); `HyParView.Discovery` runs it in a task with a timeout.
  """
  @spec resolve(t) :: {:ok, [Peer.t()]} | {:error, term}
  def resolve({:dns, opts}), do: DNS.resolve(opts)
  def resolve({:strategy, _module, _config, _opts} = source), do: Strategy.resolve(source)

  def resolve({:mfa, {m, f, a}}) do
    case apply(m, f, a) do
      list when is_list(list) ->
        case Enum.reject(list, &valid_peer?/1) do
          [] -> {:ok, list}
          [bad | _] -> {:error, {:not_a_peer, bad}}
        end

      other ->
        {:error, {:not_a_list, other}}
    end
  end

  @doc "A short description of a source for log lines."
  @spec describe(t) :: String.t()
  def describe({:dns, opts}), do: "{:dns, #{inspect(Keyword.fetch!(opts, :query))}}"
  def describe({:strategy, module, _, _}), do: "{:strategy, #{inspect(module)}}"
  def describe({:mfa, {m, f, a}}), do: "#{inspect(m)}.#{f}/#{length(a)}"

  @doc """
  True for a peer usable as a contact: a well-formed id (atom, or a binary
  for ids learned from the network) and a concrete address with a port.
  """
  @spec valid_peer?(term) :: boolean
  def valid_peer?(%Peer{id: id, address: {_ip, port} = address})
      when (is_atom(id) or is_binary(id)) and port in 1..65_535 do
    Peer.valid_id?(to_string(id)) and Peer.valid_address?(address)
  end

  def valid_peer?(_), do: false

  @doc false
  @spec invalid!(String.t()) :: no_return
  def invalid!(message) do
    raise ArgumentError, "invalid HyParView config contacts: " <> message
  end
end
