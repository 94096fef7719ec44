defmodule PhoenixPubSubStandin.MixProject do
  # A minimal stand-in for the `phoenix_pubsub` Hex package (2.1's public API
  # only), used where Hex is unavailable. Written from phoenix_pubsub 2.1's
  # documented behaviour; the real package can be swapped in unchanged.
  use Mix.Project

  def project do
    [
      app: :phoenix_pubsub,
      version: "2.1.3",
      elixir: "~> 1.14",
      deps: []
    ]
  end

  def application do
    [mod: {Phoenix.PubSub.Application, []}, extra_applications: [:logger]]
  end
end
