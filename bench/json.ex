# Minimal JSON encoder for the bench report (no Hex here, and Elixir 1.14
# has no JSON module). Atoms become strings, tuples become arrays, floats are
# rounded to 4 decimals; map keys are sorted so reports diff cleanly.
defmodule BenchJSON do
  @moduledoc false

  def encode(term), do: IO.iodata_to_binary([enc(term, 0), "\n"])

  defp enc(nil, _), do: "null"
  defp enc(true, _), do: "true"
  defp enc(false, _), do: "false"
  defp enc(a, _) when is_atom(a), do: str(Atom.to_string(a))
  defp enc(i, _) when is_integer(i), do: Integer.to_string(i)

  defp enc(f, _) when is_float(f),
    do: :erlang.float_to_binary(Float.round(f, 4), [:compact, decimals: 4])

  defp enc(b, _) when is_binary(b), do: str(b)
  defp enc(p, _) when is_pid(p) or is_port(p) or is_reference(p), do: str(inspect(p))
  defp enc(t, d) when is_tuple(t), do: enc(Tuple.to_list(t), d)
  defp enc([], _), do: "[]"

  defp enc(l, d) when is_list(l) do
    if Enum.all?(l, &scalar?/1) do
      ["[", Enum.map_join(l, ", ", &IO.iodata_to_binary(enc(&1, d))), "]"]
    else
      pad = indent(d + 1)
      ["[\n", Enum.intersperse(Enum.map(l, &[pad, enc(&1, d + 1)]), ",\n"), "\n", indent(d), "]"]
    end
  end

  defp enc(m, _) when is_map(m) and map_size(m) == 0, do: "{}"

  defp enc(m, d) when is_map(m) do
    m = if Map.has_key?(m, :__struct__), do: Map.from_struct(m), else: m
    pad = indent(d + 1)

    items =
      m
      |> Enum.map(fn {k, v} -> {key(k), v} end)
      |> Enum.sort()
      |> Enum.map(fn {k, v} -> [pad, str(k), ": ", enc(v, d + 1)] end)

    ["{\n", Enum.intersperse(items, ",\n"), "\n", indent(d), "}"]
  end

  defp enc(other, _), do: str(inspect(other))

  defp scalar?(x), do: not (is_list(x) or is_map(x) or is_tuple(x))

  defp key(k) when is_binary(k), do: k
  defp key(k) when is_atom(k), do: Atom.to_string(k)
  defp key(k), do: inspect(k)

  defp indent(d), do: String.duplicate("  ", d)

  defp str(s) do
    escaped =
      for <<c::utf8 <- s>>, into: "" do
        case c do
          ?" -> "\\\""
          ?\\ -> "\\\\"
          ?\n -> "\\n"
          ?\r -> "\\r"
          ?\t -> "\\t"
          c when c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
          c -> <<c::utf8>>
        end
      end

    ["\"", escaped, "\""]
  end
end
