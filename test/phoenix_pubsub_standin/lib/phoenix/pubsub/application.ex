defmodule Phoenix.PubSub.Application do
  @moduledoc false
  # Starts the `:pg` scope the PG2 adapter joins, as the real application does.
  use Application

  @impl true
  def start(_type, _args) do
    children = [%{id: :pg, start: {:pg, :start_link, [Phoenix.PubSub]}}]
    Supervisor.start_link(children, strategy: :one_for_one, name: Phoenix.PubSub.AppSupervisor)
  end
end
