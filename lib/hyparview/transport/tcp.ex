defmodule HyParView.Transport.TCP do
  @moduledoc """
  Names the TCP transport (the default and only one).

  The transport itself runs in Rust inside the NIF (tokio): length-prefixed
  frames over TCP, an HMAC-SHA256 handshake keyed by the server's secret, and
  heartbeats for failure detection of active-view peers. Pass this module as
  the `transport:` option; any other value is rejected.
  """

  @doc "The transport's name."
  @spec name() :: :tcp
  def name, do: :tcp
end
