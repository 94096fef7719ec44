defmodule Phoenix.PubSub.Supervisor do
  @moduledoc false
  # `{Phoenix.PubSub, opts}`: a Registry of duplicate keys named after the
  # PubSub (its meta holds `{adapter, adapter_name}`) and then the adapter,
  # rest_for_one so that losing the Registry restarts the adapter as well.
  use Supervisor

  def start_link(opts) do
    name =
      Keyword.get(opts, :name) ||
        raise ArgumentError, "the :name option is required when starting Phoenix.PubSub"

    Supervisor.start_link(__MODULE__, opts, name: Module.concat(name, "Supervisor"))
  end

  @impl true
  def init(opts) do
    name = Keyword.fetch!(opts, :name)
    adapter = Keyword.get(opts, :adapter) || Phoenix.PubSub.PG2
    adapter_name = Module.concat(name, "Adapter")

    registry = [
      keys: :duplicate,
      name: name,
      partitions: Keyword.get(opts, :pool_size) || default_partitions(),
      meta: [pubsub: {adapter, adapter_name}]
    ]

    children = [
      {Registry, registry},
      {adapter, Keyword.put(opts, :adapter_name, adapter_name)}
    ]

    Supervisor.init(children, strategy: :rest_for_one)
  end

  # One partition per four schedulers, at least one.
  defp default_partitions, do: div(System.schedulers_online() + 3, 4)
end
