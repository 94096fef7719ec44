defmodule Mix.Tasks.Compile.HyparviewNif do
  # Defined in mix.exs (not lib/) so the compiler exists before lib/ is
  # compiled and also when this package is a dependency of another project.
  @moduledoc """
  Builds the HyParView NIF with cargo and installs it as
  `priv/native/libhyparview_nif.so`.

  Runs `cargo build --release -p hyparview_nif` against the top-level
  `Cargo.toml` (honouring `CARGO_TARGET_DIR`) and copies the resulting shared
  library. The build is skipped when no file under `native/`, `Cargo.toml` or
  `Cargo.lock` is newer than the installed library.
  """
  use Mix.Task.Compiler

  @crate "hyparview_nif"
  @lib_name "libhyparview_nif"

  @impl true
  def run(args) do
    root = File.cwd!()
    dest = Path.join([root, "priv", "native", @lib_name <> ".so"])

    status =
      if "--force" not in args and up_to_date?(root, dest) do
        :noop
      else
        build!(root)
        install!(root, dest)
        :ok
      end

    # priv/ may not have existed when Mix built the _build structure (first
    # compile), so link/copy it now so :code.priv_dir/1 finds the library.
    Mix.Project.build_structure()
    {status, []}
  end

  @impl true
  def clean do
    File.rm(Path.join([File.cwd!(), "priv", "native", @lib_name <> ".so"]))
    :ok
  end

  defp up_to_date?(root, dest) do
    case File.stat(dest, time: :posix) do
      {:ok, %{mtime: built}} -> newest_source_mtime(root) <= built
      {:error, _} -> false
    end
  end

  defp newest_source_mtime(root) do
    sources =
      Path.wildcard(Path.join(root, "native/**/*"), match_dot: true) ++
        Path.wildcard(Path.join(root, "Cargo.*"))

    sources
    |> Enum.map(fn path ->
      case File.stat(path, time: :posix) do
        {:ok, %{type: :regular, mtime: mtime}} -> mtime
        _ -> 0
      end
    end)
    |> Enum.max(fn -> 0 end)
  end

  defp build!(root) do
    cargo = cargo_executable!()
    args = ["build", "--release", "-p", @crate, "--manifest-path", Path.join(root, "Cargo.toml")]
    Mix.shell().info("Compiling NIF #{@crate} (cargo #{Enum.join(args, " ")})")

    {_, status} =
      System.cmd(cargo, args, cd: root, into: IO.stream(:stdio, :line), stderr_to_stdout: true)

    if status != 0 do
      Mix.raise(
        "cargo build of the #{@crate} NIF failed (exit status #{status}); " <>
          "see the cargo output above. libcluster_hyparview needs a working Rust toolchain."
      )
    end
  end

  defp cargo_executable! do
    System.find_executable("cargo") ||
      Enum.find([Path.expand("~/.cargo/bin/cargo")], &File.regular?/1) ||
      Mix.raise(
        "libcluster_hyparview compiles its HyParView NIF with Rust, but `cargo` was not found. " <>
          "Install Rust (https://rustup.rs, or `apt-get install cargo` on Debian/Ubuntu) " <>
          "and make sure `cargo` is on PATH."
      )
  end

  defp install!(root, dest) do
    target_dir =
      case System.get_env("CARGO_TARGET_DIR") do
        dir when dir in [nil, ""] -> Path.join(root, "target")
        dir -> Path.expand(dir, root)
      end

    built = Path.join([target_dir, "release", built_file_name()])

    unless File.regular?(built) do
      Mix.raise("cargo build succeeded but #{built} does not exist")
    end

    File.mkdir_p!(Path.dirname(dest))
    # Copy to a temp name and rename: replacing the file in place would corrupt
    # a library that a running VM has mapped.
    tmp = dest <> ".tmp"
    File.cp!(built, tmp)
    File.rename!(tmp, dest)
  end

  defp built_file_name do
    case :os.type() do
      {:unix, :darwin} -> @lib_name <> ".dylib"
      {:win32, _} -> @crate <> ".dll"
      _ -> @lib_name <> ".so"
    end
  end
end

defmodule LibclusterHyparview.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :libcluster_hyparview,
      version: @version,
      elixir: "~> 1.14",
      compilers: [:hyparview_nif] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      deps: deps() ++ phoenix_pubsub_deps(),
      description:
        "A libcluster strategy that runs HyParView (Rust NIF) and connects each node " <>
          "only to its active view: partial-mesh BEAM distribution.",
      package: package()
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  # dev/ (the local-cluster harness and `mix hyparview.demo`) is tooling:
  # compiled for :dev and :test only, and not in `package` files.
  defp elixirc_paths(:test), do: ["lib", "dev", "test/support"]
  defp elixirc_paths(:dev), do: ["lib", "dev"]
  defp elixirc_paths(_), do: ["lib"]

  # Hex is not available on every build machine (ours have none), so the
  # repository carries an API-compatible libcluster stand-in under
  # test/libcluster_standin. It is used only where that directory exists (a
  # checkout, not the published package, which ships no test/) and Hex is
  # missing; HYPARVIEW_LIBCLUSTER=hex|standin forces either. Everywhere else
  # (a Hex-less build of the package, e.g. Nix or Bazel, provides libcluster
  # itself) the dependency is the real one.
  @standin "test/libcluster_standin"

  defp deps do
    case libcluster_source() do
      :hex -> [{:libcluster, "~> 3.4"}]
      :standin -> [{:libcluster, path: @standin}]
    end
  end

  defp libcluster_source do
    standin? = File.dir?(Path.join(__DIR__, @standin))

    case System.get_env("HYPARVIEW_LIBCLUSTER") do
      "hex" -> :hex
      "standin" when standin? -> :standin
      _ when standin? -> if Code.ensure_loaded?(Hex), do: :hex, else: :standin
      _ -> :hex
    end
  end

  # Optional: HyParView.PubSub is compiled only when phoenix_pubsub is present.
  # From Hex alongside Hex's libcluster, else the stand-in where this checkout
  # has it (a dependent project's copy of this package has no test/).
  defp phoenix_pubsub_deps do
    standin = "test/phoenix_pubsub_standin"

    cond do
      libcluster_source() == :hex -> [{:phoenix_pubsub, "~> 2.1", optional: true}]
      File.dir?(Path.join(__DIR__, standin)) -> [{:phoenix_pubsub, path: standin, optional: true}]
      true -> []
    end
  end

  defp package do
    [
      licenses: ["Apache-2.0"],
      links: %{},
      files: ~w(lib native Cargo.toml Cargo.lock mix.exs .formatter.exs README* LICENSE*),
      exclude_patterns: [~r"(^|/)target/", ~r"^test/"]
    ]
  end
end
