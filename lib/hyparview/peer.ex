defmodule HyParView.Peer do
  @moduledoc """
  A HyParView participant: `id` is the BEAM node name, `address` is
  `{ip_tuple, port}` where its HyParView transport listens.

  `id` is an atom such as `:"app@10.0.0.1"` for every peer built with
  `new/2`, for the local peer and for active-view peers (they become
  distribution links, whose node names are atoms). Peers learned from the
  network that are not (yet) in the active view, as returned by
  `HyParView.passive_view/1` and `HyParView.info/1`, carry their id as a
  `String.t()` unless an atom of that name already exists: nothing that
  arrives from the network mints an atom.

  Ids must be well-formed node names: at most 255 bytes of
  `[A-Za-z0-9_.-]`, exactly one `@`, and a host part of
  `[A-Za-z0-9_.-]` (plus `[`, `]`, `:` for IPv6 literals).
  """

  @enforce_keys [:id, :address]
  defstruct [:id, :address]

  @type address :: {:inet.ip_address(), :inet.port_number()}
  @type t :: %__MODULE__{id: node() | String.t(), address: address}

  @max_id_bytes 255
  @id_regex ~r/\A[A-Za-z0-9_.\-]+@[A-Za-z0-9_.\-\[\]:]+\z/

  @doc """
  Builds a peer, validating both fields.

  Raises `ArgumentError` naming `id` or `address` when a value is malformed.

      iex> HyParView.Peer.new(:"a@127.0.0.1", {{127, 0, 0, 1}, 4500})
      %HyParView.Peer{id: :"a@127.0.0.1", address: {{127, 0, 0, 1}, 4500}}
  """
  @spec new(node(), address) :: t
  def new(id, address) do
    unless is_atom(id) and not is_nil(id) and valid_id?(Atom.to_string(id)) do
      raise ArgumentError,
            "invalid HyParView.Peer id: #{inspect(id)} (expected a node name atom like " <>
              ":\"app@10.0.0.1\": at most #{@max_id_bytes} bytes of [A-Za-z0-9_.-], one @)"
    end

    unless valid_address?(address) do
      raise ArgumentError,
            "invalid HyParView.Peer address: #{inspect(address)} " <>
              "(expected {ip_tuple, port} with port 0..65535)"
    end

    %__MODULE__{id: id, address: address}
  end

  @doc """
  True when `id` (a binary) is a well-formed node name as described in the
  module doc. Used before any binary coming from the network becomes an atom.
  """
  @spec valid_id?(term) :: boolean
  def valid_id?(id) when is_binary(id) do
    byte_size(id) in 3..@max_id_bytes and Regex.match?(@id_regex, id)
  end

  def valid_id?(_), do: false

  @doc "True for an IPv4 or IPv6 address tuple."
  @spec valid_ip?(term) :: boolean
  def valid_ip?(ip) when is_tuple(ip) and tuple_size(ip) == 4,
    do: Enum.all?(Tuple.to_list(ip), &(is_integer(&1) and &1 in 0..255))

  def valid_ip?(ip) when is_tuple(ip) and tuple_size(ip) == 8,
    do: Enum.all?(Tuple.to_list(ip), &(is_integer(&1) and &1 in 0..65_535))

  def valid_ip?(_), do: false

  @doc "True for `{ip_tuple, port}` with port 0..65535."
  @spec valid_address?(term) :: boolean
  def valid_address?({ip, port}) when is_integer(port) and port in 0..65_535, do: valid_ip?(ip)
  def valid_address?(_), do: false
end
