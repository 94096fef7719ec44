defmodule HyParView.Native do
  @moduledoc false
  # NIF boundary, see docs/ARCHITECTURE.md ("NIF"). Every function returns quickly; the
  # work happens on the Rust runtime, which reports back with messages to the
  # owner pid. If the library cannot be loaded the module still loads, so the
  # stubs (and HyParView.Server.start_link/1) can raise an explanatory error.

  @on_load :load_nif

  @doc false
  @spec load_nif() :: :ok
  def load_nif do
    path = nif_path()

    result =
      case :erlang.load_nif(String.to_charlist(path), 0) do
        :ok -> :ok
        {:error, {:reload, _}} -> :ok
        {:error, {reason, text}} -> {:error, "#{reason}: #{text}"}
        {:error, other} -> {:error, inspect(other)}
      end

    :persistent_term.put({__MODULE__, :load_result}, {result, path})
    :ok
  end

  @doc false
  @spec nif_path() :: String.t()
  def nif_path do
    priv =
      case :code.priv_dir(:libcluster_hyparview) do
        {:error, _} -> Path.expand("../../priv", __DIR__)
        dir -> List.to_string(dir)
      end

    Path.join([priv, "native", "libhyparview_nif"])
  end

  @doc false
  # :ok or {:error, message} explaining what to do.
  @spec loaded() :: :ok | {:error, String.t()}
  def loaded do
    case :persistent_term.get({__MODULE__, :load_result}, nil) do
      {:ok, _} ->
        :ok

      {{:error, reason}, path} ->
        {:error,
         "the HyParView NIF could not be loaded from #{path}.so (#{reason}). " <>
           "It is built by `mix compile` with cargo; make sure a Rust toolchain is " <>
           "installed and recompile (mix compile --force)."}

      nil ->
        {:error, "the HyParView NIF was never loaded"}
    end
  end

  @spec start(pid, map) :: {:ok, reference} | {:error, term}
  def start(_owner, _opts), do: not_loaded()
  @spec validate_config(map) :: :ok | {:error, {:invalid_config, atom, String.t()}}
  def validate_config(_config), do: not_loaded()
  @spec schema() :: [map]
  def schema, do: not_loaded()
  # SHA-256 of "hyparview-cookie:" <> cookie: the default secret.
  @spec cookie_secret(binary) :: {:ok, <<_::256>>} | {:error, :too_long}
  def cookie_secret(_cookie), do: not_loaded()
  @spec leave(reference) :: :ok
  def leave(_resource), do: not_loaded()

  @spec set_contacts(reference, [{binary, tuple, :inet.port_number()}]) ::
          :ok | {:error, term}
  def set_contacts(_resource, _contacts), do: not_loaded()

  @spec broadcast(reference, binary) ::
          :ok | {:error, :too_large | :overloaded | :stopped | :not_binary}
  def broadcast(_resource, _payload), do: not_loaded()
  @spec stop(reference) :: :ok
  def stop(_resource), do: not_loaded()
  @spec snapshot(reference) :: map
  def snapshot(_resource), do: not_loaded()

  defp not_loaded do
    message =
      case loaded() do
        {:error, message} -> message
        :ok -> "the loaded HyParView NIF does not export this function (stale build?)"
      end

    :erlang.nif_error({:not_loaded, message})
  end
end
