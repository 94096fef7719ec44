defmodule HyParView.Cluster.DemoTaskTest do
  # `mix hyparview.demo` end to end on a small cluster: it must report the
  # converged and the repaired overlay and write a DOT file of it.
  use HyParView.MultinodeCase, async: false

  @tag :tmp_dir
  test "mix hyparview.demo boots, kills, repairs and writes the overlay", %{tmp_dir: dir} do
    dot = Path.join(dir, "overlay.dot")
    Mix.shell(Mix.Shell.Process)
    on_exit(fn -> Mix.shell(Mix.Shell.IO) end)

    try do
      Mix.Tasks.Hyparview.Demo.run(["--nodes", "6", "--kill", "2", "--dot", dot])
    catch
      :exit, reason ->
        flunk(
          "demo exited with #{inspect(reason)}; its output:\n" <> Enum.join(collect_shell(), "\n")
        )
    end

    lines = collect_shell()
    text = Enum.join(lines, "\n")
    assert text =~ ~r/Converged \d+ ms/
    assert text =~ ~r/kill -9 2 node\(s\): n\d+, n\d+/
    assert text =~ ~r/Repaired in \d+ ms/
    assert text =~ "6 nodes, "
    assert text =~ "4 nodes, "
    assert text =~ "(full mesh: 15;"
    assert List.last(lines) == "OK: all properties hold."

    graph = File.read!(dot)
    assert graph =~ ~r/^graph hyparview \{/
    # 4 survivors, each labelled, and at least the 3 edges a connected graph needs.
    assert length(Regex.scan(~r/\[label=/, graph)) == 4
    assert length(Regex.scan(~r/ -- /, graph)) >= 3
  end

  test "bad options are rejected" do
    assert_raise Mix.Error, ~r/--kill must be between/, fn ->
      Mix.Tasks.Hyparview.Demo.run(["--nodes", "3", "--kill", "2"])
    end

    assert_raise Mix.Error, ~r/unknown arguments/, fn ->
      Mix.Tasks.Hyparview.Demo.run(["--bogus"])
    end
  end

  defp collect_shell(acc \\ []) do
    receive do
      {:mix_shell, :info, [line]} -> collect_shell([line | acc])
    after
      0 -> acc |> Enum.reverse() |> Enum.flat_map(&String.split(&1, "\n"))
    end
  end
end
