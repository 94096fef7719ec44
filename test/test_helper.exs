Code.require_file("hyparview/support.exs", __DIR__)
# :heavy tests (64+ nodes) run with `mix test --include heavy`.
ExUnit.start(exclude: [:heavy])
