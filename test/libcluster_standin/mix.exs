defmodule LibclusterStandin.MixProject do
  # A minimal stand-in for the `libcluster` Hex package (public strategy API
  # only), used where Hex is unavailable. Written from libcluster's documented
  # behaviour; the real package can be swapped in unchanged.
  use Mix.Project

  def project do
    [
      app: :libcluster,
      version: "3.5.0",
      elixir: "~> 1.14",
      deps: []
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end
end
