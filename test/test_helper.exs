Code.require_file("hyparview/support.exs", __DIR__)
ExUnit.start()
