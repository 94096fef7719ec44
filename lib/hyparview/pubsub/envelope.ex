defmodule HyParView.PubSub.Envelope do
  @moduledoc false
  # The bytes `HyParView.PubSub` hands to `HyParView.broadcast/2`:
  #
  #     "HPS" <> <<version::8, header_size::32, header::binary-size(header_size), body::binary>>
  #
  # header = term_to_binary({pubsub, target, topic}): the PubSub name and the
  #          target node as strings (nil target: every node), the topic.
  # body   = term_to_binary({dispatcher, message}).
  #
  # Two parts so that a node the message is not for (another node's
  # direct_broadcast, a PubSub this node doesn't run) decodes only the small
  # header. Names travel as strings: a receiver need not know a target node's
  # or another PubSub's atom, and decoding never mints one (`:safe`).

  @magic "HPS"
  @version 1

  @type key :: String.t()

  @doc "Encodes a message for every node (`target` nil) or for the node `target`."
  @spec encode(key, key | nil, binary, module, term) :: binary
  def encode(pubsub, target, topic, dispatcher, message)
      when is_binary(pubsub) and (is_binary(target) or is_nil(target)) and is_binary(topic) and
             is_atom(dispatcher) do
    header = :erlang.term_to_binary({pubsub, target, topic})
    body = :erlang.term_to_binary({dispatcher, message})
    <<@magic, @version, byte_size(header)::32, header::binary, body::binary>>
  end

  @doc "Splits and decodes the header; the body stays encoded."
  @spec decode_header(term) :: {:ok, key, key | nil, binary, binary} | :error
  def decode_header(<<@magic, @version, size::32, header::binary-size(size), body::binary>>) do
    case safe_decode(header) do
      {:ok, {pubsub, target, topic}}
      when is_binary(pubsub) and (is_binary(target) or is_nil(target)) and is_binary(topic) ->
        {:ok, pubsub, target, topic, body}

      _ ->
        :error
    end
  end

  def decode_header(_other), do: :error

  @doc "Decodes the body into its dispatcher and message."
  @spec decode_body(binary) :: {:ok, atom, term} | :error
  def decode_body(body) do
    case safe_decode(body) do
      {:ok, {dispatcher, message}} when is_atom(dispatcher) -> {:ok, dispatcher, message}
      _ -> :error
    end
  end

  # `:safe` refuses atoms (and pids, refs, funs naming nodes) the VM does not
  # know yet: bytes from the network never grow the atom table.
  defp safe_decode(binary) do
    {:ok, :erlang.binary_to_term(binary, [:safe])}
  rescue
    ArgumentError -> :error
  end
end
